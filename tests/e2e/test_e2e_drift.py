"""Issue 12, item 6: drift detection. A successful run records the fingerprint of the model metadata it relied
on; after the model changes (import columns in another order, a list member removed, an export's layout), the
next run stops in its metadata pre-check with ``MetadataDrift`` and a readable diff, before anything is read
from F&O or written to either system; ``check`` shows the same diff as a WARN; a run with ``accept_drift``
continues and records the new fingerprint, after which ``check`` passes again."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import assert_failed_cleanly, clear_journals, current_fingerprint, fo_entries, manual

from devkit.commands.check import PASS, WARN, Report, check_anaplan
from devkit.engine import LocalEngine
from devkit.sandbox.anaplan.seed import Member
from devkit.stack import Stack

pytestmark = pytest.mark.integration

ACTUALS = "Load GL Actuals"
BUDGET = "Export Approved Budget"
EXTRA = "CC999"  # a member the model builder added to the Cost Centres list (no F&O cost centre has it)


@pytest.fixture
def model(stack: Stack) -> Iterator[Any]:
    """The sandbox's model seed, with one extra Cost Centres member; restored after the test."""
    app = stack.anaplan.app
    seed = app.seed
    saved_imp = {i: list(x.header_names) for i, x in seed.imports.items()}
    saved_exp = {i: list(x.header_names) for i, x in seed.exports.items()}
    centres = seed.lists["Cost Centres"]
    with app._lock:
        centres.members[EXTRA] = Member(EXTRA, "Shared services (Anaplan only)", "299999")
    yield seed
    with app._lock:
        for i, x in seed.imports.items():
            x.header_names = saved_imp[i]
        for i, e in seed.exports.items():
            e.header_names = saved_exp[i]
        centres.members.pop(EXTRA, None)


def _check(stack: Stack, engine: LocalEngine) -> dict[str, tuple[str, str, str]]:
    """check's Anaplan rows (with the drift rows against the engine's ledger): name -> (status, detail, remedy)."""
    from d365_anaplan.config import parse_connection

    report = Report()
    check_anaplan(
        parse_connection(copy.deepcopy(stack.connection())),
        report,
        fingerprints=lambda f: current_fingerprint(engine, f),
    )
    return {ch.name: (ch.status, ch.detail, ch.remedy) for ch in report.checks}


def _import(seed: Any, name: str) -> Any:
    return next(i for i in seed.imports.values() if i.name == name)


def _export(seed: Any, name: str) -> Any:
    return next(e for e in seed.exports.values() if e.name == name)


def test_actuals_stop_on_drift_before_reading_anything_and_accept_drift_records_the_change(
    engine: LocalEngine, stack: Stack, model: Any
) -> None:
    app = stack.anaplan.app
    assert current_fingerprint(engine, "actuals") is None
    assert _check(stack, engine)["metadata drift (actuals)"][0] == PASS
    first = engine.run("ActualsFlow", manual(), timeout=300)
    assert first.status == "SUCCEEDED", first.output  # no fingerprint yet: passes and records
    recorded = current_fingerprint(engine, "actuals")
    assert recorded is not None and recorded["run_id"] == first.name
    assert EXTRA in recorded["fingerprint"]["lists"]["Cost Centres"]["members"]
    assert _check(stack, engine)["metadata drift (actuals)"] == (
        PASS,
        f"unchanged since run {first.name}",
        "",
    )

    with app._lock:  # the model builder reorders the import's columns and removes a member
        imp = _import(model, ACTUALS)
        imp.header_names = [imp.header_names[1], imp.header_names[0], *imp.header_names[2:]]
        del model.lists["Cost Centres"].members[EXTRA]
    status, detail, remedy = _check(stack, engine)["metadata drift (actuals)"]
    assert status == WARN, (status, detail)
    assert f"import {ACTUALS!r} columns: order changed" in detail
    assert f"list 'Cost Centres': 1 removed: {EXTRA}" in detail
    assert "--accept-drift" in remedy

    cells = {k: dict(v) for k, v in app.module_cells("GL Actuals").items()}
    fo_requests = sum(stack.dynamics.server.requests.values())
    stopped = engine.run("ActualsFlow", manual(), timeout=300)
    text = assert_failed_cleanly(engine, stack, stopped, "MetadataDrift", detail, "--accept-drift")
    assert f"since run {first.name}" in text
    entered = stopped.states_entered()
    assert not [s for s in entered if s.startswith(("Extract", "LoadLists", "PrepareActuals", "Upload"))], (
        entered
    )
    assert {k: dict(v) for k, v in app.module_cells("GL Actuals").items()} == cells, (
        "nothing written to Anaplan"
    )
    assert sum(stack.dynamics.server.requests.values()) == fo_requests, "nothing read from F&O"
    assert current_fingerprint(engine, "actuals")["run_id"] == first.name, "a stopped run records nothing"  # type: ignore[index]

    accepted = engine.run("ActualsFlow", {**manual(), "accept_drift": True}, timeout=300)
    assert accepted.status == "SUCCEEDED", accepted.output
    now = current_fingerprint(engine, "actuals")
    assert now is not None and now["run_id"] == accepted.name and now["previous_run_id"] == first.name
    assert any("order changed" in line for line in now["accepted"]), now["accepted"]
    assert EXTRA not in now["fingerprint"]["lists"]["Cost Centres"]["members"]
    assert _check(stack, engine)["metadata drift (actuals)"] == (
        PASS,
        f"unchanged since run {accepted.name}",
        "",
    )


def test_plans_stop_on_a_changed_export_layout_before_running_it(
    engine: LocalEngine, stack: Stack, model: Any
) -> None:
    clear_journals(stack)
    first = engine.run("PlansFlow", manual(), timeout=300)
    assert first.status == "SUCCEEDED", first.output
    assert current_fingerprint(engine, "plans")["run_id"] == first.name  # type: ignore[index]

    with stack.anaplan.app._lock:  # the export's row columns in another order (still readable by name)
        exp = _export(model, BUDGET)
        exp.header_names = [exp.header_names[1], exp.header_names[0], *exp.header_names[2:]]
    status, detail, _remedy = _check(stack, engine)["metadata drift (plans)"]
    assert status == WARN and f"export {BUDGET!r} layout: order changed" in detail, (status, detail)

    held = fo_entries(stack)
    stopped = engine.run("PlansFlow", manual(), timeout=300)
    assert_failed_cleanly(engine, stack, stopped, "MetadataDrift", detail)
    assert "RunExports" not in stopped.states_entered(), "no export may run"
    assert fo_entries(stack) == held, "nothing written to F&O"

    accepted = engine.run("PlansFlow", {**manual(), "accept_drift": True}, timeout=300)
    assert accepted.status == "SUCCEEDED", accepted.output
    assert current_fingerprint(engine, "plans")["run_id"] == accepted.name  # type: ignore[index]
    assert _check(stack, engine)["metadata drift (plans)"][0] == PASS


def test_a_dry_run_records_no_fingerprint(engine: LocalEngine, stack: Stack, model: Any) -> None:
    result = engine.run("ActualsFlow", {**manual(), "dry_run": True}, timeout=300)
    assert result.status == "SUCCEEDED", result.output
    assert current_fingerprint(engine, "actuals") is None
