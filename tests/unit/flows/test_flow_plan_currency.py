"""Plan lines are written in each company's ledger accounting currency; a configured currency that differs
from the ledger's is refused naming the company, both currencies and the remedy."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from d365_anaplan.config import JournalSettings, PlanExport
from d365_anaplan.errors import ConfigError
from d365_anaplan.flows.journal import build_entries
from d365_anaplan.flows.plan_currency import plan_currencies
from d365_anaplan.flows.plan_deltas import plan_deltas
from d365_anaplan.flows.records import PlanRow

LEDGERS = {"USMF": "USD", "GBSI": "GBP", "DEMF": "EUR"}
SETTINGS: dict[str, str] = {"budget_model": "FY2025", "budget_code": "Original"}


def test_unconfigured_company_uses_its_ledger_currency_not_usd() -> None:
    settings = JournalSettings(**SETTINGS)
    assert settings.currency_for("GBSI") is None  # nothing configured: no USD default
    assert plan_currencies(settings, ["USMF", "gbsi"], LEDGERS) == {"USMF": "USD", "GBSI": "GBP"}


def test_a_gbp_plan_is_written_in_gbp() -> None:
    settings = JournalSettings(**SETTINGS)
    row = PlanRow(line_number=2, company="GBSI", account="601500", dimensions={}, period=date(2025, 1, 1),
                  version="Budget", amount=Decimal("500000.00"))  # fmt: skip
    deltas, _ = plan_deltas([row], [], [date(2025, 1, 1)])
    plan = build_entries(deltas, connection="acme", run_id="r1", export=PlanExport(export_action="B", version="Budget"),
                         settings=settings, currencies=plan_currencies(settings, ["GBSI"], LEDGERS),
                         segment_order=["MainAccount"])  # fmt: skip
    assert [(x.currency, x.amount) for x in plan.journals[0].lines()] == [("GBP", Decimal("500000.00"))]


def test_configured_currency_equal_to_the_ledger_is_kept() -> None:
    settings = JournalSettings(currency_codes={"demf": "eur"}, **SETTINGS)
    assert plan_currencies(settings, ["DEMF", "USMF"], LEDGERS) == {"DEMF": "EUR", "USMF": "USD"}


def test_configured_currency_that_differs_is_refused_with_one_line_per_company() -> None:
    settings = JournalSettings(currency_codes={"GBSI": "USD"}, **SETTINGS)
    with pytest.raises(ConfigError) as err:
        plan_currencies(settings, ["USMF", "GBSI"], LEDGERS)
    assert err.value.problems == [
        "GBSI: dynamics.journal.currency_codes.GBSI is USD but the ledger's accounting currency in F&O is GBP "
        "(Ledgers.AccountingCurrency); remove dynamics.journal.currency_codes.GBSI (plan lines then use GBP) "
        "or correct it"
    ]


def test_a_global_currency_code_that_differs_is_refused() -> None:
    settings = JournalSettings(currency_code="USD", **SETTINGS)
    with pytest.raises(ConfigError, match=r"DEMF: dynamics.journal.currency_code is USD .* in F&O is EUR"):
        plan_currencies(settings, ["USMF", "DEMF"], LEDGERS)


def test_a_ledger_without_currency_needs_a_configured_one() -> None:
    with pytest.raises(ConfigError, match="GBSI: the ledger in F&O names no accounting currency"):
        plan_currencies(JournalSettings(**SETTINGS), ["GBSI"], {"GBSI": ""})
    configured = JournalSettings(currency_codes={"GBSI": "GBP"}, **SETTINGS)
    assert plan_currencies(configured, ["GBSI"], {"GBSI": ""}) == {"GBSI": "GBP"}
