"""Records returned by the ledger (plain frozen dataclasses; numbers are ``int`` or ``Decimal``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

RunStatus = Literal["RUNNING", "SUCCEEDED", "FAILED", "SKIPPED"]
FinalStatus = Literal["SUCCEEDED", "FAILED", "SKIPPED", "ABORTED"]  # ABORTED: stopped (console, Ctrl-C)
RecordKind = Literal["RUN", "STEP", "FILE", "TASK", "JOURNAL", "LINE"]


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    connection: str
    flow: str
    trigger: str
    status: RunStatus
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    cause: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    redriven: int = 0


@dataclass(frozen=True)
class AuditEvent:
    """One thing that happened to one record of a run.

    ``kind`` and ``key`` name the record (``LINE`` + our line key, ``FILE`` + S3 key, ``TASK`` + task id,
    ``JOURNAL`` + journal key, ``STEP`` + state name, ``RUN`` + run id); ``detail`` holds what that call
    recorded (never a line's full payload, which stays on the record item).
    """

    run_id: str
    kind: RecordKind
    key: str
    at: datetime
    status: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepRecord:
    run_id: str
    step: str
    attempt: int
    status: str
    started_at: datetime
    updated_at: datetime
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FileRecord:
    run_id: str
    step: str
    bucket: str
    key: str
    bytes: int
    rows: int
    sha256: str
    recorded_at: datetime


@dataclass(frozen=True)
class TaskRecord:
    run_id: str
    action_kind: str
    action_id: str
    task_id: str
    state: str
    result: dict[str, Any] | None
    dump_key: str | None
    updated_at: datetime


@dataclass(frozen=True)
class JournalRecord:
    run_id: str
    journal_key: str
    status: str
    fo_journal_batch: str | None
    detail: dict[str, Any]
    updated_at: datetime


@dataclass(frozen=True)
class JournalLineRecord:
    run_id: str
    journal_key: str
    line_key: str
    status: str
    fo_ids: dict[str, Any] | None
    error: str | None
    payload: dict[str, Any] | None
    updated_at: datetime


@dataclass(frozen=True)
class Lease:
    """A held lease on one Anaplan model (``model_key`` = ``<workspace_id>/<model_id>``)."""

    model_key: str
    owner: str
    acquired_at: datetime
    expires_at: datetime
    version: int
    displaced_owner: str | None = None  # set when this acquisition took over an expired lease
    displaced_expired_at: datetime | None = None


@dataclass(frozen=True)
class Watermark:
    connection: str
    flow: str
    value: str
    run_id: str
    advanced_at: datetime
    previous_value: str | None = None
