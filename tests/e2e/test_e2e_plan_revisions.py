"""Approved plans revised in Anaplan land in F&O as revisions that replace, never add, for both targets
(budget register entries, the default; ledger journals on a custom posting layer, the opt-in).

Expected values come from the Anaplan sandbox's Plan module; F&O's cumulative totals from the F&O sandbox's
own tables (budget lines in their stored sign, journal lines as debit - credit), never from staged files.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from e2e_support import (
    CONNECTION,
    MONTHS,
    PERIODS,
    assert_failed_cleanly,
    assert_plans_match,
    clear_journals,
    expected_plan_cells,
    fo_plan_cells,
    journal_counts,
    label,
    ledger,
    manual,
)

from devkit.engine import LocalEngine
from devkit.sandbox.dynamics import budget as fo_budget
from devkit.sandbox.dynamics import seed as fo_seed
from devkit.stack import Stack, plan_accounts

pytestmark = pytest.mark.integration

TARGETS = ("budget_register", "ledger_journal")


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest, engine: LocalEngine, stack: Stack) -> Iterator[str]:
    """The engine configured for one target, F&O emptied, and the Plan module restored afterwards."""
    cfg = stack.connection() if request.param == "budget_register" else stack.ledger_journal_connection()
    engine.install_connection(cfg)
    clear_journals(stack)
    app = stack.anaplan.app
    with app._lock:  # the sandbox's own lock
        saved = {k: dict(v) for k, v in app.seed.modules["Plan"].cells.items()}
    yield str(request.param)
    with app._lock:
        app.seed.modules["Plan"].cells.clear()
        app.seed.modules["Plan"].cells.update(saved)
    clear_journals(stack)


def run_ok(engine: LocalEngine, payload: dict[str, Any] | None = None) -> Any:
    result = engine.run("PlansFlow", payload or manual(), timeout=180)
    assert result.status == "SUCCEEDED", (result.error, result.cause, result.task_failures())
    return result


def set_cell(stack: Stack, key: tuple[str, str, str, str], amount: Decimal) -> None:
    app = stack.anaplan.app
    with app._lock:
        app.seed.modules["Plan"].cells[key] = {"Amount": amount, "Approval": "Approved"}


def approved_in_window(stack: Stack, version: str) -> list[tuple[tuple[str, str, str, str], Decimal]]:
    labels = {label(int(p[:4]), int(p[5:])) for p in PERIODS}
    return sorted(
        (k, v["Amount"])  # type: ignore[misc]
        for k, v in stack.anaplan.app.module_cells("Plan").items()
        if k[2] in labels and k[3] == version and v.get("Approval") == "Approved" and v["Amount"] != 0
    )


def revise(stack: Stack) -> dict[str, Any]:
    """Some cells up (a revenue one among them), one cut to zero, one new key; returns what changed."""
    budget = approved_in_window(stack, "Budget")
    forecast = approved_in_window(stack, "Forecast")
    revenue = next(c for i, c in enumerate(budget) if c[0][1].startswith("4") and i not in (0, 5, 9))
    ups = [budget[0], budget[5], revenue, forecast[2]]
    for key, amount in ups:
        set_cell(stack, key, amount + Decimal("1000.10"))
    cut = budget[9][0]
    set_cell(stack, cut, Decimal("0.00"))
    known = set(plan_accounts())
    new_account = next(
        a.account
        for a in fo_seed.MAIN_ACCOUNTS
        if not a.is_balance_sheet and a.account not in known and a.account not in fo_seed.SUSPENDED_ACCOUNTS
    )
    new = (budget[0][0][0], new_account, label(2025, 2), "Budget")
    set_cell(stack, new, Decimal("777.77"))
    return {"ups": [k for k, _ in ups], "cut": cut, "new": new, "revenue": revenue[0]}


def assert_totals_per_currency(engine: LocalEngine, stack: Stack, result: Any) -> None:
    """USMF books in USD, DEMF in EUR: the approved totals (ValidatePlan per export, ReconcilePlan's output) are
    per currency and equal Anaplan's approved cells of the companies in that currency; no sum across them."""
    expected: dict[tuple[str, str], Decimal] = {}  # (version, currency) -> approved total
    for (version, company, _account, _period), amount in expected_plan_cells(stack).items():
        key = (version, fo_seed.ACCOUNTING_CURRENCY[company])
        expected[key] = expected.get(key, Decimal(0)) + amount
    assert {cur for _v, cur in expected} == {"USD", "EUR"}, "the test needs both currencies"
    reconciled = result.output["reconciliation"]
    assert "total" not in reconciled
    assert {c: Decimal(v) for c, v in reconciled["by_currency"].items()} == {
        cur: sum((v for (_ver, c), v in expected.items() if c == cur), Decimal(0)) for cur in ("EUR", "USD")
    }
    steps = {s.step: s for s in ledger(engine).steps(result.name)}
    exports = steps["ValidatePlan"].detail["exports"]
    versions = {e["export_action"]: e["version"] for e in stack.connection()["mapping"]["plans"]["exports"]}
    for name, counters in exports.items():
        assert "total" not in counters
        got = {c: Decimal(v) for c, v in counters["by_currency"].items()}
        assert got == {cur: v for (ver, cur), v in expected.items() if ver == versions[name]}, name
    left = steps["ReconcilePlan"].detail["left_totals"]
    assert {c: Decimal(v) for c, v in left.items()} == {
        c: Decimal(v) for c, v in reconciled["by_currency"].items()
    }


@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_revised_plan_replaces_the_earlier_one_and_nothing_doubles(
    target: str, engine: LocalEngine, stack: Stack
) -> None:
    first = run_ok(engine)
    assert_plans_match(stack)
    assert_totals_per_currency(engine, stack, first)
    if target == "budget_register":
        # budget and forecast under their own models and original-budget codes, all Draft until completed
        heads = list(stack.dynamics.app.budget_headers.values())
        assert {(h["BudgetModelId"], h["BudgetCode"], h["BudgetType"]) for h in heads} == {
            ("FY2025", "Original", "OriginalBudget"),
            ("FC2025", "FcOrig", "OriginalBudget"),
        }
        assert first.output["reconciliation"]["pending_completion"] == len(heads)
        assert fo_budget.update_budget_balances(stack.dynamics.app), "the user completes the entries"
        assert not stack.dynamics.app.journal_headers, "nothing in a ledger journal"
    else:
        heads = list(stack.dynamics.app.journal_headers.values())
        assert {h["PostingLayer"] for h in heads} == {"CustomLayer1"}, "never the Current layer"
        assert not stack.dynamics.app.budget_headers
    vouchers = [line["Voucher"] for lines in stack.dynamics.app.journal_lines.values() for line in lines]
    descriptions = [h.get("Description") or h.get("ReasonComment") for h in heads]
    assert all(" Budget FY2025 2025-01..03 run " in d or " Forecast FY2025 2025-01..03 run " in d
               for d in descriptions), descriptions  # fmt: skip
    before = plan_line_count(stack)
    first_lines = {k: len(v) for k, v in stack.dynamics.app.budget_lines.items()}

    changed = revise(stack)
    second = run_ok(engine)
    assert_plans_match(stack)  # includes the cut cell (now absent) and the new key
    held = fo_plan_cells(stack)
    cut = changed["cut"]
    assert ("Budget", cut[0], cut[1], period_of(cut[2])) not in held, "the cut cell is reversed to zero"
    new = changed["new"]
    assert held[("Budget", new[0], new[1], "2025-02")] == Decimal("777.77")
    diff = second.output["plan"]["differences"]
    assert diff["cells"] == 6 and diff["revisions"] == 5, (
        diff
    )  # 4 up + 1 cut are revisions; the new key is not
    assert plan_line_count(stack) - before == 6, "only the six differences are written"
    assert {
        k: len(v) for k, v in stack.dynamics.app.budget_lines.items() if k in first_lines
    } == first_lines, "earlier entries are never edited"
    if target == "budget_register":
        new_heads = [h for k, h in stack.dynamics.app.budget_headers.items() if k not in first_lines]
        assert {(h["BudgetCode"], h["BudgetType"]) for h in new_heads} == {
            ("Revision", "Amendment"), ("FcRev", "Amendment"), ("Original", "OriginalBudget"),
        }  # fmt: skip
        revenue = changed["revenue"]
        lines = [
            line for k, ls in stack.dynamics.app.budget_lines.items() if k not in first_lines for line in ls
        ]
        rev_line = next(line for line in lines if str(line["DimensionDisplayValue"]).startswith(revenue[1]))
        assert rev_line["AmountType"] == "Revenue"
        assert rev_line["TransactionCurrencyAmount"] == Decimal("-1000.10"), (
            "revenue up = more credit, entered negative"
        )
    else:
        journals_of: dict[str, set[str]] = {}
        for (_company, number), lines in stack.dynamics.app.journal_lines.items():
            for line in lines:
                journals_of.setdefault(str(line["Voucher"]), set()).add(number)
        assert len(journals_of) > len(set(vouchers)), "the revision has vouchers of its own"
        assert all(len(n) == 1 for n in journals_of.values()), "a voucher is never reused by another journal"

    # another window, and a rerun, change nothing
    counts = journal_counts(stack)
    other = run_ok(engine, manual(PERIODS[1], PERIODS[-1]))
    assert other.output["written"] == [] and other.output["plan"]["differences"]["cells"] == 0
    rerun = run_ok(engine)
    assert rerun.output["written"] == [] and rerun.output["plan"]["differences"]["cells"] == 0
    assert journal_counts(stack) == counts
    assert_plans_match(stack)

    # a dry run shows the differences it would write and writes nothing
    key, amount = approved_in_window(stack, "Forecast")[0]
    set_cell(stack, key, amount - Decimal("0.01"))
    dry = run_ok(engine, {**manual(), "dry_run": True})
    shown = dry.output["plan"]["differences"]["shown"]
    assert [(d["company"], d["account"], d["difference"], d["revision"]) for d in shown] == [
        (key[0], key[1], "-0.01", True)
    ]
    assert journal_counts(stack) == counts
    run_ok(engine)
    assert_plans_match(stack)

    # late approval of an old period: only that cell is written when its month is run again
    jan = label(2025, 1)
    draft = next(k for k, v in stack.anaplan.app.module_cells("Plan").items()
                 if k[2] == jan and v.get("Approval") != "Approved" and v["Amount"] != 0)  # fmt: skip
    set_cell(stack, draft, Decimal(str(stack.anaplan.app.module_cells("Plan")[draft]["Amount"])))
    late = run_ok(engine, manual(PERIODS[0], PERIODS[0]))
    assert late.output["plan"]["differences"]["cells"] == 1
    assert_plans_match(stack)

    # F&O is the truth, not the ledger's state: an entry deleted in F&O is written again, the drift reported
    fo = stack.dynamics.app
    with fo.lock:
        headers, lines = (
            (fo.budget_headers, fo.budget_lines)
            if target == "budget_register"
            else (fo.journal_headers, fo.journal_lines)
        )
        gone = list(headers)[-1]
        headers.pop(gone)
        lost = len(lines.pop(gone))
    fixed = run_ok(engine)
    drift = next(st.detail for st in ledger(engine).steps(fixed.name) if st.step == "PlanJournals")[
        "state_drift"
    ]
    assert drift["cells"] > 0 and fixed.output["plan"]["differences"]["cells"] > 0, (drift, lost)
    assert_plans_match(stack)


def period_of(month_label: str) -> str:
    """``Mar 25`` -> ``2025-03``."""
    name, year = month_label.split()
    return f"20{year}-{MONTHS.index(name) + 1:02d}"


def plan_line_count(stack: Stack) -> int:
    """Lines in F&O that carry plan values (budget lines, journal lines other than balancing lines)."""
    offset = str(stack.ledger_journal_connection()["dynamics"]["journal"]["offset_account"])
    fo = stack.dynamics.app
    with fo.lock:
        budget = sum(len(v) for v in fo.budget_lines.values())
        journal = sum(
            1
            for ls in fo.journal_lines.values()
            for line in ls
            if not str(line["AccountDisplayValue"]).startswith(offset + "-")
        )
    return budget + journal


@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_rejected_lines_replay_to_the_configured_target(
    target: str, engine: LocalEngine, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """F&O refuses the lines of one account mid-run (suspended after validation); the run fails naming them;
    once fixed, replaying the failed lines writes them to the configured target and F&O holds the plan."""
    victim = sorted(plan_accounts())[0]

    def suspend(handler: Any) -> Any:
        def wrapped(event: dict[str, Any], ctx: Any) -> Any:
            monkeypatch.setattr(fo_seed, "SUSPENDED_ACCOUNTS", fo_seed.SUSPENDED_ACCOUNTS | {victim})
            return handler(event, ctx)

        return wrapped

    engine.wrappers["WriteJournalFunction"] = suspend
    failed = engine.run("PlansFlow", manual(), timeout=180)
    assert failed.status == "FAILED", failed.output
    engine.wrappers.clear()
    monkeypatch.setattr(fo_seed, "SUSPENDED_ACCOUNTS", fo_seed.SUSPENDED_ACCOUNTS - {victim})
    missing = {k for k in expected_plan_cells(stack) if k[2] == victim}
    assert missing and not missing & set(fo_plan_cells(stack)), "the victim's lines are not in F&O"
    counts = journal_counts(stack)
    replay = run_ok(engine, {"connection": CONNECTION, "trigger": "replay", "replay_of": failed.name,
                             "failed_lines_only": True})  # fmt: skip
    assert replay.output["replayed"]["written"] > 0
    assert journal_counts(stack)[0] == counts[0], "the replay resumes the original entries"
    if target == "budget_register":
        assert not stack.dynamics.app.journal_headers, "replay writes budget register entries, not journals"
    else:
        assert not stack.dynamics.app.budget_headers
    assert_plans_match(stack)


def test_rejected_lines_are_not_replayed_after_a_later_run_wrote_them(
    engine: LocalEngine, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later run writes the differences itself (the rejected cells included); replaying the earlier run's
    rejected lines would then count them twice, so the replay is refused and F&O keeps the plan once."""
    clear_journals(stack)
    victim = sorted(plan_accounts())[0]
    monkeypatch.setattr(fo_seed, "SUSPENDED_ACCOUNTS", fo_seed.SUSPENDED_ACCOUNTS)

    def suspend(handler: Any) -> Any:
        def wrapped(event: dict[str, Any], ctx: Any) -> Any:
            monkeypatch.setattr(fo_seed, "SUSPENDED_ACCOUNTS", fo_seed.SUSPENDED_ACCOUNTS | {victim})
            return handler(event, ctx)

        return wrapped

    engine.wrappers["WriteJournalFunction"] = suspend
    failed = engine.run("PlansFlow", manual(), timeout=180)
    assert failed.status == "FAILED"
    engine.wrappers.clear()
    monkeypatch.setattr(fo_seed, "SUSPENDED_ACCOUNTS", fo_seed.SUSPENDED_ACCOUNTS - {victim})
    later = run_ok(engine)
    assert later.output["plan"]["differences"]["cells"] > 0, "the later run wrote the missing cells"
    assert_plans_match(stack)
    counts = journal_counts(stack)
    replay = engine.run("PlansFlow", {"connection": CONNECTION, "trigger": "replay", "replay_of": failed.name,
                                      "failed_lines_only": True}, timeout=180)  # fmt: skip
    assert_failed_cleanly(engine, stack, replay, "BadInputData", later.name, "would count twice")
    assert journal_counts(stack) == counts
    assert_plans_match(stack)
    clear_journals(stack)
