"""Plan lines are written in each company's ledger accounting currency as F&O reports it: DEMF's ledger is EUR
in the F&O sandbox, so without a `currency_codes` entry its plan lands in EUR (never a USD default); an entry
that differs from the ledger is refused before anything is written, naming the company and both currencies.
Currencies are read from the sandbox's own budget register lines, never from anything the connector staged."""

from __future__ import annotations

from decimal import Decimal

import pytest
from e2e_support import assert_failed_cleanly, assert_plans_match, clear_journals, journal_counts, manual

from devkit.engine import LocalEngine
from devkit.sandbox.dynamics import seed as fo_seed
from devkit.stack import Stack

pytestmark = pytest.mark.integration


def line_currencies(stack: Stack) -> dict[str, set[str]]:
    fo = stack.dynamics.app
    out: dict[str, set[str]] = {}
    with fo.lock:
        for key, lines in fo.budget_lines.items():
            out.setdefault(key[0], set()).update(str(line["CurrencyCode"]) for line in lines)
    return out


def test_company_without_a_currency_entry_gets_its_ledger_currency(engine: LocalEngine, stack: Stack) -> None:
    assert fo_seed.ACCOUNTING_CURRENCY["DEMF"] == "EUR"
    cfg = stack.connection()
    cfg["dynamics"]["journal"]["currency_codes"] = {}  # nothing configured: each ledger's currency
    engine.install_connection(cfg)
    clear_journals(stack)
    try:
        result = engine.run("PlansFlow", manual(), timeout=180)
        assert result.status == "SUCCEEDED", (result.error, result.cause, result.task_failures())
        assert line_currencies(stack) == {"USMF": {"USD"}, "DEMF": {"EUR"}}
        assert_plans_match(stack)
        by_currency = result.output["reconciliation"]["by_currency"]
        assert set(by_currency) == {"USD", "EUR"} and all(Decimal(v) != 0 for v in by_currency.values())
    finally:
        clear_journals(stack)


def test_configured_currency_that_differs_from_the_ledger_is_refused(
    engine: LocalEngine, stack: Stack
) -> None:
    cfg = stack.connection()
    cfg["dynamics"]["journal"]["currency_codes"] = {"USMF": "USD", "DEMF": "USD"}
    engine.install_connection(cfg)
    clear_journals(stack)
    result = engine.run("PlansFlow", manual(), timeout=180)
    assert_failed_cleanly(engine, stack, result, "ConfigError", "DEMF: dynamics.journal.currency_codes.DEMF is USD",
                          "accounting currency in F&O is EUR", "remove dynamics.journal.currency_codes.DEMF")  # fmt: skip
    assert journal_counts(stack) == (0, 0), "nothing is written to F&O"


def test_check_reports_the_refusal_the_run_gives(stack: Stack) -> None:
    from d365_anaplan.config import parse_connection
    from devkit.commands.check import FAIL, PASS, Report, check_dynamics

    def plan_currencies(codes: dict[str, str]) -> tuple[str, str]:
        cfg = stack.connection()
        cfg["dynamics"]["journal"]["currency_codes"] = codes
        report = Report()
        check_dynamics(parse_connection(cfg), report)
        row = next(ch for ch in report.checks if ch.name == "plan currencies")
        return row.status, row.detail

    status, detail = plan_currencies({"USMF": "USD", "DEMF": "USD"})
    assert status == FAIL
    # the run's ConfigError line, word for word, naming only the company that differs
    assert detail == (
        "ValueError: DEMF: dynamics.journal.currency_codes.DEMF is USD but the ledger's accounting currency in "
        "F&O is EUR (Ledgers.AccountingCurrency); remove dynamics.journal.currency_codes.DEMF (plan lines then "
        "use EUR) or correct it"
    )
    assert plan_currencies({}) == (
        PASS,
        "USMF USD (ledger accounting currency); DEMF EUR (ledger accounting currency)",
    )
