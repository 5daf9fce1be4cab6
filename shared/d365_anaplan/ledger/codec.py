"""Ledger items <-> records: what a stored item reads as (:mod:`d365_anaplan.ledger.models`), and the digest
that makes a repeated write a no-op."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from d365_anaplan.ledger._dynamo import from_epoch, parse_iso, plain
from d365_anaplan.ledger.models import (
    AuditEvent,
    FileRecord,
    JournalLineRecord,
    JournalRecord,
    Lease,
    RecordKind,
    RunRecord,
    RunStatus,
    StepRecord,
    TaskRecord,
    Watermark,
)

_KIND_ORDER: dict[str, int] = {"RUN": 0, "STEP": 1, "FILE": 2, "TASK": 3, "JOURNAL": 4, "LINE": 5}


def digest(*parts: Any) -> str:
    """A stable hash of what a write records (the ledger compares it with the last one written)."""
    text = json.dumps([plain(p) for p in parts], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _dt(value: Any) -> datetime:
    return parse_iso(str(value))


def _opt_dt(value: Any) -> datetime | None:
    return None if value is None else parse_iso(str(value))


def _opt_dict(value: Any) -> dict[str, Any] | None:
    return None if value is None else dict(value)


def run_record(item: Mapping[str, Any]) -> RunRecord:
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


def step_record(item: Mapping[str, Any]) -> StepRecord:
    return StepRecord(
        run_id=str(item["run_id"]),
        step=str(item["step"]),
        attempt=int(item["attempt"]),
        status=str(item["status"]),
        started_at=_dt(item["first_at"]),
        updated_at=_dt(item["updated_at"]),
        detail=dict(item.get("detail") or {}),
    )


def file_record(item: Mapping[str, Any]) -> FileRecord:
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


def task_record(item: Mapping[str, Any]) -> TaskRecord:
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


def journal_record(item: Mapping[str, Any]) -> JournalRecord:
    batch = item.get("fo_journal_batch")
    return JournalRecord(
        run_id=str(item["run_id"]),
        journal_key=str(item["journal_key"]),
        status=str(item["status"]),
        fo_journal_batch=None if batch is None else str(batch),
        detail=dict(item.get("detail") or {}),
        updated_at=_dt(item["updated_at"]),
    )


def line_record(item: Mapping[str, Any]) -> JournalLineRecord:
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


def events(items: Iterable[Mapping[str, Any]]) -> list[AuditEvent]:
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


def lease_record(item: Mapping[str, Any]) -> Lease:
    displaced_at = item.get("displaced_expired_at")
    return Lease(
        model_key=str(item["model_key"]),
        owner=str(item["owner"]),
        acquired_at=parse_iso(str(item["acquired_at"])),
        expires_at=from_epoch(item["expires_at"]),
        version=int(item["version"]),
        displaced_owner=None if item.get("displaced_owner") is None else str(item["displaced_owner"]),
        displaced_expired_at=None if displaced_at is None else parse_iso(str(displaced_at)),
    )


def watermark_record(item: Mapping[str, Any]) -> Watermark:
    previous = item.get("previous_value")
    return Watermark(
        connection=str(item["connection"]),
        flow=str(item["flow"]),
        value=str(item["value"]),
        run_id=str(item["run_id"]),
        advanced_at=parse_iso(str(item["advanced_at"])),
        previous_value=None if previous is None else str(previous),
    )
