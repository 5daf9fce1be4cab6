"""Bad plan data through the whole plans flow: every case ends FAILED with the ledger cause naming the record
(export file line or value) and the field, and NOTHING is written to F&O (no journal header, no line).

Bad rows reach the flow the way they would in production: as cells of the Anaplan Plan module (exported by
the sandbox's real export action), or as the bytes of the downloaded export file (the staged S3 object is
replaced right after the real AnaplanCheckFunction downloaded it)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from e2e_support import assert_failed_cleanly, clear_journals, journal_counts, manual, s3_put, s3_text

from devkit.engine import LocalEngine
from devkit.stack import Stack, running

pytestmark = pytest.mark.integration

BUDGET = "Export Approved Budget"
Edit = Callable[[list[list[str]]], list[list[str]] | bytes]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running(gl_lines=200, months=3) as st:
        yield st


@pytest.fixture
def engine(module_engine: LocalEngine, stack: Stack) -> LocalEngine:
    """One engine for the module (each case is its own execution and run); no wrapper carries over."""
    clear_journals(stack)
    module_engine.wrappers.clear()
    return module_engine


def replace_export(engine: LocalEngine, edit: Edit) -> Callable[[Any], Any]:
    """Wrap AnaplanCheckFunction: once the real handler has downloaded the budget export, rewrite it."""

    def wrap(handler: Any) -> Any:
        def wrapped(event: dict[str, Any], ctx: Any) -> Any:
            out = handler(event, ctx)
            if out.get("file_key") and out.get("action") == BUDGET:
                rows = list(csv.reader(io.StringIO(s3_text(engine, out["file_key"]).decode("utf-8"))))
                edited = edit(rows)
                if isinstance(edited, bytes):
                    data = edited
                else:
                    buf = io.StringIO()
                    csv.writer(buf, lineterminator="\n").writerows(edited)
                    data = buf.getvalue().encode("utf-8")
                s3_put(engine, out["file_key"], data)
            return out

        return wrapped

    return wrap


EDITED: dict[str, int] = {}  # file line of the row an edit changed


def in_window(rows: list[list[str]]) -> int:
    """Index of the first approved data row of the run's window (Jan-Mar 25); remembers its file line."""
    for i, r in enumerate(rows[1:], start=1):
        if r[2] in ("Jan 25", "Feb 25", "Mar 25") and r[5] == "Approved":
            EDITED["line"] = i + 1
            EDITED["next"] = i + 2
            return i
    raise AssertionError("no approved row in the window")


def set_field(column: int, value: str) -> Edit:
    def edit(rows: list[list[str]]) -> list[list[str]]:
        rows[in_window(rows)][column] = value
        return rows

    return edit


def to_bytes(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode("utf-8")


def non_utf8(rows: list[list[str]]) -> bytes:
    i = in_window(rows)
    data = to_bytes(rows[:i]) + b"USMF,401\xff100," + to_bytes([rows[i][2:]]) + to_bytes(rows[i + 1 :])
    return data


def duplicate(rows: list[list[str]]) -> list[list[str]]:
    i = in_window(rows)
    return [*rows[: i + 1], list(rows[i]), *rows[i + 1 :]]


def header_only(rows: list[list[str]]) -> list[list[str]]:
    return rows[:1]


# (id, edit of the export, expected error class, words the recorded cause must contain)
CASES: list[tuple[str, Edit, str, tuple[str, ...]]] = [
    ("thousands-separator", set_field(4, "1,234.50"), "BadInputData", ("line {line}:", "Amount", "1,234.50")),
    ("comma-decimal", set_field(4, "1234,50"), "BadInputData", ("line {line}:", "Amount", "1234,50")),
    ("accounting-negative", set_field(4, "(12.00)"), "BadInputData", ("line {line}:", "Amount", "(12.00)")),
    ("formula-text", set_field(1, "=SUM(A1)"), "BadInputData", ("line {line}:", "Account", "=SUM(A1)")),
    (
        "more-segments",
        set_field(1, "401100-001-OU_3566-022"),
        "AlignmentFailed",
        ("MainAccount", "401100-001-OU_3566-022"),
    ),
    ("unknown-company", set_field(0, "XXXX"), "BadInputData", ("line {line}:", "Entity", "XXXX")),
    ("period-not-a-month", set_field(2, "Q1 25"), "BadInputData", ("line {line}:", "Period", "Q1 25")),
    ("non-utf8-byte", non_utf8, "BadInputData", ("line {line}:", "UTF-8")),
    ("duplicate-rows", duplicate, "BadInputData", ("line {next}:", "on line {line}")),
    ("empty-export", header_only, "BadInputData", (BUDGET, "no rows")),
]


@pytest.mark.parametrize(("edit", "error", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_export_file_fails_before_writing(
    engine: LocalEngine, stack: Stack, edit: Edit, error: str, needles: tuple[str, ...]
) -> None:
    EDITED.clear()
    engine.wrappers["AnaplanCheckFunction"] = replace_export(engine, edit)
    result = engine.run("PlansFlow", manual(), timeout=180)
    text = assert_failed_cleanly(engine, stack, result, error, *(n.format(**EDITED) for n in needles))
    if error == "BadInputData":
        assert BUDGET in text, "the cause names the export"
    assert journal_counts(stack) == (0, 0), "nothing may be written to F&O"
    assert "WriteJournals" not in result.states_entered()


@pytest.fixture
def plan_cells(stack: Stack) -> Iterator[dict[tuple[str, ...], dict[str, object]]]:
    app = stack.anaplan.app
    cells = app.seed.modules["Plan"].cells
    saved = dict(cells)
    yield cells
    with app._lock:
        cells.clear()
        cells.update(saved)


@pytest.mark.parametrize(
    ("key", "error", "needles"),
    [
        (("USMF", "999999", "Feb 25", "Budget"), "AlignmentFailed", ("999999", "MainAccount")),
        (("USMF", "401100", "Feb 35", "Budget"), "BadInputData", ("Feb 35", "Period")),
        (("USMF", "110200", "Feb 25", "Budget"), "AlignmentFailed", ("110200", "suspended", BUDGET)),
    ],
    ids=["unknown-account", "period-outside-fiscal-calendar", "suspended-account"],
)
def test_bad_plan_cell_fails_before_writing(
    engine: LocalEngine,
    stack: Stack,
    plan_cells: dict[tuple[str, ...], dict[str, object]],
    key: tuple[str, ...],
    error: str,
    needles: tuple[str, ...],
) -> None:
    with stack.anaplan.app._lock:
        plan_cells[key] = {"Amount": Decimal("1500.00"), "Approval": "Approved"}
    result = engine.run("PlansFlow", manual(), timeout=180)
    assert_failed_cleanly(engine, stack, result, error, *needles)
    assert journal_counts(stack) == (0, 0), "nothing may be written to F&O"
