"""Both state machines end to end on the local engine against both sandboxes: the sandboxes' end state is
compared with what the source of truth holds (computed here from the sandboxes' own data), and running a
flow twice, redriving a step whose effect happened but whose answer was lost, invoking a step twice and
replaying a run each leave exactly one copy of everything."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import (
    PERIODS,
    anaplan_requests,
    assert_actuals_match,
    assert_plans_match,
    clear_actuals,
    clear_journals,
    fail_once_after,
    journal_counts,
    leases,
    ledger,
    manual,
    model_key,
    recorder,
    runs_of,
)

from d365_anaplan.errors import LeaseLost
from devkit.engine import LocalEngine
from devkit.stack import Stack

pytestmark = pytest.mark.integration


def run_ok(engine: LocalEngine, flow: str, payload: dict[str, Any] | None = None) -> Any:
    result = engine.run(flow, payload or manual(), timeout=180)
    assert result.status == "SUCCEEDED", (result.error, result.cause, result.task_failures())
    return result


def tasks_started(stack: Stack) -> int:
    return int(stack.anaplan.app.counters["tasks_started"])


def actuals_tasks(engine: LocalEngine, run_id: str) -> list[Any]:
    return [t for t in ledger(engine).tasks(run_id) if (t.result or {}).get("action") == "Load GL Actuals"]


def gl_reads(stack: Stack) -> int:
    return stack.dynamics.app.count("GET /data/GeneralJournal")


# --- end state, and a second run ---------------------------------------------------------------------


def test_actuals_end_state_equals_posted_gl_and_a_second_run_changes_nothing(
    engine: LocalEngine, stack: Stack
) -> None:
    clear_actuals(stack)
    first = run_ok(engine, "ActualsFlow")
    assert first.output["gate"]["periods"] == list(PERIODS)
    assert_actuals_match(stack)
    assert leases(engine).get(model_key(stack)) is None
    after_first = stack.anaplan.app.module_cells("GL Actuals")
    second = run_ok(engine, "ActualsFlow")
    assert stack.anaplan.app.module_cells("GL Actuals") == after_first
    assert_actuals_match(stack)
    runs = runs_of(engine)
    assert sorted(r.run_id for r in runs) == sorted([first.name, second.name]), "one ledger run per execution"
    assert all(r.status == "SUCCEEDED" for r in runs)
    assert leases(engine).get(model_key(stack)) is None


def test_plans_end_state_equals_approved_plan_and_a_second_run_writes_nothing(
    engine: LocalEngine, stack: Stack
) -> None:
    clear_journals(stack)
    first = run_ok(engine, "PlansFlow")
    assert_plans_match(stack)
    assert leases(engine).get(model_key(stack)) is None
    counts = journal_counts(stack)
    second = run_ok(engine, "PlansFlow")
    assert journal_counts(stack) == counts
    assert second.output["written"] == [], "F&O already holds the approved plan: nothing to write"
    assert second.output["plan"]["differences"]["cells"] == 0
    assert_plans_match(stack)
    runs = runs_of(engine)
    assert sorted(r.run_id for r in runs) == sorted([first.name, second.name]), "one ledger run per execution"
    assert all(r.status == "SUCCEEDED" for r in runs)


def test_gl_extracted_in_resumable_slices_loads_every_line_once(stack: Stack) -> None:
    """Each ExtractGL invocation believes its Lambda is about to time out, so it stops after every page and
    hands over a continuation token: the GL arrives in many slices, and Anaplan must still hold every line
    exactly once."""
    clear_actuals(stack)
    with LocalEngine(wait_scale=0.0, lambda_deadline_ms=20_000) as engine:
        cfg = stack.connection()
        cfg["dynamics"] = {**cfg["dynamics"], "page_size": 20}
        engine.install_connection(cfg)
        run_ok(engine, "ActualsFlow")
        companies = len(cfg["dynamics"]["companies"])
        assert engine.invocations["ExtractGLFunction"] >= 2 * companies, "the GL came in several slices"
    assert_actuals_match(stack)


# --- redrive: the effect happened, the answer was lost ------------------------------------------------


def test_write_journal_redriven_after_its_effect_writes_once(engine: LocalEngine, stack: Stack) -> None:
    from d365_anaplan.errors import DynamicsUnavailable

    clear_journals(stack)
    wrap, failed = fail_once_after(DynamicsUnavailable)
    engine.wrappers["WriteJournalFunction"] = wrap
    result = run_ok(engine, "PlansFlow")
    assert len(failed) == 1
    assert [e for e, _ in result.task_failures()] == ["DynamicsUnavailable"]
    batches = len(result.output["plan"]["batches"])
    assert engine.invocations["WriteJournalFunction"] == batches + 1, "the Retry re-invoked the batch"
    assert_plans_match(stack)


def test_anaplan_import_start_redriven_starts_one_task(engine: LocalEngine, stack: Stack) -> None:
    from d365_anaplan.errors import AnaplanUnavailable

    clear_actuals(stack)
    wrap, failed = fail_once_after(AnaplanUnavailable, lambda e: e.get("step") == "StartActualsImport")
    engine.wrappers["AnaplanStartFunction"] = wrap
    before = tasks_started(stack)
    result = run_ok(engine, "ActualsFlow")
    assert len(failed) == 1
    assert [e for e, _ in result.task_failures()] == ["AnaplanUnavailable"]
    cfg = stack.connection()["mapping"]
    expected_tasks = 1 + len(cfg["dimensions"]) + 1 + 1  # accounts + dimension lists + actuals + read-back
    assert engine.invocations["AnaplanStartFunction"] == expected_tasks + 1
    assert tasks_started(stack) - before == expected_tasks, "the retried start followed the task it started"
    assert len(actuals_tasks(engine, result.name)) == 1
    assert_actuals_match(stack)


def test_anaplan_export_start_redriven_starts_one_task(engine: LocalEngine, stack: Stack) -> None:
    from d365_anaplan.errors import AnaplanUnavailable

    clear_journals(stack)
    wrap, failed = fail_once_after(AnaplanUnavailable, lambda e: e.get("kind") == "exports")
    engine.wrappers["AnaplanStartFunction"] = wrap
    before = tasks_started(stack)
    result = run_ok(engine, "PlansFlow")
    assert len(failed) == 1
    assert tasks_started(stack) - before == 2, "one task per export"
    assert [e for e, _ in result.task_failures()] == ["AnaplanUnavailable"]
    assert_plans_match(stack)


def test_anaplan_upload_redriven_loads_the_file_once(engine: LocalEngine, stack: Stack) -> None:
    from d365_anaplan.errors import AnaplanUnavailable

    clear_actuals(stack)
    wrap, failed = fail_once_after(AnaplanUnavailable, lambda e: e.get("step") == "UploadActuals")
    engine.wrappers["AnaplanUploadFunction"] = wrap
    result = run_ok(engine, "ActualsFlow")
    assert len(failed) == 1
    assert [e for e, _ in result.task_failures()] == ["AnaplanUnavailable"]
    (task,) = actuals_tasks(engine, result.name)
    counts = (task.result or {})["counts"]
    assert int(counts["total"]) == int(result.output["actuals"]["rows"]), "the import read the file once"
    assert int(counts["failed"]) == 0
    assert_actuals_match(stack)


def test_actuals_steps_invoked_twice_have_one_effect(engine: LocalEngine, stack: Stack) -> None:
    clear_actuals(stack)
    events: dict[str, list[dict[str, Any]]] = {}
    for fn in ("AnaplanStartFunction", "AnaplanUploadFunction", "ExtractGLFunction", "RunLedgerFunction"):
        events[fn] = []
        engine.wrappers[fn] = recorder(events[fn])
    result = run_ok(engine, "ActualsFlow")
    engine.wrappers.clear()
    cells = stack.anaplan.app.module_cells("GL Actuals")
    started = tasks_started(stack)
    book = ledger(engine)
    files = len(book.files(result.name))
    (start,) = [e for e in events["AnaplanStartFunction"] if e["step"] == "StartActualsImport"]
    (original,) = actuals_tasks(engine, result.name)
    # The run released the model lease: a late duplicate delivery is refused before it reaches Anaplan.
    sent = anaplan_requests(stack)
    (upload,) = [e for e in events["AnaplanUploadFunction"] if e["step"] == "UploadActuals"]
    for fn, event in (
        ("AnaplanStartFunction", {**start, "step": "StartActualsImportAgain"}),
        ("AnaplanUploadFunction", upload),
    ):
        with pytest.raises(LeaseLost, match="nothing was sent to Anaplan"):
            engine.invoke(fn, event)
    assert anaplan_requests(stack) == sent
    # Delivered while the execution still holds the lease, the duplicates have one effect.
    leases(engine).acquire(model_key(stack), result.arn, 3600)
    for _ in range(2):
        again = engine.invoke("AnaplanStartFunction", start)
        assert again["task_id"] == original.task_id
    for _ in range(2):
        assert engine.invoke("AnaplanUploadFunction", upload)["uploaded"] is True
    for extract in events["ExtractGLFunction"]:
        outs = [engine.invoke("ExtractGLFunction", extract) for _ in range(2)]
        assert outs[0] == outs[1]
    (open_run,) = [e for e in events["RunLedgerFunction"] if e.get("body", e).get("op") == "start"]
    engine.invoke("RunLedgerFunction", open_run)
    assert leases(engine).release(model_key(stack), result.arn)
    assert tasks_started(stack) == started, "no second task was started"
    assert stack.anaplan.app.module_cells("GL Actuals") == cells
    assert len(book.files(result.name)) == files, "re-staged files overwrite their own ledger records"
    assert [r.run_id for r in runs_of(engine)] == [result.name], "one ledger run per execution"
    assert_actuals_match(stack)


def test_plans_steps_invoked_twice_have_one_effect(engine: LocalEngine, stack: Stack) -> None:
    clear_journals(stack)
    events: dict[str, list[dict[str, Any]]] = {}
    for fn in ("WriteJournalFunction", "PlanJournalsFunction", "AnaplanCheckFunction", "ModelLeaseFunction"):
        events[fn] = []
        engine.wrappers[fn] = recorder(events[fn])
    result = run_ok(engine, "PlansFlow")
    engine.wrappers.clear()
    counts = journal_counts(stack)
    book = ledger(engine)
    files = len(book.files(result.name))
    assert events["WriteJournalFunction"]
    for event in events["WriteJournalFunction"]:
        for _ in range(2):
            out = engine.invoke("WriteJournalFunction", event)
            assert out["written"] == 0 and out["skipped"] > 0, out
    (plan,) = events["PlanJournalsFunction"]
    outs = [engine.invoke("PlanJournalsFunction", plan) for _ in range(2)]
    assert result.output["plan"]["batches"], "the run wrote the plan"
    assert outs[0] == outs[1] and outs[0]["batches"] == [], (
        "planned again: F&O holds it all, nothing to write"
    )
    downloads = [e for e in events["AnaplanCheckFunction"] if e.get("download_to")]
    with pytest.raises(LeaseLost):  # the run released the model: a late duplicate poll is refused
        engine.invoke("AnaplanCheckFunction", downloads[-1])
    (acquire,) = [e for e in events["ModelLeaseFunction"] if e["op"] == "acquire"]
    (release,) = [e for e in events["ModelLeaseFunction"] if e["op"] == "release"]
    engine.invoke("ModelLeaseFunction", acquire)
    engine.invoke("ModelLeaseFunction", acquire)  # the same owner re-acquires its own lease
    assert leases(engine).get(model_key(stack)).owner == acquire["execution"]
    for event in downloads[-1:]:  # under the lease, a repeated poll downloads to the same file
        assert engine.invoke("AnaplanCheckFunction", event) == engine.invoke("AnaplanCheckFunction", event)
    assert engine.invoke("ModelLeaseFunction", release)["released"] is True
    assert engine.invoke("ModelLeaseFunction", release)["released"] is False
    assert leases(engine).get(model_key(stack)) is None
    assert journal_counts(stack) == counts
    assert len(book.files(result.name)) == files, "a repeated download overwrites its own file record"
    assert [r.run_id for r in runs_of(engine)] == [result.name]
    assert_plans_match(stack)


# --- replay -----------------------------------------------------------------------------------------------


def test_actuals_replay_reloads_the_staged_files_only(engine: LocalEngine, stack: Stack) -> None:
    clear_actuals(stack)
    original = run_ok(engine, "ActualsFlow")
    cells = stack.anaplan.app.module_cells("GL Actuals")
    reads = gl_reads(stack)
    extracts = engine.invocations["ExtractGLFunction"]
    replay = run_ok(
        engine, "ActualsFlow", {"connection": "demo", "trigger": "replay", "replay_of": original.name}
    )
    assert "ReplayStaged" in replay.states_entered()
    assert engine.invocations["ExtractGLFunction"] == extracts, "a replay does not extract again"
    assert gl_reads(stack) == reads, "a replay does not read F&O's GL again"
    assert stack.anaplan.app.module_cells("GL Actuals") == cells
    assert_actuals_match(stack)
    run = ledger(engine).get_run(replay.name)
    assert run.trigger == "replay" and run.status == "SUCCEEDED"
    assert sorted(r.run_id for r in runs_of(engine)) == sorted([original.name, replay.name])


def test_plans_replay_writes_nothing_twice(engine: LocalEngine, stack: Stack) -> None:
    clear_journals(stack)
    original = run_ok(engine, "PlansFlow")
    counts = journal_counts(stack)
    started = tasks_started(stack)
    replay = run_ok(
        engine, "PlansFlow", {"connection": "demo", "trigger": "replay", "replay_of": original.name}
    )
    assert "ReplayStaged" in replay.states_entered()
    assert tasks_started(stack) == started, "a replay does not run the exports again"
    assert journal_counts(stack) == counts
    assert_plans_match(stack)


def test_replay_of_a_run_that_failed_before_writing_completes_it_once(
    engine: LocalEngine, stack: Stack
) -> None:
    clear_journals(stack)

    def crash_before(handler: Any) -> Any:
        def wrapped(event: dict[str, Any], ctx: Any) -> Any:
            raise RuntimeError("simulated crash before any line was sent")

        return wrapped

    engine.wrappers["WriteJournalFunction"] = crash_before
    failed = engine.run("PlansFlow", manual(), timeout=180)
    assert failed.status == "FAILED"
    assert ledger(engine).get_run(failed.name).cause["Error"] == "RuntimeError"
    assert leases(engine).get(model_key(stack)) is None
    engine.wrappers.clear()
    run_ok(engine, "PlansFlow", {"connection": "demo", "trigger": "replay", "replay_of": failed.name})
    assert_plans_match(stack)
