"""A lease per Anaplan model, so one execution at a time runs actions on a model.

Anaplan answers "model busy" to concurrent actions on one model; the flows take this lease before their
first Anaplan action and release it in both the success and the Catch paths. The owner is the Step
Functions execution ARN (``$$.Execution.Id``), so a Retry or a redrive of the same execution re-acquires
idempotently (and extends the expiry).

Items (ledger table, see ``docs/ledger.md``):

* lease ``pk = LEASE#<workspace_id>/<model_id>``, ``sk = LEASE``: ``owner``, ``acquired_at``,
  ``expires_at`` (epoch seconds, Number), ``expires_at_iso``, ``version``, ``displaced_owner`` and
  ``displaced_expired_at`` when an expired lease was taken over, ``ttl`` (expiry + one day, for cleanup only:
  the conditions use ``expires_at``, never the lazy TTL deletion).
* owner pointer ``pk = OWNER#<owner>``, ``sk = LEASE#<model key>``, written in the same TransactWriteItems
  as the lease, so :meth:`ModelLease.release_owned_by` finds an execution's leases without a scan (the
  cleanup for executions that ended FAILED/TIMED_OUT/ABORTED).

Acquisition is a conditional write ``attribute_not_exists(pk) OR expires_at < :now OR owner = :me``,
additionally pinned to the ``version`` read just before (optimistic concurrency), so a takeover records
exactly whom it displaced and two racing executions can never both win.

Every step that acts on the model (upload, action start, task check, download) first calls :meth:`renew`:
one conditional write that both proves this execution still owns the lease (``LeaseLost`` otherwise, before
anything reaches Anaplan) and extends it. The TTL is the state machine's execution timeout
(:func:`lease_ttl_seconds`): a living execution never goes longer than that between two acting steps, so
its lease cannot expire under it, while the lease of an execution that died expires with it (the janitor
usually releases it sooner).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from d365_anaplan.errors import LeaseLost, ModelLeaseHeld
from d365_anaplan.ledger._dynamo import (
    Clock,
    LedgerTable,
    cancellation_codes,
    epoch,
    epoch_seconds,
    error_code,
    from_epoch,
    from_item,
    iso,
    parse_iso,
    query_all,
    to_item,
    utc_now,
)
from d365_anaplan.ledger._expr import Update, key_condition
from d365_anaplan.ledger.codec import lease_record
from d365_anaplan.ledger.keys import lease_key, lease_pk, owner_pk, pointer_key
from d365_anaplan.ledger.models import Lease

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MAX_EXECUTION_SECONDS = 366 * 24 * 3600  # a Standard state machine runs for at most a year
LEASE_TTL_GRACE = timedelta(days=1)  # items linger this long after expiry before DynamoDB TTL removes them
POINTER_TTL_GRACE = timedelta(days=7)
_RETRYABLE_CANCEL = frozenset({"ConditionalCheckFailed", "TransactionConflict"})


def model_key(workspace_id: str, model_id: str) -> str:
    """The lease key of an Anaplan model: ``<workspace_id>/<model_id>``."""
    if not workspace_id or not model_id or "/" in workspace_id or "/" in model_id:
        raise ValueError(
            f"model_key: workspace and model ids must be non-empty, without '/': {workspace_id!r}, {model_id!r}"
        )
    return f"{workspace_id}/{model_id}"


def lease_ttl_seconds(execution_timeout_seconds: int) -> int:
    """The lease TTL of a flow whose state machine times out after ``execution_timeout_seconds``.

    Each acting step renews the lease to now + TTL. The longest a living execution can go between two acting
    steps (waits, retries, other states) is bounded by its execution timeout, so that is the TTL: no
    constant to drift from the ASL's ``TimeoutSeconds`` (a redrive resets the timeout; the redriven
    execution's first acting step renews from then on).
    """
    if (
        isinstance(execution_timeout_seconds, bool)
        or not isinstance(execution_timeout_seconds, int)
        or not 60 <= execution_timeout_seconds <= MAX_EXECUTION_SECONDS
    ):
        raise ValueError(
            f"execution timeout must be a whole number of seconds in [60, {MAX_EXECUTION_SECONDS}], "
            f"got {execution_timeout_seconds!r}"
        )
    return execution_timeout_seconds


class ModelLease(LedgerTable):
    """Per-model leases in the ledger table (env ``LEDGER_TABLE``)."""

    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient | None = None,
        clock: Clock | None = None,
        max_attempts: int = 5,
    ) -> None:
        super().__init__(table_name, client=client, clock=clock or utc_now)  # module-level: tests shift it
        self.max_attempts = max_attempts

    # --- reading ------------------------------------------------------------------------------------------

    def get(self, model_key: str) -> Lease | None:
        """The lease item as stored (it may be expired: compare ``expires_at`` with the time)."""
        raw = self._read(model_key)
        return None if raw is None else lease_record(raw)

    def _read(self, model_key: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table_name,
            Key=lease_key(model_key),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return from_item(item) if item else None

    # --- acquire / renew / release ------------------------------------------------------------------------

    def acquire(self, model_key: str, owner: str, ttl_seconds: int) -> Lease:
        """Take the lease for ``ttl_seconds``; idempotent for the same owner (extends the expiry).

        Raises :class:`ModelLeaseHeld` (a ``Transient``: the ASL waits and retries) when another owner holds
        an unexpired lease. An expired lease of another owner is taken over; the result names the displaced
        owner and the displaced owner's pointer is removed in the same transaction.
        """
        _check(model_key, owner, ttl_seconds)
        holder: dict[str, Any] | None = None
        for _ in range(self.max_attempts):
            now = self._clock()
            holder = self._read(model_key)
            if holder is not None and holder["owner"] != owner and from_epoch(holder["expires_at"]) >= now:
                raise _held(model_key, owner, holder)
            lease = self._try_acquire(model_key, owner, ttl_seconds, now, holder)
            if lease is not None:
                return lease
        if holder is not None and holder["owner"] != owner:
            raise _held(model_key, owner, holder)
        raise ModelLeaseHeld(
            f"Anaplan model {model_key}: lease contended, not acquired by {owner} after {self.max_attempts} attempts"
        )

    def _try_acquire(
        self,
        model_key: str,
        owner: str,
        ttl_seconds: int,
        now: datetime,
        holder: Mapping[str, Any] | None,
    ) -> Lease | None:
        expires = now + timedelta(seconds=ttl_seconds)
        same_owner = holder is not None and holder["owner"] == owner
        displaced = None if holder is None or same_owner else str(holder["owner"])
        version = 1 if holder is None else int(holder["version"]) + 1
        acquired_at = parse_iso(str(holder["acquired_at"])) if holder is not None and same_owner else now
        item: dict[str, Any] = {
            "pk": lease_pk(model_key),
            "sk": "LEASE",
            "type": "LEASE",
            "model_key": model_key,
            "owner": owner,
            "acquired_at": iso(acquired_at),
            "updated_at": iso(now),
            "expires_at": epoch(expires),
            "expires_at_iso": iso(expires),
            "version": version,
            "ttl": epoch_seconds(expires + LEASE_TTL_GRACE),
        }
        if displaced is not None and holder is not None:
            item["displaced_owner"] = displaced
            item["displaced_expired_at"] = iso(from_epoch(holder["expires_at"]))
        elif same_owner and holder is not None and holder.get("displaced_owner"):
            item["displaced_owner"] = holder["displaced_owner"]
            item["displaced_expired_at"] = holder.get("displaced_expired_at")
        cond = Update()
        pk = cond.name("pk")
        if holder is None:
            cond.where(f"attribute_not_exists({pk})")
        else:
            stored, expires_at, held_by = cond.name("version"), cond.name("expires_at"), cond.name("owner")
            seen, at, me = cond.value(int(holder["version"])), cond.value(epoch(now)), cond.value(owner)
            cond.where(
                f"{stored} = {seen} AND (attribute_not_exists({pk}) OR {expires_at} < {at} OR {held_by} = {me})"
            )
        put: dict[str, Any] = {"TableName": self.table_name, "Item": to_item(item), **cond.condition_args()}
        pointer = {
            "pk": owner_pk(owner),
            "sk": lease_pk(model_key),
            "type": "LEASE_OWNER",
            "owner": owner,
            "model_key": model_key,
            "updated_at": iso(now),
            "ttl": epoch_seconds(expires + POINTER_TTL_GRACE),
        }
        transaction: list[Any] = [  # TransactWriteItemTypeDef: the condition parts come from Update
            {"Put": put},
            {"Put": {"TableName": self.table_name, "Item": to_item(pointer)}},
        ]
        if displaced is not None:
            transaction.append(
                {
                    "Delete": {
                        "TableName": self.table_name,
                        "Key": pointer_key(displaced, model_key),
                    }
                }
            )
        try:
            self.client.transact_write_items(TransactItems=transaction)
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException" and _RETRYABLE_CANCEL & set(
                cancellation_codes(exc)
            ):
                return None  # someone changed the lease since we read it: read again
            raise
        return lease_record(from_item(to_item(item)))

    def renew(self, model_key: str, owner: str, ttl_seconds: int) -> Lease:
        """Prove ``owner`` still holds the lease and extend it to now + ``ttl_seconds``, in one conditional
        write; :class:`LeaseLost` naming the holder if it does not (taken over, released, never acquired).

        A lease of this owner that expired without being taken over is still this owner's: renewing it bumps
        ``version``, so an execution racing to take it over fails its conditional write and reads it again.
        """
        _check(model_key, owner, ttl_seconds)
        now = self._clock()
        expires = now + timedelta(seconds=ttl_seconds)
        u = Update().set_all(
            {
                "expires_at": epoch(expires),
                "expires_at_iso": iso(expires),
                "ttl": epoch_seconds(expires + LEASE_TTL_GRACE),
                "updated_at": iso(now),
            }
        )
        u.increment("version")
        u.where(f"{u.name('owner')} = {u.value(owner)}")
        try:
            response = self.client.update_item(
                TableName=self.table_name, Key=lease_key(model_key), ReturnValues="ALL_NEW", **u.args()
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            holder = self._read(model_key)
            who = "nobody" if holder is None else f"{holder['owner']} until {holder['expires_at_iso']}"
            raise LeaseLost(
                f"Anaplan model {model_key}: {owner} cannot renew the lease, held by {who}"
            ) from None
        pointer = Update().set_all(
            {
                "ttl": epoch_seconds(expires + POINTER_TTL_GRACE),
                "model_key": model_key,
                "owner": owner,
                "type": "LEASE_OWNER",
                "updated_at": iso(now),
            }
        )
        self.client.update_item(
            TableName=self.table_name, Key=pointer_key(owner, model_key), **pointer.args()
        )
        return lease_record(from_item(response["Attributes"]))

    def release(self, model_key: str, owner: str) -> bool:
        """Give the lease up. True if this call released it; False if ``owner`` did not hold it.

        Idempotent, and never releases another owner's lease (the delete is conditional on the owner).
        The owner's pointer item is removed either way.
        """
        if not model_key or not owner:
            raise ValueError(f"release: model_key and owner must be non-empty, got {model_key!r}, {owner!r}")
        pointer = pointer_key(owner, model_key)
        mine = Update()
        mine.where(f"{mine.name('owner')} = {mine.value(owner)}")
        lease: Any = {"TableName": self.table_name, "Key": lease_key(model_key), **mine.condition_args()}
        try:
            self.client.transact_write_items(
                TransactItems=[{"Delete": lease}, {"Delete": {"TableName": self.table_name, "Key": pointer}}]
            )
        except ClientError as exc:
            if error_code(
                exc
            ) == "TransactionCanceledException" and "ConditionalCheckFailed" in cancellation_codes(exc):
                self.client.delete_item(TableName=self.table_name, Key=pointer)
                return False
            raise
        return True

    def release_owned_by(self, owner: str) -> list[str]:
        """Release every lease ``owner`` (an execution ARN) still holds; returns the model keys released.

        For the cleanup of executions that ended FAILED, TIMED_OUT or ABORTED (EventBridge "Step Functions
        Execution Status Change"). Reads the owner's pointer items (a query, no scan).
        """
        if not owner:
            raise ValueError("release_owned_by: owner must be non-empty")
        pointers = query_all(
            self.client,
            TableName=self.table_name,
            **key_condition(owner_pk(owner), prefix=lease_pk("")),
            ConsistentRead=True,
        )
        released: list[str] = []
        for pointer in pointers:
            key = str(pointer["model_key"])
            if self.release(key, owner):
                released.append(key)
        return released


def _check(model_key: str, owner: str, ttl_seconds: int) -> None:
    if not model_key or not owner:
        raise ValueError(f"lease: model_key and owner must be non-empty, got {model_key!r}, {owner!r}")
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds <= 0:
        raise ValueError(f"lease {model_key}: ttl_seconds must be a positive int, got {ttl_seconds!r}")


def _held(model_key: str, owner: str, holder: Mapping[str, Any]) -> ModelLeaseHeld:
    return ModelLeaseHeld(
        f"Anaplan model {model_key}: lease held by {holder['owner']} until {holder['expires_at_iso']} "
        f"(requested by {owner})"
    )
