"""The F&O throttling budget shared by every worker of a connection's environment.

F&O throttles per environment (resource-based, dynamics-fo.md §4.1): a 429 with ``Retry-After`` answers
whoever asks next, so when one GL extraction worker is told to wait, its siblings must wait too, or each of
them meets its own 429 (the budget multiplied instead of shared). One item per environment host:

``pk = THROTTLE#<environment host>``, ``sk = THROTTLE``: ``until`` (N, epoch seconds the environment asked
us to wait until), ``until_iso``, ``hits`` (429s reported), ``ttl``.

Workers read it before each request (:meth:`SharedThrottle.pause_seconds`) and write it on a 429
(:meth:`SharedThrottle.throttled`); the write only ever moves ``until`` later, so racing reports keep the
longest wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from d365_anaplan.ledger._dynamo import LazyClient, epoch, error_code, iso, to_attr

THROTTLE_SK = "THROTTLE"
KEEP_SECONDS = 86_400  # the item outlives any Retry-After; DynamoDB TTL removes it a day later


def throttle_pk(host: str) -> str:
    return f"THROTTLE#{host.lower()}"


class SharedThrottle:
    """The throttle record of one F&O environment (``host``: the environment URL's host)."""

    def __init__(
        self,
        table_name: str,
        host: str,
        *,
        client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not host:
            raise ValueError("SharedThrottle needs the environment host")
        self.table_name = table_name
        self.host = host.lower()
        self._client = LazyClient("dynamodb", client)
        self._clock = clock
        self.reads = 0
        self.writes = 0

    def _key(self) -> dict[str, Any]:
        return {"pk": {"S": throttle_pk(self.host)}, "sk": {"S": THROTTLE_SK}}

    def pause_seconds(self) -> float:
        """Seconds still to wait before the next request to the environment (0 when not throttled)."""
        self.reads += 1
        item = (
            self._client.get()
            .get_item(
                TableName=self.table_name,
                Key=self._key(),
                ConsistentRead=True,
                ProjectionExpression="#ui",
                ExpressionAttributeNames={"#ui": "until_iso"},
            )
            .get("Item")
        )
        if not item or "until_iso" not in item:
            return 0.0
        until = datetime.fromisoformat(item["until_iso"]["S"])
        return max(0.0, (until - datetime.fromtimestamp(self._clock(), UTC)).total_seconds())

    def throttled(self, retry_after: float) -> None:
        """Report a 429: every worker waits until ``now + retry_after`` (never shortens a longer wait)."""
        now = self._clock()
        until_dt = datetime.fromtimestamp(now + max(0.0, retry_after), UTC)
        until = epoch(until_dt)
        self.writes += 1
        try:
            self._client.get().update_item(
                TableName=self.table_name,
                Key=self._key(),
                UpdateExpression=(
                    "SET #u = :until, #ui = :iso, #ttl = :ttl, #h = if_not_exists(#h, :zero) + :one"
                ),
                ConditionExpression="attribute_not_exists(#u) OR #u < :until",
                ExpressionAttributeNames={"#u": "until", "#ui": "until_iso", "#ttl": "ttl", "#h": "hits"},
                ExpressionAttributeValues={
                    ":until": to_attr(until),
                    ":iso": to_attr(iso(until_dt)),
                    ":ttl": to_attr(int(now) + KEEP_SECONDS),
                    ":zero": to_attr(0),
                    ":one": to_attr(1),
                },
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            # Someone already asked everyone to wait at least as long.


__all__ = ["THROTTLE_SK", "SharedThrottle", "throttle_pk"]
