"""The model lease as the acting steps see it: renewed and verified right before anything goes to Anaplan.

The flows take the lease in ``AcquireModelLease`` (owner = ``$$.Execution.Id``) and hand its result,
``$.lease`` = ``{model_key, expires_at, ttl_seconds}``, to every step that acts on the model through the ASL
``Parameters``. Such a step calls :func:`hold_lease` before its first Anaplan request (and again before a
download that follows a poll): the lease is extended to now + ``ttl_seconds`` if this execution still owns
it, and :class:`~d365_anaplan.errors.LeaseLost` is raised otherwise, with nothing sent. ``LeaseLost`` is not
a ``Transient``: the flow's ``Catch`` records the failure, and ``RecordFailure`` releases only leases this
execution still owns, never the new holder's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from d365_anaplan.errors import LeaseLost
from d365_anaplan.ledger.audit import RunLedger
from d365_anaplan.ledger.lease import MAX_EXECUTION_SECONDS, ModelLease, lease_ttl_seconds
from d365_anaplan.observability import logger
from d365_anaplan.runtime import load_connection, model_key_of, run_id_of, settings
from d365_anaplan.steps.context import StepContext


class LeaseRef(BaseModel):
    """``$.lease``: the lease ``AcquireModelLease`` took."""

    model_config = ConfigDict(extra="ignore")

    model_key: str = Field(min_length=3)
    ttl_seconds: int = Field(ge=60, le=MAX_EXECUTION_SECONDS)
    expires_at: str | None = None  # when acquired; informative only (the ledger item decides)


def hold_lease(ctx: StepContext, lease: LeaseRef, doing: str) -> None:
    """Renew this execution's lease on the connection's model, or raise ``LeaseLost`` naming ``doing``."""
    key = model_key_of(ctx.cfg)
    if lease.model_key != key:
        raise LeaseLost(
            f"{doing}: the flow holds the lease of Anaplan model {lease.model_key}, but the connection names "
            f"model {key}; nothing was sent to Anaplan"
        )
    try:
        ctx.leases.renew(key, ctx.execution, lease.ttl_seconds)
    except LeaseLost as exc:
        raise LeaseLost(f"{doing}: {exc}; nothing was sent to Anaplan") from None


def model_lease(
    op: Literal["acquire", "renew", "release"],
    connection: str,
    execution: str,
    execution_timeout_seconds: int | None,
) -> dict[str, Any]:
    """Acquire, renew or release the lease on a connection's model for ``execution`` (functions/model_lease).

    The TTL is derived from the state machine's execution timeout (required for acquire and renew).
    """
    key = model_key_of(load_connection(connection))
    env = settings()
    leases = ModelLease(env.ledger_table)
    run_id = run_id_of(execution)
    logger.append_keys(run_id=run_id, model=key, op=op)
    if op == "release":
        released = leases.release(key, execution)
        RunLedger(env.ledger_table).record_step(
            run_id, "ReleaseModelLease", "SUCCEEDED", {"model": key, "released": released}
        )
        return {"model_key": key, "released": released}
    assert execution_timeout_seconds is not None  # the event model requires it for acquire and renew
    ttl = lease_ttl_seconds(execution_timeout_seconds)
    if op == "renew":
        lease = leases.renew(key, execution, ttl)
    else:
        lease = leases.acquire(key, execution, ttl)
        RunLedger(env.ledger_table).record_step(
            run_id,
            "AcquireModelLease",
            "SUCCEEDED",
            {"model": key, "expires_at": lease.expires_at.isoformat()},
        )
    if lease.owner != execution:  # defensive: the ledger must never hand us someone else's lease
        raise LeaseLost(f"lease on {key} is owned by another execution")
    return {"model_key": key, "expires_at": lease.expires_at.isoformat(), "ttl_seconds": ttl}
