"""When an execution of either flow ends: metrics per run and connection, the run report in S3 and a readable
summary on the run notification topic (see d365_anaplan.run_summary)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from d365_anaplan.observability import logger, metrics, tracer
from d365_anaplan.run_summary import report_run
from d365_anaplan.runtime import run_id_of


class StatusDetail(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    execution_arn: str = Field(alias="executionArn")
    state_machine_arn: str = Field(alias="stateMachineArn")
    status: Literal["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]


class ExecutionEnded(BaseModel):
    detail_type: Literal["Step Functions Execution Status Change"] = Field(alias="detail-type")
    source: Literal["aws.states"]
    detail: StatusDetail


EVENT_MODEL = ExecutionEnded  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ev = ExecutionEnded.model_validate(event)
    return report_run(run_id_of(ev.detail.execution_arn))
