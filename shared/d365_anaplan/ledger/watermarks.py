"""Watermarks: how far each (connection, flow) has got, e.g. the last period whose actuals were loaded.

Item (ledger table): ``pk = WATERMARK#<connection>``, ``sk = FLOW#<flow>``; attributes ``value``,
``run_id`` (the run that advanced it), ``advanced_at``, ``previous_value``, ``history`` (last values with
their runs, newest last).

Values are compared as strings, so they must sort lexicographically in time order: zero-padded periods
(``"2025-03"``) or fixed-width ISO-8601 UTC timestamps. :meth:`Watermarks.advance` never moves a watermark
backwards: it is a conditional write (``attribute_not_exists(pk) OR value < :new``), and an equal or older
value is a **no-op that returns False** rather than an error, because a Step Functions retry, a redrive or a
re-run of an older period must not fail the run just for finding the watermark already further on.
Operators who really mean to move it back use :meth:`Watermarks.reset`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from d365_anaplan.ledger._dynamo import (
    Clock,
    LedgerTable,
    error_code,
    from_item,
    iso,
)
from d365_anaplan.ledger._expr import Update
from d365_anaplan.ledger.codec import watermark_record
from d365_anaplan.ledger.keys import watermark_key
from d365_anaplan.ledger.models import Watermark

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

HISTORY_LENGTH = 20


class Watermarks(LedgerTable):
    """Per-(connection, flow) watermarks in the ledger table (env ``LEDGER_TABLE``)."""

    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient | None = None,
        clock: Clock | None = None,
        history_length: int = HISTORY_LENGTH,
    ) -> None:
        super().__init__(table_name, client=client, clock=clock)
        self.history_length = max(history_length, 1)

    def get(self, connection: str, flow: str) -> Watermark | None:
        response = self.client.get_item(
            TableName=self.table_name, Key=watermark_key(connection, flow), ConsistentRead=True
        )
        item = response.get("Item")
        return None if not item else watermark_record(from_item(item))

    def advance(self, connection: str, flow: str, value: str, run_id: str) -> bool:
        """Move the watermark forward to ``value``; True if it moved, False if it was already >= value."""
        if not value or not run_id:
            raise ValueError(f"watermark {connection}/{flow}: value and run_id must be non-empty")
        return self._write(connection, flow, value, run_id, reason=None, forward_only=True)

    def reset(self, connection: str, flow: str, value: str, run_id: str, reason: str) -> None:
        """Set the watermark to ``value`` unconditionally (operator action, e.g. to re-load a period)."""
        if not value or not reason:
            raise ValueError(f"watermark {connection}/{flow}: reset needs a value and a reason")
        self._write(connection, flow, value, run_id, reason=reason, forward_only=False)

    def _write(
        self, connection: str, flow: str, value: str, run_id: str, *, reason: str | None, forward_only: bool
    ) -> bool:
        now = iso(self._clock())
        entry: dict[str, Any] = {"value": value, "run_id": run_id, "at": now}
        if reason is not None:
            entry["reason"] = reason
        fields = {
            "value": value,
            "run_id": run_id,
            "advanced_at": now,
            "type": "WATERMARK",
            "connection": connection,
            "flow": flow,
        }
        # previous_value = the value being replaced (absent on the first write)
        u = Update().copy("previous_value", "value").set_all(fields).append("history", [entry])
        exists = f"attribute_exists({u.name('pk')})"
        # only forward, unless reset: the stored value must sort before the new one
        u.where(f"{exists} AND {u.name('value')} < {u.value(value)}" if forward_only else exists)
        key = watermark_key(connection, flow)
        try:
            response = self.client.update_item(
                TableName=self.table_name, Key=key, ReturnValues="UPDATED_NEW", **u.args()
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        else:
            self._trim(key, len(response.get("Attributes", {}).get("history", {}).get("L", [])))
            return True
        # Either there is no watermark yet, or it is already at/after value: create it if absent.
        first = Update().set_all({**fields, "history": [entry]})
        first.where(f"attribute_not_exists({first.name('pk')})")
        try:
            self.client.update_item(TableName=self.table_name, Key=key, **first.args())
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            if not forward_only:  # created concurrently: retry the unconditional write once
                return self._write(connection, flow, value, run_id, reason=reason, forward_only=False)
            return False
        return True

    def _trim(self, key: Mapping[str, Any], length: int) -> None:
        """Keep the history list short (it only serves humans): drop the oldest entries."""
        extra = length - self.history_length
        if extra > 0:
            u = Update().remove_list_heads("history", extra)
            self.client.update_item(TableName=self.table_name, Key=dict(key), **u.args())
