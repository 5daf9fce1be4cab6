"""Run items of the ledger: one per run (``pk = RUN#<run_id>``, ``sk = RUN``), started, redriven, finished.

:class:`RunTable` also holds the plumbing every run-partition writer shares (client, clock, retention);
:class:`d365_anaplan.ledger.audit.RunLedger` adds the step, file, task and journal records of a run.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

from botocore.exceptions import ClientError

from d365_anaplan.errors import LedgerConflict, RecordNotFound
from d365_anaplan.ledger._dynamo import (
    Clock,
    LedgerTable,
    epoch_seconds,
    error_code,
    from_item,
    iso,
    ledger_table_from_env,
    to_item,
)
from d365_anaplan.ledger._expr import Update, key_condition
from d365_anaplan.ledger.codec import digest, run_record
from d365_anaplan.ledger.keys import GSI_BY_CONNECTION, connection_pk, run_pk
from d365_anaplan.ledger.models import FinalStatus, RunRecord

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

FINAL_STATUSES: frozenset[str] = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "ABORTED"})
# Runs a redrive reopens (Step Functions redrives FAILED, TIMED_OUT and ABORTED executions).
REDRIVABLE: frozenset[str] = frozenset({"FAILED", "ABORTED"})


def require(value: str, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


class RunTable(LedgerTable):
    """Runs in the ledger table (env ``LEDGER_TABLE`` in Lambda).

    ``retention_days`` (default: keep forever) sets the ``ttl`` attribute on every item written so DynamoDB
    expires old runs. ``clock`` must return timezone-aware datetimes (tests inject a fixed clock).
    """

    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient | None = None,
        clock: Clock | None = None,
        retention_days: int | None = None,
    ) -> None:
        super().__init__(require(table_name, "table_name"), client=client, clock=clock)
        self.retention_days = retention_days

    @classmethod
    def from_env(
        cls,
        *,
        client: DynamoDBClient | None = None,
        clock: Clock | None = None,
        retention_days: int | None = None,
    ) -> Self:
        """On the table named by env ``LEDGER_TABLE``."""
        return cls(ledger_table_from_env(), client=client, clock=clock, retention_days=retention_days)

    # --- plumbing -------------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return self._clock()

    def _ttl(self, now: datetime) -> int | None:
        if self.retention_days is None:
            return None
        return epoch_seconds(now) + self.retention_days * 86400

    def _key(self, run_id: str, sk: str) -> dict[str, Any]:
        return {"pk": {"S": run_pk(run_id)}, "sk": {"S": sk}}

    def _get(self, run_id: str, sk: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table_name, Key=self._key(run_id, sk), ConsistentRead=True
        )
        item = response.get("Item")
        return from_item(item) if item else None

    # --- runs -------------------------------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        connection: str,
        flow: str,
        trigger: str,
        detail: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        """Create the run item (status RUNNING). Idempotent.

        Starting a run id that exists returns it unchanged, except a run finished ``FAILED``: that is a
        redrive, so the run goes back to RUNNING, ``redriven`` is incremented and the previous cause is kept
        in the event list (exactly once per failure, even if this call is repeated).
        """
        require(run_id, "run_id")
        require(connection, "connection")
        now = self._now()
        stamp = iso(now)
        item = {
            "pk": run_pk(run_id),
            "sk": "RUN",
            "gsi1pk": connection_pk(connection),
            "gsi1sk": f"{stamp}#{run_id}",
            "type": "RUN",
            "run_id": run_id,
            "record_key": run_id,
            "connection": connection,
            "flow": flow,
            "trigger": trigger,
            "detail": dict(detail or {}),
            "status": "RUNNING",
            "started_at": stamp,
            "first_at": stamp,
            "updated_at": stamp,
            "redriven": 0,
            "events": [{"at": stamp, "status": "RUNNING", "event": "started", "trigger": trigger}],
            "ttl": self._ttl(now),
        }
        new = Update()
        new.where(f"attribute_not_exists({new.name('pk')})")
        try:
            self.client.put_item(TableName=self.table_name, Item=to_item(item), **new.condition_args())
            return run_record(from_item(to_item(item)))
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        existing = self.get_run(run_id)
        if existing.status not in REDRIVABLE:
            return existing
        event = {"at": stamp, "status": "RUNNING", "event": "redriven", "previous_cause": existing.cause}
        u = Update().set("status", "RUNNING").increment("redriven").set("updated_at", stamp)
        u.set("redriven_at", stamp).append("events", [event]).remove("finished_at").remove("cause")
        u.where(
            f"{u.name('status')} = {u.value(existing.status)} "
            f"AND {u.name('updated_at')} = {u.value(iso(existing.updated_at))}"
        )
        try:
            response = self.client.update_item(
                TableName=self.table_name, Key=self._key(run_id, "RUN"), ReturnValues="ALL_NEW", **u.args()
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return self.get_run(run_id)  # someone else redrove it in between
        return run_record(from_item(response["Attributes"]))

    def finish_run(
        self,
        run_id: str,
        status: FinalStatus,
        cause: Mapping[str, Any] | None = None,
        summary: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        """Set the final status (and cause/summary). RecordNotFound if there is no such run.

        Repeating the same call (same status, cause and summary) is a no-op. Finishing a run that is
        already FAILED with a different outcome means the execution was redriven without ``start_run``
        being called again (a redrive does not re-run states that succeeded): the redrive is recorded
        (``redriven + 1`` and a ``redriven`` event) before the new outcome.
        """
        if status not in FINAL_STATUSES:
            raise ValueError(
                f"finish_run({run_id!r}): status must be one of {sorted(FINAL_STATUSES)}, got {status!r}"
            )
        cause_ = dict(cause) if cause is not None else None
        summary_ = dict(summary) if summary is not None else None
        finish_digest = digest(status, cause_, summary_)
        for _ in range(5):
            current = self._get(run_id, "RUN")
            if current is None:
                raise RecordNotFound(f"ledger {self.table_name}: no run {run_id!r}")
            if current.get("status") == status and current.get("finish_digest") == finish_digest:
                return run_record(current)  # a repeated call
            stamp = iso(self._now())
            events: list[dict[str, Any]] = []
            redrive = current.get("status") in REDRIVABLE
            if redrive:
                events.append(
                    {
                        "at": stamp,
                        "status": "RUNNING",
                        "event": "redriven",
                        "previous_cause": current.get("cause"),
                    }
                )
            finished: dict[str, Any] = {"at": stamp, "status": status, "event": "finished"}
            if cause_:
                finished["cause"] = cause_
            events.append(finished)
            u = Update().set_all(
                {"status": status, "finished_at": stamp, "updated_at": stamp, "finish_digest": finish_digest}
            )
            u.increment("redriven", 1 if redrive else 0).append("events", events)
            u.set("cause", cause_).set("summary", summary_)
            u.where(f"{u.name('updated_at')} = {u.value(str(current['updated_at']))}")
            try:
                response = self.client.update_item(
                    TableName=self.table_name,
                    Key=self._key(run_id, "RUN"),
                    ReturnValues="ALL_NEW",
                    **u.args(),
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
                continue  # changed since we read it: read again
            return run_record(from_item(response["Attributes"]))
        raise LedgerConflict(
            f"ledger {self.table_name}: run {run_id!r} kept changing; finish_run({status}) not applied"
        )

    def get_run(self, run_id: str) -> RunRecord:
        item = self._get(run_id, "RUN")
        if item is None:
            raise RecordNotFound(f"ledger {self.table_name}: no run {run_id!r}")
        return run_record(item)

    def list_runs(
        self,
        connection: str,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> list[RunRecord]:
        """Runs of a connection started in ``[since, until)`` (GSI ``by-connection``; eventually consistent)."""
        stamps = {
            "since": None if since is None else iso(since),
            "until": None if until is None else iso(until),
        }
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": GSI_BY_CONNECTION,
            "ScanIndexForward": not newest_first,
            **key_condition(connection_pk(connection), pk_attr="gsi1pk", sk_attr="gsi1sk", **stamps),
        }
        runs: list[RunRecord] = []
        while True:
            page = self.client.query(**kwargs)
            for raw in page.get("Items", []):
                runs.append(run_record(from_item(raw)))
                if limit is not None and len(runs) >= limit:
                    return runs
            last = page.get("LastEvaluatedKey")
            if not last:
                return runs
            kwargs["ExclusiveStartKey"] = last

    def all_runs(self) -> list[RunRecord]:
        """Every run of every connection, oldest first (a table scan: for the local dev kit, not for a Lambda)."""
        runs: list[RunRecord] = []
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(
            TableName=self.table_name,
            FilterExpression="sk = :run",
            ExpressionAttributeValues={":run": {"S": "RUN"}},
        ):
            runs += [run_record(from_item(i)) for i in page.get("Items", [])]
        return sorted(runs, key=lambda r: r.started_at)
