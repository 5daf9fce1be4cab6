"""When an execution of either flow ends: metrics per run and connection, the run report in S3 and a readable
summary on the run notification topic (see d365_anaplan.run_summary)."""

from __future__ import annotations

from typing import Any

from d365_anaplan.run_summary import report_execution
from d365_anaplan.steps.events import ExecutionStatus, ExecutionStatusChange, ExecutionStatusChangeEnvelope
from d365_anaplan.steps.handler import StepOutput, handler


class NotifierOutput(StepOutput):
    run_id: str
    status: str
    report: dict[str, str]
    message_id: str | None


EVENT_MODEL = (
    ExecutionStatusChange  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
)
OUTPUT_MODEL = NotifierOutput


@handler(ExecutionStatus, NotifierOutput, envelope=ExecutionStatusChangeEnvelope)
def lambda_handler(detail: ExecutionStatus) -> dict[str, Any]:
    return report_execution(detail.execution_arn)
