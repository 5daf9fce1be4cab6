"""Package continuation tokens travel through Step Functions state: a token is honoured only for the item it
was issued to (slice) and only with an execution id this run derives itself (steps/gl_package.py,
steps/plan_package.py)."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace
from typing import Any

import pytest

from d365_anaplan.dynamics.journal_records import EntryHeader
from d365_anaplan.errors import BadInputData
from d365_anaplan.steps import gl_package, plan_package
from d365_anaplan.steps.gl_package import _execution_id, encode_token, extract_gl_package

LO, HI = date(2025, 1, 1), date(2025, 2, 1)
WINDOW = [LO.isoformat(), HI.isoformat()]


def _ctx() -> Any:
    """Only what is read before a token is judged: nothing may be asked of F&O for a refused token."""
    return SimpleNamespace(connection="contoso", run_id="run-1")


def _token(ctx: Any, **changes: Any) -> str:
    state = {"v": 1, "phase": "read", "id": _execution_id(ctx, "usmf", 1), "company": "usmf",
             "window": WINDOW, "slice": "2025-01", "started": 0, "polls": 0, "rows": 0, **changes}  # fmt: skip
    return encode_token(state)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"slice": "2025-02"}, r"field 'slice' is not this item's slice '2025-01'"),
        ({"id": "anaplan-gl-usmf-0000-1"}, r"field 'id' is not an export execution id of this run for usmf"),
        ({"id": "someone-elses-export"}, r"field 'id' is not an export execution id"),
        ({"phase": "upload"}, r"field 'phase' is neither 'poll' nor 'read'"),
    ],
)
def test_a_gl_package_token_for_another_item_or_export_is_refused(
    changes: dict[str, Any], message: str
) -> None:
    ctx = _ctx()
    with pytest.raises(BadInputData, match=message):
        extract_gl_package(ctx, None, "usmf", LO, HI, "2025-01", 1, _token(ctx, **changes))  # type: ignore[arg-type]


def test_an_id_of_another_run_is_refused_and_this_runs_ids_are_accepted() -> None:
    ctx, other = _ctx(), SimpleNamespace(connection="contoso", run_id="run-2")
    with pytest.raises(BadInputData, match="field 'id'"):
        extract_gl_package(
            ctx, None, "usmf", LO, HI, "2025-01", 1, _token(ctx, id=_execution_id(other, "usmf", 1))
        )  # type: ignore[arg-type]
    for n in (1, gl_package._MAX_EXPORTS):
        gl_package._check_token(ctx, "usmf", "2025-01", {"slice": "2025-01", "phase": "poll",
                                                         "id": _execution_id(ctx, "usmf", n)})  # fmt: skip


def test_a_budget_import_token_with_a_foreign_execution_id_is_refused() -> None:
    ctx = SimpleNamespace(connection="contoso", run_id="run-1", dynamics=SimpleNamespace(client=None),
                          cfg=SimpleNamespace(dynamics=SimpleNamespace(package=None)))  # fmt: skip
    header = EntryHeader(key="APK3QZ-7F2M9XAB", description="APK3QZ-7F2M9XAB Budget")
    token = encode_token({"v": 1, "id": "anaplan-budget-000000000000000000000000", "journal": header.key})
    with pytest.raises(
        BadInputData, match=r"field 'id' is not the import execution id of this run for entry APK3QZ"
    ):
        plan_package.write_budget_package(ctx, "usmf", [], header, token)
