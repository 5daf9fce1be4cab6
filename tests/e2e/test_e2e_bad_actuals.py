"""Bad posted-GL data through the whole actuals flow: every case ends FAILED with the ledger cause naming the
record and the field, and no actuals import runs in Anaplan (the GL Actuals module stays untouched).

The bad value is served by the F&O sandbox itself: one posted line of its GL (OData
``GeneralJournalAccountEntryBiEntities``) is altered as F&O would return it, so the reader, the staging, the
transform and the alignment check all run for real."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from e2e_support import (
    anaplan_actuals,
    assert_failed_cleanly,
    clear_actuals,
    expected_actuals,
    label,
    ledger,
    manual,
)

from devkit.engine import LocalEngine
from devkit.sandbox.dynamics import seed as fo_seed
from devkit.stack import BLANK, Stack, running

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running(gl_lines=300, months=3) as st:
        yield st


@pytest.fixture
def engine(module_engine: LocalEngine, stack: Stack) -> LocalEngine:
    """One engine for the module (each case is its own execution and run); no wrapper carries over."""
    clear_actuals(stack)
    module_engine.wrappers.clear()
    return module_engine


def target_line(stack: Stack) -> tuple[int, Any]:
    """(SourceKey, seed line) of the first profit-and-loss line of a USMF voucher in February 2025."""
    gl = stack.dynamics.app.gl
    for v in range(gl.voucher_count):
        head = gl.voucher(v)
        if head.company == "USMF" and head.accounting_date.month == 2:
            line = gl.voucher_lines(v)[0]
            assert not line.account.is_balance_sheet
            return line.recid, line
    raise AssertionError("no USMF voucher in February")


@pytest.fixture
def serve(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Any:
    """serve(**fields): the F&O sandbox answers the target line with these field values."""
    fo = stack.dynamics.app
    original = fo._line_rows

    def install(**fields: Any) -> int:
        key, _ = target_line(stack)
        if (
            "LedgerAccount" in fields
        ):  # a line without named values: the reader falls back to the display value
            fields = {"LedgerDimensionValuesJson": None, **fields}

        def line_rows(v: int, needed: frozenset[str] | None = None) -> list[dict[str, Any]]:
            rows = original(v, needed)
            for r in rows:
                if r["SourceKey"] == key:
                    r.update(fields)
            return rows

        monkeypatch.setattr(fo, "_line_rows", line_rows)
        return key

    return install


def display(stack: Stack, **parts: str) -> str:
    _, line = target_line(stack)
    values = {
        "account": line.account.account,
        "bu": line.business_unit,
        "cc": line.cost_center,
        "dep": line.department,
        **parts,
    }
    return fo_seed.DELIMITER.join((values["account"], values["bu"], values["cc"], values["dep"]))


CASES: list[tuple[str, Any, str, tuple[str, ...]]] = [
    ("unknown-account", lambda st: {"LedgerAccount": display(st, account="999999")}, "AlignmentFailed",
     ("999999", "MainAccount")),
    ("unknown-dimension-value", lambda st: {"LedgerAccount": display(st, bu="777")}, "AlignmentFailed",
     ("777", "BusinessUnit")),
    ("thousands-separator", lambda st: {"AccountingCurrencyAmount": "1,234.50"}, "DynamicsBadResponse",
     ("AccountingCurrencyAmount", "1,234.50", "{key}")),
    ("comma-decimal", lambda st: {"AccountingCurrencyAmount": "1234,50"}, "DynamicsBadResponse",
     ("AccountingCurrencyAmount", "1234,50", "{key}")),
    ("not-a-number", lambda st: {"AccountingCurrencyAmount": "NaN"}, "DynamicsBadResponse",
     ("AccountingCurrencyAmount", "{key}")),
    ("more-segments-than-format", lambda st: {"LedgerAccount": display(st) + "-EXTRA"}, "DynamicsBadResponse",
     ("display value", "EXTRA", "5 segments", "{key}")),
    ("formula-text", lambda st: {"LedgerAccount": display(st, account="=SUM(A1)")}, "BadInputData",
     ("=SUM(A1)", "field 'account'", "{key}")),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "error", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_gl_line_fails_without_an_import(
    engine: LocalEngine, stack: Stack, serve: Any, fields: Any, error: str, needles: tuple[str, ...]
) -> None:
    key = serve(**fields(stack))
    started = stack.anaplan.app.counters["tasks_started"]
    result = engine.run("ActualsFlow", manual(), timeout=180)
    assert_failed_cleanly(engine, stack, result, error, *(n.format(key=key) for n in needles))
    imports = [
        t for t in ledger(engine).tasks(result.name) if (t.result or {}).get("action") == "Load GL Actuals"
    ]
    assert imports == [], "no actuals import may run"
    assert "StartActualsImport" not in result.states_entered()
    assert stack.anaplan.app.module_cells("GL Actuals") == {}, "Anaplan's actuals stay untouched"
    tasks = stack.anaplan.app.counters["tasks_started"] - started
    if error == "DynamicsBadResponse":
        # the GL is read and checked before anything is sent to Anaplan
        assert tasks == 0
    else:
        # alignment and code checks run on the prepared file, after the (idempotent) list imports
        assert tasks <= 4


def test_gl_reclassified_between_runs_leaves_no_stale_cell(
    engine: LocalEngine, stack: Stack, serve: Any
) -> None:
    first = engine.run("ActualsFlow", manual(), timeout=180)
    assert first.status == "SUCCEEDED", first.task_failures()
    _, line = target_line(stack)
    new_bu = "005" if line.business_unit != "005" else "004"
    serve(LedgerAccount=display(stack, bu=new_bu))
    expected = expected_actuals(stack)
    head = stack.dynamics.app.gl.voucher(line.voucher_index)
    d = head.accounting_date
    rest = (line.cost_center or BLANK, line.department or BLANK, label(d.year, d.month), "Actual")
    amount = Decimal(line.cents).scaleb(-2)
    for bu, sign in ((line.business_unit, -1), (new_bu, 1)):
        k = (head.company, line.account.account, bu, *rest)
        expected[k] = expected.get(k, Decimal(0)) + sign * amount
    expected = {k: v for k, v in expected.items() if v != 0}
    second = engine.run("ActualsFlow", manual(), timeout=180)
    assert second.status == "SUCCEEDED", ledger(engine).get_run(second.name).cause
    assert anaplan_actuals(stack) == expected
