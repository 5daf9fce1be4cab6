"""Release what an execution held when it ended FAILED, TIMED_OUT or ABORTED without reaching its own
release (EventBridge "Step Functions Execution Status Change"), and close its run in the ledger
(see d365_anaplan.steps.runs.close_ended_execution)."""

from __future__ import annotations

from typing import Any

from d365_anaplan.steps.events import ExecutionStatus, ExecutionStatusChange, ExecutionStatusChangeEnvelope
from d365_anaplan.steps.handler import StepOutput, handler
from d365_anaplan.steps.runs import close_ended_execution


class JanitorOutput(StepOutput):
    released: list[str]


EVENT_MODEL = (
    ExecutionStatusChange  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
)
OUTPUT_MODEL = JanitorOutput


@handler(ExecutionStatus, JanitorOutput, envelope=ExecutionStatusChangeEnvelope)
def lambda_handler(detail: ExecutionStatus) -> dict[str, Any]:
    return close_ended_execution(detail.execution_arn, detail.status, detail.error, detail.cause)
