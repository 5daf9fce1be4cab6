"""Faults on the Anaplan side during real flow runs. Each run must end SUCCEEDED with the sandboxes holding exactly
what the source of truth holds, or FAILED with a clear cause recorded in the ledger and the model lease
released."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import (
    assert_actuals_match,
    assert_failed_cleanly,
    before_first,
    clear_actuals,
    leases,
    ledger,
    model_key,
    run_flow,
    s3_text,
    succeeded,
)

from devkit.engine import LocalEngine
from devkit.stack import Stack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("retry_after", ["1", None], ids=["retry-after", "no-retry-after"])
def test_anaplan_429_storm(engine: LocalEngine, stack: Stack, retry_after: str | None) -> None:
    clear_actuals(stack)
    app = stack.anaplan.app
    count = 6 if retry_after else 3  # without Retry-After the client backs off exponentially (real time)
    app.faults.fail("/tasks", 429, count=count, retry_after=retry_after)
    before = app.counters["fault 429"]
    result = run_flow(engine, "ActualsFlow")
    assert app.counters["fault 429"] - before == count
    succeeded(result)
    assert_actuals_match(stack)
    if retry_after:
        assert "AnaplanThrottled" in [e for e, _ in result.task_failures()]


def test_anaplan_token_expires_mid_run(engine: LocalEngine, stack: Stack) -> None:
    clear_actuals(stack)
    app = stack.anaplan.app
    wrap, done = before_first(lambda e: e.get("step") == "StartActualsImport", app.expire_tokens)
    engine.wrappers["AnaplanStartFunction"] = wrap
    minted = app.counters["tokens_minted"]
    result = run_flow(engine, "ActualsFlow")
    assert done
    succeeded(result)
    assert app.counters["tokens_minted"] > minted, "a new token was obtained after the expiry"
    assert_actuals_match(stack)


def test_busy_model_is_waited_for(engine: LocalEngine, stack: Stack) -> None:
    clear_actuals(stack)
    app = stack.anaplan.app
    started = app.counters["tasks_started"]
    app.faults.busy(3)
    result = run_flow(engine, "ActualsFlow")
    succeeded(result)
    assert app.faults.busy_task_starts == 0
    assert [e for e, _ in result.task_failures()].count("AnaplanModelBusy") == 3
    assert app.counters["tasks_started"] - started == 6, "each action started exactly once"
    assert_actuals_match(stack)


def test_failed_import_saves_the_dump_and_names_it(engine: LocalEngine, stack: Stack) -> None:
    clear_actuals(stack)
    app = stack.anaplan.app
    wrap, done = before_first(
        lambda e: e.get("step") == "StartActualsImport", lambda: app.faults.fail_next_import(1)
    )
    engine.wrappers["AnaplanStartFunction"] = wrap
    result = run_flow(engine, "ActualsFlow")
    assert done
    text = assert_failed_cleanly(
        engine, stack, result, "AnaplanTaskFailed", "Load GL Actuals", "failure dump at s3://"
    )
    key = text.split("failure dump at s3://", 1)[1].split()[0].rstrip(".;,")
    bucket, _, key = key.partition("/")
    assert bucket == engine.environment["STAGING_BUCKET"]
    dump = s3_text(engine, key)
    assert b"Injected failure" in dump, dump[:300]
    (task,) = [t for t in ledger(engine).tasks(result.name) if t.dump_key]
    assert task.dump_key == key


def test_crash_between_upload_and_import_then_rerun(engine: LocalEngine, stack: Stack) -> None:
    clear_actuals(stack)

    def crash_after_upload(handler: Any) -> Any:
        def wrapped(event: dict[str, Any], ctx: Any) -> Any:
            out = handler(event, ctx)
            if event.get("step") == "UploadActuals":
                raise RuntimeError("simulated crash after the actuals file was uploaded")
            return out

        return wrapped

    engine.wrappers["AnaplanUploadFunction"] = crash_after_upload
    failed = run_flow(engine, "ActualsFlow")
    assert_failed_cleanly(engine, stack, failed, "RuntimeError", "simulated crash")
    assert stack.anaplan.app.module_cells("GL Actuals") == {}, "nothing was imported"
    engine.wrappers.clear()
    succeeded(run_flow(engine, "ActualsFlow"))
    assert_actuals_match(stack)
    assert leases(engine).get(model_key(stack)) is None


def test_import_start_accepted_but_answer_lost(
    engine: LocalEngine, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anaplan starts the actuals import, then the connection drops before the task id arrives. The retry
    must follow the task Anaplan started, not start the import a second time behind its back."""
    from devkit.sandbox.server import Response

    clear_actuals(stack)
    app = stack.anaplan.app
    actuals_import = app.import_by_name("Load GL Actuals").id
    original = app._r_task_start
    dropped: list[int] = []

    def start_then_drop(req: Any, kind: str, action_id: str) -> Any:
        resp = original(req, kind, action_id)
        if action_id == actuals_import and not dropped:
            dropped.append(resp.status)
            return Response(0, drop_connection=True)
        return resp

    monkeypatch.setattr(app, "_r_task_start", start_then_drop)
    started = app.counters["tasks_started"]
    result = run_flow(engine, "ActualsFlow")
    assert dropped == [200], "the import was started, its answer lost"
    succeeded(result)
    assert app.counters["tasks_started"] - started == 6, "the import was not started a second time"
    (step,) = [s for s in ledger(engine).steps(result.name) if s.step == "StartActualsImport"]
    assert step.detail["adopted"] is True, "the retry followed the task Anaplan had started"
    assert_actuals_match(stack)
