"""The actuals state machine from statemachine/ run through the real handlers on the local engine.

Covers the platform's promises: Retry and Catch driven by handlers' named exceptions, the model lease
serialising executions, expired-lease takeover, release after failure (in the flow and by the janitor), and
the ledger answering what happened in a run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventbridge import execution_status_change

from d365_anaplan.errors import RecordNotFound
from devkit.engine import LocalEngine
from devkit.stack import Stack, running

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running(gl_lines=400, months=3) as st:
        yield st


@pytest.fixture
def model_key(stack: Stack) -> str:
    return f"{stack.anaplan.app.seed.workspace_id}/{stack.anaplan.app.seed.model_id}"


@pytest.fixture
def engine(stack: Stack) -> Iterator[LocalEngine]:
    with LocalEngine(wait_scale=0.0) as eng:
        eng.install_connection(stack.connection())
        yield eng


def ledger(engine: LocalEngine) -> Any:
    from d365_anaplan.ledger.audit import RunLedger

    return RunLedger(engine.environment["LEDGER_TABLE"])


def leases(engine: LocalEngine, clock: Any = None) -> Any:
    from d365_anaplan.ledger.lease import ModelLease

    return ModelLease(engine.environment["LEDGER_TABLE"], clock=clock)


def manual(periods: tuple[str, str] = ("2025-01", "2025-02")) -> dict[str, Any]:
    return {"connection": "demo", "trigger": "manual", "periods": {"from": periods[0], "to": periods[1]}}


def test_connection_is_stored_with_secrets_manager_arns_only(engine: LocalEngine) -> None:
    from d365_anaplan.runtime import load_connection

    cfg = load_connection("demo", fresh=True)
    assert all(s.kind == "secretsmanager" for _, s in cfg.secrets())


def test_manual_run_succeeds_records_ledger_and_advances_watermark(
    engine: LocalEngine, model_key: str
) -> None:
    from d365_anaplan.ledger.watermarks import Watermarks

    result = engine.run("ActualsFlow", manual())
    assert result.status == "SUCCEEDED", result.cause
    assert result.output["gate"]["periods"] == ["2025-01", "2025-02"]
    run = ledger(engine).get_run(result.name)
    assert run.status == "SUCCEEDED"
    assert run.connection == "demo"
    mark = Watermarks(engine.environment["LEDGER_TABLE"]).get("demo", "actuals")
    assert mark is not None
    assert mark.value == "2025-02"
    assert leases(engine).get(model_key) is None
    steps = [s.step for s in ledger(engine).steps(result.name)]
    assert "AcquireModelLease" in steps
    assert "ReleaseModelLease" in steps


def test_bad_period_is_caught_recorded_and_execution_fails(engine: LocalEngine) -> None:
    result = engine.run("ActualsFlow", manual(("2025-13", "2025-14")))
    assert result.status == "FAILED"
    assert result.error == "ActualsRunFailed"
    errors = [e for e, _ in result.task_failures()]
    assert errors == ["BadInputData"], "a non-transient named error is caught, not retried"
    assert "RecordFailure" in result.states_entered()
    run = ledger(engine).get_run(result.name)
    assert run.status == "FAILED"
    assert run.cause is not None
    assert run.cause["Error"] == "BadInputData"
    assert "2025-13" in run.cause["Cause"]


def test_unknown_connection_fails_with_config_error(engine: LocalEngine) -> None:
    result = engine.run("ActualsFlow", {"connection": "nobody", "trigger": "manual", "periods": None})
    assert result.status == "FAILED"
    assert [e for e, _ in result.task_failures()] == ["ConfigError"]
    run = ledger(engine).get_run(result.name)
    assert run.status == "FAILED"
    assert "no configuration stored" in run.cause["Cause"]


def test_held_lease_is_retried_until_released(engine: LocalEngine, model_key: str) -> None:
    leases(engine).acquire(model_key, "arn:aws:states:us-east-1:123456789012:execution:other:run-0", 600)
    attempts: list[str] = []

    def release_after_two_refusals(handler: Any) -> Any:
        def wrapped(event: dict[str, Any], ctx: Any) -> Any:
            if event.get("op") == "acquire":
                attempts.append("acquire")
                if len(attempts) == 3:  # the other execution finishes meanwhile
                    leases(engine).release(
                        model_key, "arn:aws:states:us-east-1:123456789012:execution:other:run-0"
                    )
            return handler(event, ctx)

        return wrapped

    engine.wrappers["ModelLeaseFunction"] = release_after_two_refusals
    result = engine.run("ActualsFlow", manual())
    assert result.status == "SUCCEEDED", result.cause
    assert [e for e, _ in result.task_failures()] == ["ModelLeaseHeld", "ModelLeaseHeld"]
    assert len(attempts) == 3


def test_expired_lease_is_taken_over(engine: LocalEngine, model_key: str) -> None:
    past = datetime.now(UTC) - timedelta(hours=5)
    leases(engine, clock=lambda: past).acquire(model_key, "arn:aws:states:::execution:ghost:dead", 60)
    result = engine.run("ActualsFlow", manual())
    assert result.status == "SUCCEEDED", result.cause
    assert result.task_failures() == []


def test_two_concurrent_executions_are_strictly_serialised(stack: Stack) -> None:
    with LocalEngine(wait_scale=0.01) as engine:
        engine.install_connection(stack.connection())
        spans: dict[str, list[float]] = {}
        lock = threading.Lock()

        def hold_the_model(handler: Any) -> Any:
            def wrapped(event: dict[str, Any], ctx: Any) -> Any:
                result = handler(event, ctx)
                with lock:
                    if event["op"] == "acquire":
                        spans[event["execution"]] = [time.monotonic()]
                    elif event["op"] == "release":
                        spans[event["execution"]].append(time.monotonic())
                if event["op"] == "acquire":
                    time.sleep(0.4)  # the work done under the lease
                return result

            return wrapped

        engine.wrappers["ModelLeaseFunction"] = hold_the_model
        first = engine.start_execution("ActualsFlow", manual())
        second = engine.start_execution("ActualsFlow", manual(("2025-03", "2025-03")))
        results = [engine.wait(first, 60), engine.wait(second, 60)]
        assert [r.status for r in results] == ["SUCCEEDED", "SUCCEEDED"]
        (_, a_end), (b_start, _) = sorted(spans.values())
        assert a_end <= b_start, "the second execution acquired the model before the first released it"
        refused = [e for r in results for e, _ in r.task_failures()]
        assert refused, "the later execution must have been refused at least once"
        assert set(refused) == {"ModelLeaseHeld"}


def test_lease_is_released_when_the_flow_fails_after_acquiring(engine: LocalEngine, model_key: str) -> None:
    def fail_release(handler: Any) -> Any:
        def wrapped(event: dict[str, Any], ctx: Any) -> Any:
            if event["op"] == "release":
                raise RuntimeError("simulated crash before the release was written")
            return handler(event, ctx)

        return wrapped

    engine.wrappers["ModelLeaseFunction"] = fail_release
    result = engine.run("ActualsFlow", manual())
    assert result.status == "FAILED"
    assert leases(engine).get(model_key) is None, "RecordFailure must release the lease"
    assert ledger(engine).get_run(result.name).cause["Error"] == "RuntimeError"


def test_janitor_releases_leases_of_executions_that_died(engine: LocalEngine, model_key: str) -> None:
    execution = "arn:aws:states:us-east-1:123456789012:execution:ActualsFlow:timed-out-run"
    ledger(engine).start_run("timed-out-run", "demo", "actuals", "schedule", {})
    leases(engine).acquire(model_key, execution, 3600)
    event = execution_status_change(execution, "TIMED_OUT")
    out = engine.invoke("LeaseJanitorFunction", event)
    assert out == {"released": [model_key], "run_closed": True}
    assert leases(engine).get(model_key) is None
    run = ledger(engine).get_run("timed-out-run")
    assert run.status == "FAILED"
    assert run.cause["Error"] == "States.TIMED_OUT"
    assert engine.invoke("LeaseJanitorFunction", event) == {"released": [], "run_closed": False}


def test_ledger_answers_what_happened_to_a_record(engine: LocalEngine) -> None:
    result = engine.run("ActualsFlow", manual(("2025-13", "2025-13")))
    book = ledger(engine)
    book.record_journal_line(
        result.name,
        "JRN-1",
        "JRN-1/0001",
        "FAILED",
        None,
        "Account 999999 does not exist",
        {"amount": "12.50"},
    )
    book.record_journal_line(
        result.name, "JRN-1", "JRN-1/0001", "WRITTEN", {"RecId": "5637144576"}, None, {"amount": "12.50"}
    )
    events = book.trace(result.name, "JRN-1/0001")
    assert [(e.kind, e.status) for e in events] == [("LINE", "FAILED"), ("LINE", "WRITTEN")]
    assert "Account 999999 does not exist" in str(events[0].detail)
    assert "5637144576" in str(events[1].detail)
    with pytest.raises(RecordNotFound, match="no record 'JRN-1/0002'"):
        book.trace(result.name, "JRN-1/0002")
