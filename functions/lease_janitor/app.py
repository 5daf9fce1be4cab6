"""Release what an execution held when it ended FAILED, TIMED_OUT or ABORTED without reaching its own
release (EventBridge "Step Functions Execution Status Change"), and close its run in the ledger."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from d365_anaplan.errors import RecordNotFound
from d365_anaplan.ledger.audit import RunLedger
from d365_anaplan.ledger.lease import ModelLease
from d365_anaplan.observability import logger, metrics, tracer
from d365_anaplan.runtime import run_id_of, settings


class StatusDetail(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    execution_arn: str = Field(alias="executionArn")
    state_machine_arn: str = Field(alias="stateMachineArn")
    status: Literal["FAILED", "TIMED_OUT", "ABORTED", "SUCCEEDED", "RUNNING", "PENDING_REDRIVE"]
    error: str | None = None
    cause: str | None = None


class StatusChangeEvent(BaseModel):
    detail_type: Literal["Step Functions Execution Status Change"] = Field(alias="detail-type")
    source: Literal["aws.states"]
    detail: StatusDetail


EVENT_MODEL = StatusChangeEvent  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ev = StatusChangeEvent.model_validate(event)
    detail = ev.detail
    if detail.status not in ("FAILED", "TIMED_OUT", "ABORTED"):
        return {"released": [], "ignored": detail.status}
    env = settings()
    released = ModelLease(env.ledger_table).release_owned_by(detail.execution_arn)
    run_id = run_id_of(detail.execution_arn)
    ledger = RunLedger(env.ledger_table)
    closed = False
    try:
        run = ledger.get_run(run_id)
        if run.status == "RUNNING":
            ledger.finish_run(
                run_id,
                "FAILED",
                cause={
                    "Error": detail.error or f"States.{detail.status}",
                    "Cause": (detail.cause or "")[:2000],
                    "source": "lease_janitor",
                },
            )
            closed = True
    except RecordNotFound:
        pass
    logger.info(
        "execution ended", extra={"status": detail.status, "released": released, "run_closed": closed}
    )
    return {"released": released, "run_closed": closed}
