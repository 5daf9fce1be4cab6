"""Open, close and fail runs in the ledger.

* ``start``: validate the connection exists, open the run (idempotent per execution; a redriven run reopens).
* ``finish``: close the run as SUCCEEDED or SKIPPED and, on success only, advance the flow's watermark.
* ``fail``: the flows' single failure state: record the cause and release any model lease the execution holds.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from d365_anaplan.errors import ConfigError, RecordNotFound
from d365_anaplan.ledger.audit import RunLedger
from d365_anaplan.ledger.lease import ModelLease
from d365_anaplan.ledger.watermarks import Watermarks
from d365_anaplan.observability import logger, metrics, tracer
from d365_anaplan.runtime import run_id_of, settings
from d365_anaplan.steps.handler import StepOutput, checked
from d365_anaplan.steps.runs import RunRequest, open_run

Flow = Literal["actuals", "plans"]


class StartEvent(BaseModel):
    op: Literal["start"]
    connection: str
    flow: Flow
    execution: str
    request: dict[str, Any] = Field(default_factory=dict)


class FinishEvent(BaseModel):
    op: Literal["finish"]
    connection: str
    flow: Flow
    execution: str
    status: Literal["SUCCEEDED", "SKIPPED"]
    summary: dict[str, Any] = Field(default_factory=dict)
    watermark: str | None = None  # e.g. "2025-03": the last period this run completed
    dry_run: bool = False


class FailureInfo(BaseModel):
    Error: str = "Unknown"
    Cause: str = ""


class FailEvent(BaseModel):
    op: Literal["fail"]
    connection: str
    flow: Flow
    execution: str
    error: FailureInfo = FailureInfo()


class Event(BaseModel):
    body: Annotated[StartEvent | FinishEvent | FailEvent, Field(discriminator="op")]


class OpenRunOutput(StepOutput):
    run_id: str
    model_key: str
    companies: list[str]
    periods: dict[str, str | None] | None
    dry_run: bool
    verify_export: str | None
    replay_of: str | None
    failed_lines_only: bool
    exports: list[dict[str, Any]]


class FinishOutput(StepOutput):
    run_id: str
    status: str
    watermark: str | None


class FailOutput(StepOutput):
    run_id: str
    status: Literal["FAILED"]
    error: str
    released: list[str]


EVENT_MODEL = Event  # validates {"body": event} (events/ tests: tests/unit/test_events.py)
# what lambda_handler returns at least, per op (tests/contract/test_asl_pinned.py)
OUTPUT_MODELS: dict[str, type[StepOutput]] = {
    "start": OpenRunOutput,
    "finish": FinishOutput,
    "fail": FailOutput,
}


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ev = Event.model_validate({"body": event}).body
    run_id = run_id_of(ev.execution)
    logger.append_keys(run_id=run_id, connection=ev.connection, flow=ev.flow, op=ev.op)
    env = settings()
    ledger = RunLedger(env.ledger_table)
    if isinstance(ev, StartEvent):
        opened = open_run(
            ledger,
            connection=ev.connection,
            flow=ev.flow,
            execution=ev.execution,
            run_id=run_id,
            request=ev.request,
        )
        return checked(OpenRunOutput, opened)
    if isinstance(ev, FinishEvent):
        ledger.finish_run(run_id, ev.status, summary=ev.summary)
        if ev.status == "SUCCEEDED" and ev.watermark and not ev.dry_run:
            Watermarks(env.ledger_table).advance(ev.connection, ev.flow, ev.watermark, run_id)
        metrics.add_metric(name=f"Runs{ev.status.title()}", unit="Count", value=1)
        return checked(FinishOutput, {"run_id": run_id, "status": ev.status, "watermark": ev.watermark})
    # failure path: never raise past this point if it can be helped - the execution must end with the cause
    # recorded and the lease released.
    released = ModelLease(env.ledger_table).release_owned_by(ev.execution)
    cause = {"Error": ev.error.Error, "Cause": ev.error.Cause[:4000]}
    try:
        ledger.get_run(run_id)
    except RecordNotFound:
        ledger.start_run(run_id, ev.connection, ev.flow, "unknown", {"execution": ev.execution})
    ledger.finish_run(run_id, "FAILED", cause=cause)
    metrics.add_metric(name="RunsFailed", unit="Count", value=1)
    logger.warning("run failed", extra={"error": ev.error.Error, "released": released})
    return checked(
        FailOutput, {"run_id": run_id, "status": "FAILED", "error": ev.error.Error, "released": released}
    )


__all__ = ["ConfigError", "RunRequest", "lambda_handler"]
