"""Plans at volume: budget register entries above ``dynamics.journal.package_threshold_lines`` go in as a
"Budget account entries" package import, with the OData path's lines, keys and revision rules: the same end
state (F&O's cumulative budget equals the approved plan to the cent), a revision adds only the differences
under the revision code, a rerun adds nothing, and a failed import fails the run with F&O's message."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import assert_failed_cleanly, assert_plans_match, clear_journals, manual
from test_e2e_plan_revisions import plan_line_count, revise

from d365_anaplan.runtime import clear_caches
from devkit.engine import LocalEngine
from devkit.sandbox.dynamics import budget as fo_budget
from devkit.sandbox.dynamics.dmf import DEFAULT_IMPORT_PROJECT
from devkit.stack import Stack

pytestmark = pytest.mark.integration
LINES_POST = "POST /data/BudgetRegisterEntryLines"


@pytest.fixture
def by_package(engine: LocalEngine, stack: Stack) -> Iterator[None]:
    """Every budget register entry through a package import (threshold 1), F&O emptied, the Plan restored."""
    cfg = stack.connection()
    blob = stack.dynamics.app.blob_store
    cfg["dynamics"]["journal"] = {**cfg["dynamics"]["journal"], "package_threshold_lines": 1}
    cfg["dynamics"]["package"] = {
        "import_project": DEFAULT_IMPORT_PROJECT,
        "blob_host": blob.base_url,
        "poll_seconds": 1,
    }
    cfg["security"] = {"allowed_hosts": [*cfg["security"]["allowed_hosts"], blob.authority]}
    engine.install_connection(cfg)
    clear_caches()
    clear_journals(stack)
    app = stack.anaplan.app
    with app._lock:
        saved = {k: dict(v) for k, v in app.seed.modules["Plan"].cells.items()}
    yield
    with app._lock:
        app.seed.modules["Plan"].cells.clear()
        app.seed.modules["Plan"].cells.update(saved)
    clear_journals(stack)


def run(engine: LocalEngine) -> Any:
    return engine.run("PlansFlow", manual(), timeout=180)


def run_ok(engine: LocalEngine) -> Any:
    result = run(engine)
    assert result.status == "SUCCEEDED", (result.error, result.cause, result.task_failures())
    return result


@pytest.mark.usefixtures("by_package")
def test_plans_land_by_package_import_and_a_revision_adds_only_the_differences(
    engine: LocalEngine, stack: Stack
) -> None:
    fo = stack.dynamics.app
    posts, imports = fo.count(LINES_POST), fo.packages.counters["ImportFromPackage"]
    first = run_ok(engine)
    assert_plans_match(stack)
    heads = len(fo.budget_headers)
    assert fo.packages.counters["ImportFromPackage"] - imports == heads, "one import per entry"
    assert fo.count(LINES_POST) == posts, "no line went over OData"
    assert fo.blob_store.authorization_seen == 0, "the upload carries the SAS only"
    assert first.output["reconciliation"]["pending_completion"] == heads
    assert fo_budget.update_budget_balances(fo), "the user completes the entries"
    before = plan_line_count(stack)
    first_lines = {k: len(v) for k, v in fo.budget_lines.items()}

    revise(stack)
    second = run_ok(engine)
    assert_plans_match(stack)
    assert second.output["plan"]["differences"]["cells"] == 6
    assert plan_line_count(stack) - before == 6, "only the six differences are written"
    assert {k: len(v) for k, v in fo.budget_lines.items() if k in first_lines} == first_lines
    codes = {
        (h["BudgetModelId"], h["BudgetCode"]) for k, h in fo.budget_headers.items() if k not in first_lines
    }
    revisions = {("FY2025", "Revision"), ("FC2025", "FcRev")}
    assert revisions <= codes <= revisions | {("FY2025", "Original")}, codes  # the new cell is a first load

    imports = fo.packages.counters["ImportFromPackage"]
    run_ok(engine)
    assert_plans_match(stack)
    assert plan_line_count(stack) - before == 6, "a rerun adds nothing"
    assert fo.packages.counters["ImportFromPackage"] == imports


@pytest.mark.usefixtures("by_package")
def test_a_failed_import_fails_the_run_with_fo_s_message(engine: LocalEngine, stack: Stack) -> None:
    stack.dynamics.app.packages.fail_next_import = "Budget code 'Original' is not valid for budget model"
    result = run(engine)
    assert_failed_cleanly(
        engine, stack, result, "DynamicsPackageFailed", "ended Failed", "is not valid for budget model"
    )
