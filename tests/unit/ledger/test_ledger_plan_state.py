"""Plan state: the approved-plan cells the connector last reconciled in F&O, per export, company, period,
account and dimension values; loaded per company and window; a zero cell is kept; a rerun replaces."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from ledger_support import FakeClock

from d365_anaplan.ledger.plan_state import PlanState

JAN, FEB, MAR = date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)


@pytest.fixture
def state(dynamodb: Any, table: str, clock: FakeClock) -> PlanState:
    return PlanState(table, client=dynamodb, clock=clock)


def test_save_and_load_per_company_and_window(state: PlanState) -> None:
    cells = {
        ("USMF", "601500", (("CostCenter", "CC01"),), JAN): Decimal("100.00"),
        ("USMF", "601500", (), FEB): Decimal("0.00"),  # cut to zero: kept
        ("USMF", "401100", (), MAR): Decimal("-12.50"),
        ("DEMF", "601500", (), JAN): Decimal("7.5"),
    }
    cells.update({("USMF", f"7{i:05d}", (), JAN): Decimal(i) for i in range(30)})  # more than one batch
    assert state.save("acme", "APABCD", cells, "run-1") == len(cells)
    usmf = state.load("acme", "APABCD", "USMF", JAN, FEB)
    assert usmf[("USMF", "601500", (("CostCenter", "CC01"),), JAN)] == Decimal("100.00")
    assert usmf[("USMF", "601500", (), FEB)] == Decimal("0.00")
    assert ("USMF", "401100", (), MAR) not in usmf, "outside the window"
    assert all(k[0] == "USMF" for k in usmf), "one company only"
    assert state.load("acme", "APOTHER", "USMF", JAN, MAR) == {}, "per export"
    state.save("acme", "APABCD", {("USMF", "601500", (), FEB): Decimal("3.00")}, "run-2")
    assert state.load("acme", "APABCD", "USMF", FEB, FEB)[("USMF", "601500", (), FEB)] == Decimal("3.00")


def test_refuses_empty_names(state: PlanState) -> None:
    with pytest.raises(ValueError, match="export tag"):
        state.load("acme", "", "USMF", JAN, JAN)
