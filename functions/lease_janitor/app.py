"""Release what an execution held when it ended FAILED, TIMED_OUT or ABORTED without reaching its own
release (EventBridge "Step Functions Execution Status Change"), and close its run in the ledger
(see d365_anaplan.steps.runs.close_ended_execution)."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from aws_lambda_powertools.utilities.parser.envelopes import BaseEnvelope
from pydantic import BaseModel, ConfigDict, Field

from d365_anaplan.steps.handler import StepOutput, handler
from d365_anaplan.steps.runs import close_ended_execution

T = TypeVar("T")


class StatusDetail(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    execution_arn: str = Field(alias="executionArn")
    state_machine_arn: str = Field(alias="stateMachineArn")
    status: Literal["FAILED", "TIMED_OUT", "ABORTED", "SUCCEEDED", "RUNNING", "PENDING_REDRIVE"]
    error: str | None = None
    cause: str | None = None


class StatusChangeEvent(BaseModel):
    """The EventBridge event as far as the janitor reads it (its ``detail`` reaches the handler through
    :class:`StatusChangeEnvelope`)."""

    detail_type: Literal["Step Functions Execution Status Change"] = Field(alias="detail-type")
    source: Literal["aws.states"]
    detail: StatusDetail


class StatusChangeEnvelope(BaseEnvelope):
    """An EventBridge envelope for Powertools' parser, held to Step Functions status changes: source and
    detail-type are checked (what the janitor's rule matches), ``detail`` is handed on. Powertools' own
    ``EventBridgeEnvelope`` would also require id, account, time, region and resources, which the janitor
    never read and which the local engine's events do not carry."""

    def parse(self, data: dict[str, Any] | Any | None, model: type[T]) -> T | None:
        event = StatusChangeEvent.model_validate(data)
        return self._parse(data=event.detail.model_dump(by_alias=True), model=model)


class JanitorOutput(StepOutput):
    released: list[str]


EVENT_MODEL = StatusChangeEvent  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
OUTPUT_MODEL = JanitorOutput


@handler(StatusDetail, JanitorOutput, envelope=StatusChangeEnvelope)
def lambda_handler(detail: StatusDetail) -> dict[str, Any]:
    return close_ended_execution(detail.execution_arn, detail.status, detail.error, detail.cause)
