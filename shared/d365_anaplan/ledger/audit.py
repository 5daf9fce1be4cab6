"""The run ledger: an audit trail of every run in the single DynamoDB table ``LedgerTable``.

One partition per run (``pk = RUN#<run_id>``) holds the run item and one item per step attempt, staged file,
Anaplan task, F&O journal and journal line (key layout in ``docs/ledger.md``). Each record item carries its
latest state plus ``events``: the list of what happened to it, so :meth:`RunLedger.trace` answers "what
happened to record X in run Y" with one read per candidate item.

Idempotency: every write lands on a deterministic key, and appending an event is conditional on the new
event differing from the last one appended (``last_digest``), so a Lambda retried by Step Functions (or a
redriven execution) that repeats a call does not duplicate the trail. ``A -> B -> A`` still records three
events; ``A -> A`` records one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from botocore.exceptions import ClientError

from d365_anaplan.errors import LedgerConflict, RecordNotFound
from d365_anaplan.ledger._dynamo import (
    Clock,
    Item,
    LazyClient,
    epoch_seconds,
    error_code,
    from_item,
    iso,
    ledger_table_from_env,
    parse_iso,
    plain,
    put_all,
    query_all,
    to_attr,
    to_item,
    utc_now,
)
from d365_anaplan.ledger.models import (
    AuditEvent,
    FileRecord,
    FinalStatus,
    JournalLineRecord,
    JournalRecord,
    RecordKind,
    RunRecord,
    RunStatus,
    StepRecord,
    TaskRecord,
)

GSI_BY_CONNECTION = "by-connection"
FINAL_STATUSES: frozenset[str] = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "ABORTED"})
# Runs a redrive reopens (Step Functions redrives FAILED, TIMED_OUT and ABORTED executions).
REDRIVABLE: frozenset[str] = frozenset({"FAILED", "ABORTED"})
LINE_FAILED = "FAILED"

_KIND_ORDER: dict[str, int] = {"RUN": 0, "STEP": 1, "FILE": 2, "TASK": 3, "JOURNAL": 4, "LINE": 5}


@dataclass(frozen=True)
class JournalLineEntry:
    """One line's outcome for :meth:`RunLedger.record_journal_lines`."""

    journal_key: str
    line_key: str
    status: str
    fo_ids: Mapping[str, Any] | None = None
    error: str | None = None
    payload: Mapping[str, Any] | None = None


def run_pk(run_id: str) -> str:
    return f"RUN#{run_id}"


def step_sk(step: str, attempt: int) -> str:
    return f"STEP#{step}#{attempt:04d}"


def file_sk(key: str) -> str:
    return f"FILE#{key}"


def task_sk(task_id: str) -> str:
    return f"TASK#{task_id}"


def journal_sk(journal_key: str) -> str:
    return f"JOURNAL#{journal_key}"


def line_sk(line_key: str) -> str:
    return f"LINE#{line_key}"


