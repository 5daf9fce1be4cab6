"""Cells written by an actuals import whose run failed afterwards are zeroed by the next successful run once
F&O no longer has them.

Run 1 imports the GL into Anaplan and then fails (the run crashes after the import, before reconciliation).
F&O's GL then changes: a line that alone made up one Anaplan cell is reclassified to another business unit,
so that cell no longer exists in F&O. Run 2 succeeds, and Anaplan must hold exactly what F&O posts: the old
cell zero. The F&O sandbox serves the changed line (OData ``GeneralJournalAccountEntryBiEntities``)."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from e2e_support import (
    ACTUAL,
    anaplan_actuals,
    cause_of,
    clear_actuals,
    expected_actuals,
    label,
    manual,
)

from devkit.engine import LocalEngine
from devkit.sandbox.dynamics import seed as fo_seed
from devkit.stack import BLANK, Stack

pytestmark = pytest.mark.integration


def cell_of(stack: Stack, v: int, line: Any) -> tuple[str, ...]:
    head = stack.dynamics.app.gl.voucher(v)
    d = head.accounting_date
    return (
        head.company,
        line.account.account,
        line.business_unit or BLANK,
        line.cost_center or BLANK,
        line.department or BLANK,
        label(d.year, d.month),
        ACTUAL,
    )


def lonely_line(stack: Stack) -> tuple[int, Any, tuple[str, ...]]:
    """(voucher, line, cell) of a profit-and-loss line in the window that alone makes up its Anaplan cell."""
    gl = stack.dynamics.app.gl
    wanted = {label(2025, m) for m in (1, 2, 3)}
    lines = [(v, line) for v in range(gl.voucher_count) for line in gl.voucher_lines(v)]
    per_cell = Counter(cell_of(stack, v, line) for v, line in lines)
    for v, line in lines:
        cell = cell_of(stack, v, line)
        if cell[5] in wanted and per_cell[cell] == 1 and not line.account.is_balance_sheet and line.cents:
            return v, line, cell
    raise AssertionError("no GL line alone in its cell")


def test_cells_of_a_run_that_failed_after_its_import_are_zeroed_later(
    engine: LocalEngine, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_actuals(stack)
    _, line, old_cell = lonely_line(stack)

    def crash_after_the_import(handler: Any) -> Any:
        def wrapped(event: dict[str, Any], ctx: Any) -> Any:
            raise RuntimeError("simulated crash after the actuals import")

        return wrapped

    engine.wrappers["ReconcileActualsFunction"] = crash_after_the_import
    first = engine.run("ActualsFlow", manual(), timeout=180)
    assert first.status == "FAILED"
    assert cause_of(engine, first.name)["Error"] == "RuntimeError"
    assert "CheckActualsImport" in first.states_entered()
    assert anaplan_actuals(stack).get(old_cell) == Decimal(line.cents).scaleb(-2), "run 1 wrote the cell"
    engine.wrappers.clear()

    # F&O reclassifies the line to another business unit: its old cell disappears from the GL.
    new_bu = next(bu for bu in ("001", "002", "003", "004", "005") if bu != line.business_unit)
    fo = stack.dynamics.app
    original = fo._line_rows

    def line_rows(voucher: int, needed: frozenset[str] | None = None) -> list[dict[str, Any]]:
        rows = original(voucher, needed)
        for r in rows:
            if r["SourceKey"] == line.recid:
                parts = (line.account.account, new_bu, line.cost_center, line.department)
                r["LedgerAccount"] = fo_seed.DELIMITER.join(parts)
        return rows

    monkeypatch.setattr(fo, "_line_rows", line_rows)
    expected = expected_actuals(stack)
    moved = (*old_cell[:2], new_bu, *old_cell[3:])
    expected.pop(old_cell)
    expected[moved] = expected.get(moved, Decimal(0)) + Decimal(line.cents).scaleb(-2)
    expected = {k: a for k, a in expected.items() if a != 0}

    second = engine.run("ActualsFlow", manual(), timeout=180)
    assert second.status == "SUCCEEDED", (second.error, second.task_failures())
    held = anaplan_actuals(stack)
    assert old_cell not in held, (
        f"Anaplan still holds {held[old_cell]} in {old_cell}, which F&O no longer has"
    )
    assert held == expected
