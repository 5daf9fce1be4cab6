"""A wrong `dynamics.journal.budget_revenue_read_sign` must not make revenue budgets grow run after run: once
F&O holds a revenue line of the connector, PlanJournals compares how F&O shows it with the raw entity and
refuses to write (one line naming the setting and the remedy) before any difference is written; `check` says
the same. F&O's content is read from the F&O sandbox's own tables."""

from __future__ import annotations

import pytest
from e2e_support import (
    assert_failed_cleanly,
    assert_plans_match,
    cause_of,
    clear_journals,
    journal_counts,
    manual,
)

from d365_anaplan.runtime import clear_caches
from devkit.engine import LocalEngine
from devkit.stack import Stack

pytestmark = pytest.mark.integration


def test_a_wrong_revenue_read_sign_is_refused_before_writing(engine: LocalEngine, stack: Stack) -> None:
    clear_journals(stack)
    try:
        first = engine.run("PlansFlow", manual(), timeout=180)
        assert first.status == "SUCCEEDED", (first.error, first.cause, first.task_failures())
        assert_plans_match(stack)
        written = journal_counts(stack)

        cfg = stack.connection()
        cfg["dynamics"]["journal"]["budget_revenue_read_sign"] = (
            "stored"  # F&O (the sandbox) shows as_entered
        )
        engine.install_connection(cfg)
        clear_caches()  # handlers keep a loaded connection for a minute, as in Lambda
        second = engine.run("PlansFlow", manual(), timeout=180)
        assert_failed_cleanly(engine, stack, second, "ConfigError",
                              "dynamics.journal.budget_revenue_read_sign: BudgetRegisterEntryLines shows revenue "
                              "as_entered", "configured: stored; set it to as_entered")  # fmt: skip
        assert journal_counts(stack) == written, "nothing more is written to F&O"
        assert_plans_match(stack)

        from d365_anaplan.config import parse_connection
        from devkit.commands.check import FAIL, Report, check_dynamics

        report = Report()
        check_dynamics(parse_connection(cfg), report)
        row = next(ch for ch in report.checks if ch.name == "budget revenue sign (raw entity)")
        assert row.status == FAIL and "configured: stored; set it to as_entered" in row.detail, row
    finally:
        engine.install_connection(stack.connection())
        clear_caches()
        clear_journals(stack)


def test_after_a_failed_reconciliation_nothing_is_written_until_accepted(
    engine: LocalEngine, stack: Stack
) -> None:
    """Run 1 with the wrong sign and no revenue line in F&O yet (nothing to verify against) writes and fails
    ReconcilePlan. Run 2 with the setting fixed is refused (the last ReconcilePlan failed) and writes nothing;
    run 3, started with accept_failed_reconcile, reconciles without writing anything (F&O was right)."""
    clear_journals(stack)
    try:
        cfg = stack.connection()
        cfg["dynamics"]["journal"]["budget_revenue_read_sign"] = "stored"
        engine.install_connection(cfg)
        clear_caches()
        first = engine.run("PlansFlow", manual(), timeout=180)
        assert first.status == "FAILED"
        assert cause_of(engine, first.name).get("Error") == "ReconciliationFailed"
        written = journal_counts(stack)
        assert_plans_match(stack)  # what was written is right; only the read-back was wrong

        engine.install_connection(stack.connection())
        clear_caches()
        second = engine.run("PlansFlow", manual(), timeout=180)
        text = assert_failed_cleanly(engine, stack, second, "PreviousReconcileFailed",
                                     f"plans run {first.name} failed ReconcilePlan",
                                     '{"accept_failed_reconcile": true}')  # fmt: skip
        assert "budget_revenue_read_sign" in text
        assert journal_counts(stack) == written, "nothing is written to F&O"

        dry = engine.run("PlansFlow", {**manual(), "dry_run": True}, timeout=180)  # shows, writes nothing
        assert dry.status == "SUCCEEDED", (dry.error, dry.cause, dry.task_failures())
        assert dry.output["plan"]["differences"]["cells"] == 0 and journal_counts(stack) == written
        third = engine.run("PlansFlow", {**manual(), "accept_failed_reconcile": True}, timeout=180)
        assert third.status == "SUCCEEDED", (third.error, third.cause, third.task_failures())
        assert third.output["plan"]["differences"]["cells"] == 0
        assert journal_counts(stack) == written
        assert_plans_match(stack)
    finally:
        engine.install_connection(stack.connection())
        clear_caches()
        clear_journals(stack)