def _digest(*parts: Any) -> str:
    text = json.dumps([plain(p) for p in parts], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _require(value: str, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


class RunLedger:
    """Audit trail of runs. ``table_name`` is the ledger table (env ``LEDGER_TABLE`` in Lambda).

    ``retention_days`` (default: keep forever) sets the ``ttl`` attribute on every item written so DynamoDB
    expires old runs. ``clock`` must return timezone-aware datetimes (tests inject a fixed clock).
    """

    def __init__(
        self,
        table_name: str,
        *,
        client: Any = None,
        clock: Clock | None = None,
        retention_days: int | None = None,
    ) -> None:
        self.table_name = _require(table_name, "table_name")
        self._client = LazyClient("dynamodb", client)
        self._clock = clock or utc_now
        self.retention_days = retention_days

    @classmethod
    def from_env(
        cls, *, client: Any = None, clock: Clock | None = None, retention_days: int | None = None
    ) -> RunLedger:
        """On the table named by env ``LEDGER_TABLE``."""
        return cls(ledger_table_from_env(), client=client, clock=clock, retention_days=retention_days)

    # --- plumbing -------------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        return self._client.get()

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

    def _record(
        self,
        run_id: str,
        sk: str,
        kind: RecordKind,
        key: str,
        state: Mapping[str, Any],
        event: Mapping[str, Any],
        keep: frozenset[str] = frozenset(),
    ) -> bool:
        """Upsert a record item's latest ``state`` and append ``event`` unless it repeats the last one.

        A ``None`` in ``state`` removes the attribute, except for names in ``keep`` (left as stored).
        Returns False when the call was an exact repeat (nothing written).
        """
        now = self._now()
        digest = _digest(kind, key, state, event)
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets: list[str] = []
        fields: dict[str, Any] = {
            "type": kind,
            "run_id": run_id,
            "record_key": key,
            "updated_at": iso(now),
            "last_digest": digest,
            **state,
        }
        ttl = self._ttl(now)
        if ttl is not None:
            fields["ttl"] = ttl
        removes: list[str] = []
        for i, (name, value) in enumerate(fields.items()):
            if value is None and name in keep:
                continue
            names[f"#f{i}"] = name
            if value is None:
                removes.append(f"#f{i}")
            else:
                values[f":f{i}"] = to_attr(value, name)
                sets.append(f"#f{i} = :f{i}")
        names["#first"] = "first_at"
        names["#events"] = "events"
        names["#digest"] = "last_digest"
        values[":now"] = to_attr(iso(now))
        values[":empty"] = {"L": []}
        values[":ev"] = {"L": [to_attr({"at": iso(now), **event}, "event")]}
        values[":digest"] = to_attr(digest)
        sets.append("#first = if_not_exists(#first, :now)")
        sets.append("#events = list_append(if_not_exists(#events, :empty), :ev)")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(run_id, sk),
                UpdateExpression=expression,
                ConditionExpression="attribute_not_exists(#digest) OR #digest <> :digest",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

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
        _require(run_id, "run_id")
        _require(connection, "connection")
        now = self._now()
        stamp = iso(now)
        item = {
            "pk": run_pk(run_id),
            "sk": "RUN",
            "gsi1pk": f"CONN#{connection}",
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
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=to_item(item),
                ConditionExpression="attribute_not_exists(pk)",
            )
            return _run_record(from_item(to_item(item)))
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        existing = self.get_run(run_id)
        if existing.status not in REDRIVABLE:
            return existing
        event = {"at": stamp, "status": "RUNNING", "event": "redriven", "previous_cause": existing.cause}
        try:
            response = self.client.update_item(
                TableName=self.table_name,
                Key=self._key(run_id, "RUN"),
                UpdateExpression=(
                    "SET #status = :running, #redriven = if_not_exists(#redriven, :zero) + :one, "
                    "#updated = :now, #redriven_at = :now, "
                    "#events = list_append(if_not_exists(#events, :empty), :ev) REMOVE #finished, #cause"
                ),
                ConditionExpression="#status = :previous AND #updated = :seen",
                ExpressionAttributeNames={
                    "#status": "status",
                    "#redriven": "redriven",
                    "#updated": "updated_at",
                    "#redriven_at": "redriven_at",
                    "#events": "events",
                    "#finished": "finished_at",
                    "#cause": "cause",
                },
                ExpressionAttributeValues={
                    ":running": to_attr("RUNNING"),
                    ":previous": to_attr(existing.status),
                    ":seen": to_attr(iso(existing.updated_at)),
                    ":zero": to_attr(0),
                    ":one": to_attr(1),
                    ":now": to_attr(stamp),
                    ":empty": {"L": []},
                    ":ev": {"L": [to_attr(event, "event")]},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return self.get_run(run_id)  # someone else redrove it in between
        return _run_record(from_item(response["Attributes"]))

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
        digest = _digest(status, cause_, summary_)
        for _ in range(5):
            current = self._get(run_id, "RUN")
            if current is None:
                raise RecordNotFound(f"ledger {self.table_name}: no run {run_id!r}")
            if current.get("status") == status and current.get("finish_digest") == digest:
                return _run_record(current)  # a repeated call
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
            names = {
                "#status": "status",
                "#finished": "finished_at",
                "#updated": "updated_at",
                "#events": "events",
                "#cause": "cause",
                "#summary": "summary",
                "#digest": "finish_digest",
                "#redriven": "redriven",
            }
            values: dict[str, Any] = {
                ":status": to_attr(status),
                ":now": to_attr(stamp),
                ":seen": to_attr(str(current["updated_at"])),
                ":digest": to_attr(digest),
                ":empty": {"L": []},
                ":ev": {"L": [to_attr(e, "event") for e in events]},
                ":zero": to_attr(0),
                ":inc": to_attr(1 if redrive else 0),
            }
            sets = [
                "#status = :status",
                "#finished = :now",
                "#updated = :now",
                "#digest = :digest",
                "#redriven = if_not_exists(#redriven, :zero) + :inc",
                "#events = list_append(if_not_exists(#events, :empty), :ev)",
            ]
            removes: list[str] = []
            for name, value in (("cause", cause_), ("summary", summary_)):
                if value is None:
                    removes.append(f"#{name}")
                else:
                    values[f":{name}"] = to_attr(value, name)
                    sets.append(f"#{name} = :{name}")
            try:
                response = self.client.update_item(
                    TableName=self.table_name,
                    Key=self._key(run_id, "RUN"),
                    UpdateExpression="SET "
                    + ", ".join(sets)
                    + (" REMOVE " + ", ".join(removes) if removes else ""),
                    ConditionExpression="#updated = :seen",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
                continue  # changed since we read it: read again
            return _run_record(from_item(response["Attributes"]))
        raise LedgerConflict(
            f"ledger {self.table_name}: run {run_id!r} kept changing; finish_run({status}) not applied"
        )

    def get_run(self, run_id: str) -> RunRecord:
        item = self._get(run_id, "RUN")
        if item is None:
            raise RecordNotFound(f"ledger {self.table_name}: no run {run_id!r}")
        return _run_record(item)

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
        names = {"#pk": "gsi1pk"}
        values: dict[str, Any] = {":pk": to_attr(f"CONN#{connection}")}
        condition = "#pk = :pk"
        if since is not None or until is not None:
            names["#sk"] = "gsi1sk"
        if since is not None and until is not None:
            condition += " AND #sk BETWEEN :since AND :until"
            values[":since"] = to_attr(iso(since))
            values[":until"] = to_attr(iso(until))
        elif since is not None:
            condition += " AND #sk >= :since"
            values[":since"] = to_attr(iso(since))
        elif until is not None:
            condition += " AND #sk < :until"
            values[":until"] = to_attr(iso(until))
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": GSI_BY_CONNECTION,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": not newest_first,
        }
        runs: list[RunRecord] = []
        while True:
            page = self.client.query(**kwargs)
            for raw in page.get("Items", []):
                runs.append(_run_record(from_item(raw)))
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
            runs += [_run_record(from_item(i)) for i in page.get("Items", [])]
        return sorted(runs, key=lambda r: r.started_at)

    # --- records ------------------------------------------------------------------------------------------

    def record_step(
        self,
        run_id: str,
        step: str,
        status: str,
        detail: Mapping[str, Any] | None = None,
        attempt: int = 1,
    ) -> None:
        """One item per (state name, attempt); ``attempt`` is ``$$.State.RetryCount + 1``.

        Map iterations should pass a step name that includes the item index (e.g. ``WriteJournal[3]``).
        """
        _require(step, "step")
        if attempt < 1:
            raise ValueError(f"record_step({run_id!r}, {step!r}): attempt must be >= 1, got {attempt}")
        detail_ = dict(detail or {})
        self._record(
            run_id,
            step_sk(step, attempt),
            "STEP",
            step,
            {"step": step, "attempt": attempt, "status": status, "detail": detail_},
            {"status": status, "attempt": attempt, "detail": detail_},
        )

    def record_file(
        self,
        run_id: str,
        step: str,
        bucket: str,
        key: str,
        bytes: int,
        rows: int,
        sha256: str,
    ) -> None:
        _require(key, "key")
        state = {"step": step, "bucket": bucket, "key": key, "bytes": bytes, "rows": rows, "sha256": sha256}
        self._record(
            run_id, file_sk(key), "FILE", key, {**state, "status": "STAGED"}, {"status": "STAGED", **state}
        )

    def record_task(
        self,
        run_id: str,
        action_kind: str,
        action_id: str,
        task_id: str,
        state: str,
        result: Mapping[str, Any] | None = None,
        dump_key: str | None = None,
    ) -> None:
        """An Anaplan task (import/export/process/delete) and its state; ``result`` holds counts etc."""
        _require(task_id, "task_id")
        result_ = dict(result) if result is not None else None
        self._record(
            run_id,
            task_sk(task_id),
            "TASK",
            task_id,
            {
                "action_kind": action_kind,
                "action_id": action_id,
                "task_id": task_id,
                "state": state,
                "status": state,
                "result": result_,
                "dump_key": dump_key,
            },
            {
                "status": state,
                "action_kind": action_kind,
                "action_id": action_id,
                "result": result_,
                "dump_key": dump_key,
            },
            keep=frozenset({"result", "dump_key"}),
        )

    def record_journal(
        self,
        run_id: str,
        journal_key: str,
        status: str,
        fo_journal_batch: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        _require(journal_key, "journal_key")
        detail_ = dict(detail or {})
        self._record(
            run_id,
            journal_sk(journal_key),
            "JOURNAL",
            journal_key,
            {
                "journal_key": journal_key,
                "status": status,
                "fo_journal_batch": fo_journal_batch,
                "detail": detail_,
            },
            {"status": status, "fo_journal_batch": fo_journal_batch, "detail": detail_},
            keep=frozenset({"fo_journal_batch"}),
        )

    def record_journal_line(
        self,
        run_id: str,
        journal_key: str,
        line_key: str,
        status: str,
        fo_ids: Mapping[str, Any] | None = None,
        error: str | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        """A journal line written (or not) to F&O. ``line_key`` is our key, unique within the run.

        ``payload`` (the line as sent) stays on the item so a failed line can be replayed from the ledger
        alone; it is not copied into the event list. ``payload=None`` and ``fo_ids=None`` keep what was
        stored earlier; ``error=None`` clears a previous error (the line's latest state has none).
        """
        _require(line_key, "line_key")
        fo_ids_ = dict(fo_ids) if fo_ids is not None else None
        state: dict[str, Any] = {
            "journal_key": journal_key,
            "line_key": line_key,
            "status": status,
            "fo_ids": fo_ids_,
            "error": error,
        }
        if payload is not None:
            state["payload"] = dict(payload)
        self._record(
            run_id,
            line_sk(line_key),
            "LINE",
            line_key,
            state,
            {"status": status, "journal_key": journal_key, "fo_ids": fo_ids_, "error": error},
            keep=frozenset({"fo_ids"}),
        )

    def record_journal_lines(self, run_id: str, lines: Sequence[JournalLineEntry]) -> int:
        """Record many lines at once: what :meth:`record_journal_line` does for each, in batches.

        Lines seen for the first time are put in transactions (100 per request); lines the run
        already has (a retry, a redrive) go through :meth:`record_journal_line`, which keeps their history.
        Returns how many lines were written in bulk.
        """
        for entry in lines:
            _require(entry.line_key, "line_key")
        known: set[str] = set()
        sks = [line_sk(e.line_key) for e in lines]
        for i in range(0, len(sks), 100):
            known |= {str(item["sk"]) for item in self._batch_get(run_id, sks[i : i + 100])}
        fresh: list[Item] = []
        for entry in lines:
            if line_sk(entry.line_key) in known:
                self.record_journal_line(run_id, entry.journal_key, entry.line_key, entry.status, entry.fo_ids,
                                         entry.error, entry.payload)  # fmt: skip
                continue
            now = self._now()
            fo_ids = dict(entry.fo_ids) if entry.fo_ids is not None else None
            state: dict[str, Any] = {"journal_key": entry.journal_key, "line_key": entry.line_key,
                                     "status": entry.status, "fo_ids": fo_ids, "error": entry.error}  # fmt: skip
            if entry.payload is not None:
                state["payload"] = dict(entry.payload)
            event = {
                "status": entry.status,
                "journal_key": entry.journal_key,
                "fo_ids": fo_ids,
                "error": entry.error,
            }
            item: dict[str, Any] = {
                "pk": run_pk(run_id), "sk": line_sk(entry.line_key), "type": "LINE", "run_id": run_id,
                "record_key": entry.line_key, "updated_at": iso(now), "first_at": iso(now),
                "last_digest": _digest("LINE", entry.line_key, state, event),
                **{k: v for k, v in state.items() if v is not None},
                "events": [{"at": iso(now), **event}],
            }  # fmt: skip
            ttl = self._ttl(now)
            if ttl is not None:
                item["ttl"] = ttl
            fresh.append(to_item(item))
        return put_all(self.client, self.table_name, fresh)

    # --- reading ----------------------------------------------------------------------------------------------

    def _items(self, run_id: str, prefix: str | None = None) -> list[dict[str, Any]]:
        names = {"#pk": "pk"}
        values: dict[str, Any] = {":pk": to_attr(run_pk(run_id))}
        condition = "#pk = :pk"
        if prefix is not None:
            names["#sk"] = "sk"
            values[":prefix"] = to_attr(prefix)
            condition += " AND begins_with(#sk, :prefix)"
        return query_all(
            self.client,
            TableName=self.table_name,
            KeyConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ConsistentRead=True,
        )

    def run_items(self, run_id: str) -> list[AuditEvent]:
        """Every event of the run (all items, all pages), oldest first: the run's timeline."""
        items = self._items(run_id)
        if not items:
            raise RecordNotFound(f"ledger {self.table_name}: no run {run_id!r}")
        return _events(items)

    def steps(self, run_id: str) -> list[StepRecord]:
        records = [_step_record(i) for i in self._items(run_id, "STEP#")]
        return sorted(records, key=lambda r: (r.started_at, r.step, r.attempt))

    def files(self, run_id: str) -> list[FileRecord]:
        return [_file_record(i) for i in self._items(run_id, "FILE#")]

    def tasks(self, run_id: str) -> list[TaskRecord]:
        return [_task_record(i) for i in self._items(run_id, "TASK#")]

    def journals(self, run_id: str) -> list[JournalRecord]:
        return [_journal_record(i) for i in self._items(run_id, "JOURNAL#")]

    def journal_lines(
        self, run_id: str, journal_key: str | None = None, status: str | None = None
    ) -> list[JournalLineRecord]:
        lines = [_line_record(i) for i in self._items(run_id, "LINE#")]
        return [
            line
            for line in lines
            if (journal_key is None or line.journal_key == journal_key)
            and (status is None or line.status == status)
        ]

    def failed_journal_lines(self, run_id: str) -> list[JournalLineRecord]:
        """Lines whose latest status is ``FAILED`` (with their payload, for replay)."""
        return self.journal_lines(run_id, status=LINE_FAILED)

    def trace(self, run_id: str, record_key: str) -> list[AuditEvent]:
        """What happened to record ``record_key`` in run ``run_id``, oldest first.

        ``record_key`` is matched against journal line keys, S3 keys of staged files, Anaplan task ids,
        journal keys and step (state) names. A journal line's trace includes its journal's events.
        Raises RecordNotFound when nothing in the run has that key.
        """
        sks = [line_sk(record_key), file_sk(record_key), task_sk(record_key), journal_sk(record_key)]
        items = self._batch_get(run_id, sks)
        items.extend(self._items(run_id, f"STEP#{record_key}#"))
        journals: set[str] = set()
        for item in items:
            if item.get("type") == "LINE":  # every journal the line was ever in, not only the latest
                journals.update(
                    str(e["journal_key"]) for e in item.get("events") or [] if e.get("journal_key")
                )
        journals.discard(record_key)
        if journals:
            items.extend(self._batch_get(run_id, [journal_sk(j) for j in sorted(journals)]))
        if not items:
            if self._get(run_id, "RUN") is None:
                raise RecordNotFound(f"ledger {self.table_name}: no run {run_id!r}")
            raise RecordNotFound(f"ledger {self.table_name}: run {run_id!r} has no record {record_key!r}")
        return _events(items)

    def _batch_get(self, run_id: str, sks: Iterable[str]) -> list[dict[str, Any]]:
        keys = [self._key(run_id, sk) for sk in dict.fromkeys(sks)]
        found: list[dict[str, Any]] = []
        request: dict[str, Any] = {self.table_name: {"Keys": keys, "ConsistentRead": True}}
        while request:
            response = self.client.batch_get_item(RequestItems=request)
            found.extend(from_item(i) for i in response.get("Responses", {}).get(self.table_name, []))
            request = response.get("UnprocessedKeys") or {}
        return found


# --- item -> record -----------------------------------------------------------------------------------------


def _dt(value: Any) -> datetime:
    return parse_iso(str(value))


def _opt_dt(value: Any) -> datetime | None:
    return None if value is None else parse_iso(str(value))


def _opt_dict(value: Any) -> dict[str, Any] | None:
    return None if value is None else dict(value)


def _run_record(item: Mapping[str, Any]) -> RunRecord:
    return RunRecord(
        run_id=str(item["run_id"]),
        connection=str(item["connection"]),
        flow=str(item["flow"]),
        trigger=str(item["trigger"]),
        status=cast(RunStatus, item["status"]),
        started_at=_dt(item["started_at"]),
        updated_at=_dt(item["updated_at"]),
        finished_at=_opt_dt(item.get("finished_at")),
        detail=dict(item.get("detail") or {}),
        cause=_opt_dict(item.get("cause")),
        summary=_opt_dict(item.get("summary")),
        redriven=int(item.get("redriven") or 0),
    )


def _step_record(item: Mapping[str, Any]) -> StepRecord:
    return StepRecord(
        run_id=str(item["run_id"]),
        step=str(item["step"]),
        attempt=int(item["attempt"]),
        status=str(item["status"]),
        started_at=_dt(item["first_at"]),
        updated_at=_dt(item["updated_at"]),
        detail=dict(item.get("detail") or {}),
    )


def _file_record(item: Mapping[str, Any]) -> FileRecord:
    return FileRecord(
        run_id=str(item["run_id"]),
        step=str(item["step"]),
        bucket=str(item["bucket"]),
        key=str(item["key"]),
        bytes=int(item["bytes"]),
        rows=int(item["rows"]),
        sha256=str(item["sha256"]),
        recorded_at=_dt(item["updated_at"]),
    )


def _task_record(item: Mapping[str, Any]) -> TaskRecord:
    return TaskRecord(
        run_id=str(item["run_id"]),
        action_kind=str(item["action_kind"]),
        action_id=str(item["action_id"]),
        task_id=str(item["task_id"]),
        state=str(item["state"]),
        result=_opt_dict(item.get("result")),
        dump_key=None if item.get("dump_key") is None else str(item["dump_key"]),
        updated_at=_dt(item["updated_at"]),
    )


def _journal_record(item: Mapping[str, Any]) -> JournalRecord:
    batch = item.get("fo_journal_batch")
    return JournalRecord(
        run_id=str(item["run_id"]),
        journal_key=str(item["journal_key"]),
        status=str(item["status"]),
        fo_journal_batch=None if batch is None else str(batch),
        detail=dict(item.get("detail") or {}),
        updated_at=_dt(item["updated_at"]),
    )


def _line_record(item: Mapping[str, Any]) -> JournalLineRecord:
    error = item.get("error")
    return JournalLineRecord(
        run_id=str(item["run_id"]),
        journal_key=str(item["journal_key"]),
        line_key=str(item["line_key"]),
        status=str(item["status"]),
        fo_ids=_opt_dict(item.get("fo_ids")),
        error=None if error is None else str(error),
        payload=_opt_dict(item.get("payload")),
        updated_at=_dt(item["updated_at"]),
    )


def _events(items: Iterable[Mapping[str, Any]]) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    for item in items:
        kind = cast(RecordKind, item.get("type", "RUN"))
        key = str(item.get("record_key", item.get("run_id", "")))
        for raw in item.get("events") or []:
            detail = {k: v for k, v in dict(raw).items() if k not in ("at", "status")}
            events.append(
                AuditEvent(
                    run_id=str(item["run_id"]),
                    kind=kind,
                    key=key,
                    at=_dt(raw["at"]),
                    status=str(raw.get("status", "")),
                    detail=detail,
                )
            )
    events.sort(key=lambda e: (e.at, _KIND_ORDER.get(e.kind, 9), e.key))
    return events
