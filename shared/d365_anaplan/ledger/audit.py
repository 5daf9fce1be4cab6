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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from d365_anaplan.errors import RecordNotFound
from d365_anaplan.ledger._dynamo import Item, error_code, from_item, iso, put_all, query_all, to_item
from d365_anaplan.ledger._expr import Update, key_condition
from d365_anaplan.ledger.codec import (
    digest,
    events,
    file_record,
    journal_record,
    line_record,
    step_record,
    task_record,
)
from d365_anaplan.ledger.keys import file_sk, journal_sk, line_sk, run_pk, step_prefix, step_sk, task_sk
from d365_anaplan.ledger.models import (
    AuditEvent,
    FileRecord,
    JournalLineRecord,
    JournalRecord,
    RecordKind,
    StepRecord,
    TaskRecord,
)
from d365_anaplan.ledger.runs import RunTable, require

LINE_FAILED = "FAILED"


@dataclass(frozen=True)
class JournalLineEntry:
    """One line's outcome for :meth:`RunLedger.record_journal_lines`."""

    journal_key: str
    line_key: str
    status: str
    fo_ids: Mapping[str, Any] | None = None
    error: str | None = None
    payload: Mapping[str, Any] | None = None


class RunLedger(RunTable):
    """Audit trail of runs: the run items (:class:`RunTable`) and every record of a run."""

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
        stamp = iso(now)
        record_digest = digest(kind, key, state, event)
        fields = {
            "type": kind,
            "run_id": run_id,
            "record_key": key,
            "updated_at": stamp,
            "last_digest": record_digest,
            **state,
            "ttl": self._ttl(now),
        }
        u = Update().set_all(fields, keep | {"ttl"}).set_if_absent("first_at", stamp)
        u.append("events", [{"at": stamp, **event}])
        d = u.name("last_digest")
        u.where(f"attribute_not_exists({d}) OR {d} <> {u.value(record_digest)}")
        try:
            self.client.update_item(TableName=self.table_name, Key=self._key(run_id, sk), **u.args())
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

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
        require(step, "step")
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
        require(key, "key")
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
        require(task_id, "task_id")
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
        require(journal_key, "journal_key")
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
        require(line_key, "line_key")
        entry = JournalLineEntry(journal_key, line_key, status, fo_ids, error, payload)
        state, event = _line_state(entry)
        self._record(run_id, line_sk(line_key), "LINE", line_key, state, event, keep=frozenset({"fo_ids"}))

    def record_journal_lines(self, run_id: str, lines: Sequence[JournalLineEntry]) -> int:
        """Record many lines at once: what :meth:`record_journal_line` does for each, in batches.

        Lines seen for the first time are put in transactions (100 per request); lines the run
        already has (a retry, a redrive) go through :meth:`record_journal_line`, which keeps their history.
        Returns how many lines were written in bulk.
        """
        for entry in lines:
            require(entry.line_key, "line_key")
        known: set[str] = set()
        sks = [line_sk(e.line_key) for e in lines]
        for i in range(0, len(sks), 100):
            known |= {str(item["sk"]) for item in self._batch_get(run_id, sks[i : i + 100])}
        fresh: list[Item] = []
        for entry in lines:
            if line_sk(entry.line_key) in known:
                e = entry
                self.record_journal_line(
                    run_id, e.journal_key, e.line_key, e.status, e.fo_ids, e.error, e.payload
                )
                continue
            now = self._now()
            state, event = _line_state(entry)
            item: dict[str, Any] = {
                "pk": run_pk(run_id),
                "sk": line_sk(entry.line_key),
                "type": "LINE",
                "run_id": run_id,
                "record_key": entry.line_key,
                "updated_at": iso(now),
                "first_at": iso(now),
                "last_digest": digest("LINE", entry.line_key, state, event),
                **{k: v for k, v in state.items() if v is not None},
                "events": [{"at": iso(now), **event}],
            }
            ttl = self._ttl(now)
            if ttl is not None:
                item["ttl"] = ttl
            fresh.append(to_item(item))
        return put_all(self.client, self.table_name, fresh)

    # --- reading ----------------------------------------------------------------------------------------------

    def _items(self, run_id: str, prefix: str | None = None) -> list[dict[str, Any]]:
        keys = key_condition(run_pk(run_id), prefix=prefix)
        return query_all(self.client, TableName=self.table_name, ConsistentRead=True, **keys)

    def run_items(self, run_id: str) -> list[AuditEvent]:
        """Every event of the run (all items, all pages), oldest first: the run's timeline."""
        items = self._items(run_id)
        if not items:
            raise RecordNotFound(f"ledger {self.table_name}: no run {run_id!r}")
        return events(items)

    def steps(self, run_id: str) -> list[StepRecord]:
        records = [step_record(i) for i in self._items(run_id, "STEP#")]
        return sorted(records, key=lambda r: (r.started_at, r.step, r.attempt))

    def files(self, run_id: str) -> list[FileRecord]:
        return [file_record(i) for i in self._items(run_id, "FILE#")]

    def tasks(self, run_id: str) -> list[TaskRecord]:
        return [task_record(i) for i in self._items(run_id, "TASK#")]

    def journals(self, run_id: str) -> list[JournalRecord]:
        return [journal_record(i) for i in self._items(run_id, "JOURNAL#")]

    def journal_lines(
        self, run_id: str, journal_key: str | None = None, status: str | None = None
    ) -> list[JournalLineRecord]:
        lines = [line_record(i) for i in self._items(run_id, "LINE#")]
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
        items.extend(self._items(run_id, step_prefix(record_key)))
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
        return events(items)

    def _batch_get(self, run_id: str, sks: Iterable[str]) -> list[dict[str, Any]]:
        keys = [self._key(run_id, sk) for sk in dict.fromkeys(sks)]
        found: list[dict[str, Any]] = []
        request: dict[str, Any] = {self.table_name: {"Keys": keys, "ConsistentRead": True}}
        while request:
            response = self.client.batch_get_item(RequestItems=request)
            found.extend(from_item(i) for i in response.get("Responses", {}).get(self.table_name, []))
            request = response.get("UnprocessedKeys") or {}
        return found


def _line_state(entry: JournalLineEntry) -> tuple[dict[str, Any], dict[str, Any]]:
    """A journal line's latest state (with its payload, when given) and the event recording it (without)."""
    fo_ids = dict(entry.fo_ids) if entry.fo_ids is not None else None
    state: dict[str, Any] = {
        "journal_key": entry.journal_key,
        "line_key": entry.line_key,
        "status": entry.status,
        "fo_ids": fo_ids,
        "error": entry.error,
    }
    if entry.payload is not None:
        state["payload"] = dict(entry.payload)
    event = {"status": entry.status, "journal_key": entry.journal_key, "fo_ids": fo_ids, "error": entry.error}
    return state, event
