"""Acquire, renew or release the lease on a connection's Anaplan model (one action per model at a time).

The owner is the Step Functions execution ARN: a Retry or a redrive of the same execution re-acquires its own
lease idempotently; another execution gets ``ModelLeaseHeld`` and the ASL waits and retries.

The TTL is derived from the state machine's execution timeout, which the flow passes as
``execution_timeout_seconds`` (the ASL's ``TimeoutSeconds``; a contract test keeps the two equal). The result
(``$.lease``: model key, expiry, TTL) goes to every acting step, which renews and verifies the lease itself.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from d365_anaplan.ledger.lease import MAX_EXECUTION_SECONDS
from d365_anaplan.steps.handler import StepOutput, handler
from d365_anaplan.steps.lease import model_lease


class LeaseEvent(BaseModel):
    op: Literal["acquire", "renew", "release"]
    connection: str
    execution: str = Field(description="$$.Execution.Id: the lease owner")
    execution_timeout_seconds: int | None = Field(
        default=None, ge=60, le=MAX_EXECUTION_SECONDS, description="the state machine's TimeoutSeconds"
    )

    @model_validator(mode="after")
    def _timeout_for_acquire_and_renew(self) -> LeaseEvent:
        if self.op != "release" and self.execution_timeout_seconds is None:
            raise ValueError(
                f"{self.op}: execution_timeout_seconds (the state machine's TimeoutSeconds) is required"
            )
        return self


class LeaseOutput(StepOutput):
    model_key: str
    expires_at: str
    ttl_seconds: int


class ReleaseOutput(StepOutput):
    model_key: str
    released: bool


EVENT_MODEL = LeaseEvent  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
# what lambda_handler returns at least, per op (tests/contract/test_asl_pinned.py)
OUTPUT_MODELS: dict[str, type[StepOutput]] = {
    "acquire": LeaseOutput,
    "renew": LeaseOutput,
    "release": ReleaseOutput,
}


@handler(LeaseEvent, OUTPUT_MODELS)
def lambda_handler(ev: LeaseEvent) -> dict[str, Any]:
    return model_lease(ev.op, ev.connection, ev.execution, ev.execution_timeout_seconds)
