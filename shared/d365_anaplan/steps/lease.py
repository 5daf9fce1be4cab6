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

from pydantic import BaseModel, ConfigDict, Field

from d365_anaplan.errors import LeaseLost
from d365_anaplan.ledger.lease import MAX_EXECUTION_SECONDS
from d365_anaplan.runtime import model_key
from d365_anaplan.steps.context import StepContext


class LeaseRef(BaseModel):
    """``$.lease``: the lease ``AcquireModelLease`` took."""

    model_config = ConfigDict(extra="ignore")

    model_key: str = Field(min_length=3)
    ttl_seconds: int = Field(ge=60, le=MAX_EXECUTION_SECONDS)
    expires_at: str | None = None  # when acquired; informative only (the ledger item decides)


def hold_lease(ctx: StepContext, lease: LeaseRef, doing: str) -> None:
    """Renew this execution's lease on the connection's model, or raise ``LeaseLost`` naming ``doing``."""
    key = model_key(ctx.cfg)
    if lease.model_key != key:
        raise LeaseLost(
            f"{doing}: the flow holds the lease of Anaplan model {lease.model_key}, but the connection names "
            f"model {key}; nothing was sent to Anaplan"
        )
    try:
        ctx.leases.renew(key, ctx.execution, lease.ttl_seconds)
    except LeaseLost as exc:
        raise LeaseLost(f"{doing}: {exc}; nothing was sent to Anaplan") from None
