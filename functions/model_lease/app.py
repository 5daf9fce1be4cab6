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

from d365_anaplan.errors import LeaseLost
from d365_anaplan.ledger.audit import RunLedger
from d365_anaplan.ledger.lease import MAX_EXECUTION_SECONDS, ModelLease, lease_ttl_seconds
from d365_anaplan.observability import logger, metrics, tracer
from d365_anaplan.runtime import load_connection, model_key, run_id_of, settings
from d365_anaplan.steps.handler import StepOutput, checked


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


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ev = LeaseEvent.model_validate(event)
    key = model_key(load_connection(ev.connection))
    env = settings()
    leases = ModelLease(env.ledger_table)
    run_id = run_id_of(ev.execution)
    logger.append_keys(run_id=run_id, model=key, op=ev.op)
    if ev.op == "release":
        released = leases.release(key, ev.execution)
        RunLedger(env.ledger_table).record_step(
            run_id, "ReleaseLease", "SUCCEEDED", {"model": key, "released": released}
        )
        return checked(ReleaseOutput, {"model_key": key, "released": released})
    assert ev.execution_timeout_seconds is not None  # the model requires it for acquire and renew
    ttl = lease_ttl_seconds(ev.execution_timeout_seconds)
    if ev.op == "renew":
        lease = leases.renew(key, ev.execution, ttl)
    else:
        lease = leases.acquire(key, ev.execution, ttl)
        RunLedger(env.ledger_table).record_step(
            run_id, "AcquireLease", "SUCCEEDED", {"model": key, "expires_at": lease.expires_at.isoformat()}
        )
    if lease.owner != ev.execution:  # defensive: the ledger must never hand us someone else's lease
        raise LeaseLost(f"lease on {key} is owned by another execution")
    return checked(
        LeaseOutput, {"model_key": key, "expires_at": lease.expires_at.isoformat(), "ttl_seconds": ttl}
    )
