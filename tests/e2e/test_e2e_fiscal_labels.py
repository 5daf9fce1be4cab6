"""Issue 12, "done when" (2): a model whose fiscal year starts in July labels its months by fiscal period
(``FY25 P07`` is January 2025: FY25 runs July 2024 to June 2025). With ``close_calendar.fiscal_year_start_month:
7`` and ``mapping.actuals.period_format: "FY{fyy} P{fpp}"`` the actuals flow passes the model-calendar
pre-check and writes every cell under the fiscal label, equal to the cent to the GL the F&O sandbox posted."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest
from e2e_support import ACTUAL, PERIODS, expected_actuals, label

from devkit.engine import LocalEngine
from devkit.sandbox.anaplan.calendar import ModelCalendar
from devkit.sandbox.anaplan.seed import Member
from devkit.stack import Stack

pytestmark = pytest.mark.integration

# The model's month members for the run's window (PERIODS = 2025-01..2025-03), written out by hand.
FISCAL = {"2025-01": "FY25 P07", "2025-02": "FY25 P08", "2025-03": "FY25 P09"}


@pytest.fixture
def july_model(stack: Stack) -> Iterator[None]:
    """The sandbox model with a July fiscal year and fiscal-period members; restored after the test."""
    app = stack.anaplan.app
    saved = app.calendar
    app.calendar = ModelCalendar(fiscal_start_month=7, today=date(2025, 2, 14))
    periods = app.seed.lists["Periods"]
    with app._lock:
        for i, code in enumerate(FISCAL.values()):
            periods.members[code] = Member(code, code, f"39{i:010d}")
    yield
    app.calendar = saved
    with app._lock:
        for code in FISCAL.values():
            periods.members.pop(code, None)


def test_july_fiscal_period_labels_are_written_to_the_cent(stack: Stack, july_model: None) -> None:
    assert set(FISCAL) == set(PERIODS)
    cfg = copy.deepcopy(stack.connection())
    cfg["close_calendar"] = {**cfg.get("close_calendar", {}), "fiscal_year_start_month": 7}
    cfg["mapping"]["actuals"]["period_format"] = "FY{fyy} P{fpp}"
    with LocalEngine(wait_scale=0.0) as engine:
        engine.install_connection(cfg)
        payload = {
            "connection": "demo",
            "trigger": "manual",
            "periods": {"from": PERIODS[0], "to": PERIODS[-1]},
        }
        result = engine.run("ActualsFlow", payload, timeout=300)
    assert result.status == "SUCCEEDED", (result.error, result.cause)

    calendar_to_fiscal = {label(int(p[:4]), int(p[5:])): FISCAL[p] for p in PERIODS}
    expected = {(*k[:-2], calendar_to_fiscal[k[-2]], k[-1]): v for k, v in expected_actuals(stack).items()}
    assert expected, "the F&O sandbox posted no GL in the window: the test would prove nothing"
    held: dict[tuple[str, ...], Decimal] = {}
    for key, values in stack.anaplan.app.module_cells("GL Actuals").items():
        amount = values.get("Amount")
        if key[-2] in calendar_to_fiscal.values() and key[-1] == ACTUAL and amount != 0:
            assert isinstance(amount, Decimal), (key, values)
            held[key] = amount
    assert held == expected
    assert {k[-2] for k in held} == set(FISCAL.values())
