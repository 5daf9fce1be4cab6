"""Events EventBridge delivers to the connector's functions (not a flow's step events).

A Step Functions "Execution Status Change" reaches LeaseJanitor and RunNotifier: Powertools' parser takes the
EventBridge envelope (:class:`ExecutionStatusChangeEnvelope`, Powertools' ``EventBridgeEnvelope`` held to the
source and detail-type the rules match) and hands the handler its ``detail`` (:class:`ExecutionStatus`).
"""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.envelopes import EventBridgeEnvelope
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field


class ExecutionStatus(BaseModel):
    """The ``detail`` of a Step Functions execution status change, as far as the connector reads it."""

    model_config = ConfigDict(populate_by_name=True)

    execution_arn: str = Field(alias="executionArn")
    state_machine_arn: str = Field(alias="stateMachineArn")
    status: Literal["FAILED", "TIMED_OUT", "ABORTED", "SUCCEEDED", "RUNNING", "PENDING_REDRIVE"]
    error: str | None = None
    cause: str | None = None


class ExecutionStatusChange(EventBridgeModel):
    """The whole EventBridge event (what the functions' rules match: source ``aws.states``, this detail-type)."""

    detail_type: Literal["Step Functions Execution Status Change"] = Field(alias="detail-type")
    source: Literal["aws.states"]
    detail: ExecutionStatus


class ExecutionStatusChangeEnvelope(EventBridgeEnvelope):
    """Powertools' EventBridge envelope, refusing any event but a Step Functions execution status change."""

    def parse[T](self, data: dict[str, Any] | Any | None, model: type[T]) -> T | None:
        ExecutionStatusChange.model_validate(data)
        return super().parse(data=data, model=model)
