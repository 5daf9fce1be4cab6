"""Metadata fingerprints (issue 12, item 6; docs/ledger.md "metadata fingerprint").

Items (ledger table), ``pk = DRIFT#<connection>#<flow>``:

* ``sk = CURRENT``: the fingerprint of the last successful run (``fingerprint`` map, ``digest``, ``run_id``,
  ``recorded_at``, ``previous_digest``, ``previous_run_id``);
* ``sk = RUN#<run_id>``: the fingerprint a run's metadata pre-check computed (``ttl`` 30 days), made
  ``CURRENT`` by :meth:`Fingerprints.promote` when the run closes SUCCEEDED (not for a dry run).

Written with :func:`~d365_anaplan.ledger._dynamo.put_all` (PutItem in a transaction), never deleted by the
connector; a retried or redriven step writes the same item again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from d365_anaplan.flows.drift import Fingerprint, digest
from d365_anaplan.ledger._dynamo import (
    TableItems,
    epoch_seconds,
    from_item,
    iso,
    put_all,
    to_item,
)

STAGED_DAYS = 30  # a staged fingerprint outlives the 14-day redrive window
CURRENT = "CURRENT"


def drift_pk(connection: str, flow: str) -> str:
    if not connection or not flow:
        raise ValueError(f"fingerprint: connection and flow must be non-empty, got {connection!r}, {flow!r}")
    return f"DRIFT#{connection}#{flow}"


class Fingerprints(TableItems):
    """The metadata fingerprint per (connection, flow) in the ledger table (env ``LEDGER_TABLE``)."""

    def _get(self, connection: str, flow: str, sk: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table_name,
            Key={"pk": {"S": drift_pk(connection, flow)}, "sk": {"S": sk}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return from_item(item) if item else None

    def current(self, connection: str, flow: str) -> dict[str, Any] | None:
        """The last successful run's item (``fingerprint``, ``digest``, ``run_id``, …), None before the first."""
        return self._get(connection, flow, CURRENT)

    def stage(self, connection: str, flow: str, run_id: str, fp: Fingerprint, *, accepted: list[str]) -> str:
        """Keep the fingerprint run ``run_id`` computed (and the drift it accepted); returns its digest."""
        now = self._clock()
        value = digest(fp)
        item = {"pk": drift_pk(connection, flow), "sk": f"RUN#{run_id}", "fingerprint": fp, "digest": value,
                "run_id": run_id, "recorded_at": iso(now), "accepted": accepted,
                "ttl": epoch_seconds(now + timedelta(days=STAGED_DAYS))}  # fmt: skip
        put_all(self.client, self.table_name, [to_item(item)])
        return value

    def promote(self, connection: str, flow: str, run_id: str) -> bool:
        """Make run ``run_id``'s staged fingerprint the current one (False when it staged none)."""
        staged = self._get(connection, flow, f"RUN#{run_id}")
        if staged is None:
            return False
        before = self.current(connection, flow)
        if before is not None and before.get("run_id") == run_id:
            return True  # repeated close of the same run
        item = {"pk": drift_pk(connection, flow), "sk": CURRENT, "fingerprint": staged["fingerprint"],
                "digest": staged["digest"], "run_id": run_id, "recorded_at": iso(self._clock()),
                "accepted": staged.get("accepted") or [],
                "previous_digest": before.get("digest") if before else None,
                "previous_run_id": before.get("run_id") if before else None}  # fmt: skip
        put_all(self.client, self.table_name, [to_item(item)])
        return True
