"""Anaplan steps shared by both flows: upload a staged file, start an action, check its task once.

The state machine loops ``Wait → check_task`` until the task is terminal; nothing here sleeps between polls.
Starting is idempotent per (run, step): a Step Functions Retry or a console redrive finds the task the
earlier attempt started in the ledger and follows it instead of starting a second one.

Each step renews and verifies the model lease (``lease``, the flow's ``$.lease``) right before its first
request to Anaplan, and again before a download that follows a poll (:mod:`d365_anaplan.steps.lease`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from d365_anaplan.anaplan.models import Outcome
from d365_anaplan.errors import AnaplanPollTimeout, AnaplanTaskFailed
from d365_anaplan.staging import S3StreamWriter, iter_chunks
from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.lease import LeaseRef, hold_lease

Kind = Literal["imports", "exports", "processes"]
MAX_POLL_SECONDS = 4 * 3600  # an action still running after this is reported, not waited for


class TaskRef(BaseModel):
    """What the poll loop carries between states (small, JSON)."""

    kind: Kind
    action: str  # the name the configuration uses
    action_id: str
    task_id: str
    step: str
    started_at: str
    polls: int = 0
    next_wait_seconds: int = 5
    state: str = "NOT_STARTED"
    terminal: bool = False
    dry_run: bool = False
    outcome: str | None = None
    counts: dict[str, int] = {}
    dump_key: str | None = None
    file_key: str | None = None


def upload(
    ctx: StepContext, step: str, action: str, key: str, *, lease: LeaseRef, dry_run: bool = False
) -> dict[str, Any]:
    """Stream the staged file ``key`` into the data-source file of import ``action`` (header checked)."""
    if dry_run:
        ctx.ledger.record_step(ctx.run_id, step, "DRY_RUN", {"action": action, "key": key})
        return {"action": action, "key": key, "uploaded": False, "dry_run": True}
    hold_lease(ctx, lease, f"{step}: upload for import {action!r}")
    chunk_bytes = ctx.cfg.anaplan.chunk_size_mb * 1024 * 1024
    source = iter_chunks(ctx.s3, ctx.env.staging_bucket, key, chunk_size=chunk_bytes)
    result = ctx.anaplan.upload_for_import(action, source)
    detail = {
        "action": action,
        "key": key,
        "file_id": result.file_id,
        "chunks": result.chunks,
        "bytes_read": result.bytes_read,
        "bytes_sent": result.bytes_sent,
    }
    ctx.ledger.record_step(ctx.run_id, step, "SUCCEEDED", detail)
    return {**detail, "uploaded": True, "dry_run": False}


def start_action(
    ctx: StepContext, step: str, kind: Kind, action: str, *, lease: LeaseRef, dry_run: bool = False
) -> dict[str, Any]:
    """Start import/export/process ``action`` once per (run, step)."""
    now = datetime.now(UTC).isoformat()
    if dry_run:
        ref = TaskRef(
            kind=kind,
            action=action,
            action_id="",
            task_id="",
            step=step,
            started_at=now,
            state="COMPLETE",
            terminal=True,
            dry_run=True,
        )
        ctx.ledger.record_step(ctx.run_id, step, "DRY_RUN", {"action": action, "kind": kind})
        return ref.model_dump()
    pending = None
    for earlier in ctx.ledger.steps(ctx.run_id):
        if earlier.step == step and earlier.detail.get("task_id"):
            d = earlier.detail
            return TaskRef(
                kind=kind,
                action=action,
                action_id=str(d["action_id"]),
                task_id=str(d["task_id"]),
                step=step,
                started_at=str(d["started_at"]),
            ).model_dump()
        if earlier.step == step and earlier.status == "STARTING":
            pending = earlier.detail
    hold_lease(ctx, lease, f"{step}: start {kind[:-1]} {action!r}")
    client = ctx.anaplan
    action_id = _action_id(ctx, kind, action)
    if pending is not None:
        # An earlier attempt sent the start but never learned the task id (its answer was lost): Anaplan may
        # have started the task. Follow a task created since that attempt instead of starting a second one.
        known = {str(t) for t in pending.get("known_task_ids") or []}
        newest = int(pending.get("newest_task_ms") or 0)
        adopted = sorted(
            (
                t
                for t in _tasks_of(ctx, kind, action_id)
                if str(t.get("taskId")) not in known and int(t.get("creationTime") or newest + 1) > newest
            ),
            key=lambda t: int(t.get("creationTime") or 0),
        )
        if adopted:
            task_id = str(adopted[0]["taskId"])
            return _started(ctx, step, kind, action, action_id, task_id, now, adopted=True)
    else:
        existing = _tasks_of(ctx, kind, action_id)
        ctx.ledger.record_step(
            ctx.run_id,
            step,
            "STARTING",
            {
                "action": action,
                "kind": kind,
                "action_id": action_id,
                "requested_at": now,
                "newest_task_ms": max((int(t.get("creationTime") or 0) for t in existing), default=0),
                "known_task_ids": [str(t.get("taskId")) for t in existing][:500],
            },
        )
    task_id = client.start_task(kind, action_id)
    return _started(ctx, step, kind, action, action_id, task_id, now)


def _action_id(ctx: StepContext, kind: Kind, action: str) -> str:
    client = ctx.anaplan
    if kind == "imports":
        return client.find_import(action).id
    if kind == "exports":
        return client.find_export(action).id
    return client.find_process(action).id


def _tasks_of(ctx: StepContext, kind: Kind, action_id: str) -> list[dict[str, Any]]:
    """The tasks Anaplan lists for an action (``GET …/{kind}/{id}/tasks``, anaplan-api.md §tasks of an action)."""
    return ctx.anaplan.list_tasks(kind, action_id)


def _started(
    ctx: StepContext,
    step: str,
    kind: Kind,
    action: str,
    action_id: str,
    task_id: str,
    now: str,
    *,
    adopted: bool = False,
) -> dict[str, Any]:
    ctx.ledger.record_step(
        ctx.run_id,
        step,
        "STARTED",
        {
            "action": action,
            "kind": kind,
            "action_id": action_id,
            "task_id": task_id,
            "started_at": now,
            "adopted": adopted,
        },
    )
    ctx.ledger.record_task(ctx.run_id, kind, action_id, task_id, "NOT_STARTED", {"action": action})
    return TaskRef(
        kind=kind, action=action, action_id=action_id, task_id=task_id, step=step, started_at=now
    ).model_dump()


def check_task(
    ctx: StepContext,
    task: TaskRef,
    *,
    lease: LeaseRef,
    strict: bool = False,
    download_to: str | None = None,
) -> dict[str, Any]:
    """Poll the task once. Terminal: record it, save any failure dump to S3, download an export's file to
    ``download_to`` (``"<step>/<file name>"`` under the run); a failed or cancelled task (or, when ``strict``, any failed row) raises
    :class:`AnaplanTaskFailed` naming the action, the counts and where the dump is."""
    if task.dry_run or task.terminal:
        return task.model_dump()
    started = datetime.fromisoformat(task.started_at)
    elapsed = (datetime.now(UTC) - started).total_seconds()
    doing = f"{task.step}: {task.kind[:-1]} {task.action!r} task {task.task_id}"
    hold_lease(ctx, lease, f"{doing}: poll")
    check = ctx.anaplan.check_task(task.kind, task.action_id, task.task_id, elapsed_seconds=elapsed)
    if not check.terminal:
        if elapsed > MAX_POLL_SECONDS:
            _record_task(
                ctx, task, check.state, {"action": task.action, "polls": task.polls + 1, "timed_out": True}
            )
            raise AnaplanPollTimeout(
                f"{task.kind[:-1]} {task.action!r} task {task.task_id}: still {check.state} after {int(elapsed)} s; "
                "it keeps running in Anaplan — cancel it there or wait, then replay"
            )
        return task.model_copy(
            update={
                "polls": task.polls + 1,
                "next_wait_seconds": check.next_wait_seconds,
                "state": check.state,
            }
        ).model_dump()
    dump_key = None
    bucket = ctx.env.staging_bucket
    if (check.failure_dump_available and task.kind == "imports") or (
        task.kind == "processes" and check.dump_object_ids
    ):
        hold_lease(ctx, lease, f"{doing}: failure dump download")
    if check.failure_dump_available and task.kind == "imports":
        dump_key = ctx.key("dumps", f"{task.step}-{task.task_id}.csv")
        with S3StreamWriter(ctx.s3, bucket, dump_key) as out:
            ctx.anaplan.download_dump(task.action_id, task.task_id, out)
        assert out.result is not None
        ctx.ledger.record_file(
            ctx.run_id, task.step, bucket, dump_key, out.result.bytes, out.result.rows, out.result.sha256
        )
    for object_id in check.dump_object_ids if task.kind == "processes" else []:
        key = ctx.key("dumps", f"{task.step}-{task.task_id}-{object_id}.csv")
        with S3StreamWriter(ctx.s3, bucket, key) as out:
            ctx.anaplan.download_process_dump(task.action_id, task.task_id, object_id, out)
        dump_key = dump_key or key
    counts = check.counts.model_dump()
    _record_task(
        ctx,
        task,
        check.state,
        {
            "action": task.action,
            "outcome": str(check.outcome),
            "counts": counts,
            "polls": task.polls + 1,
            "message": check.message,
        },
        dump_key,
    )
    failed = check.outcome in (Outcome.FAILED, Outcome.CANCELLED) or (strict and check.counts.failed > 0)
    # The step's item keeps what its start recorded (a redrive still follows the task) and says how it ended.
    at_start = next((st.detail for st in ctx.ledger.steps(ctx.run_id) if st.step == task.step), {})
    ctx.ledger.record_step(
        ctx.run_id,
        task.step,
        "FAILED" if failed else "SUCCEEDED",
        {
            **at_start,
            "action": task.action,
            "kind": task.kind,
            "action_id": task.action_id,
            "task_id": task.task_id,
            "started_at": task.started_at,
            "outcome": str(check.outcome),
            "counts": counts,
            "dump_key": dump_key,
        },
    )
    if failed:
        where = f"; failure dump at s3://{bucket}/{dump_key}" if dump_key else ""
        raise AnaplanTaskFailed(
            f"{task.kind[:-1]} {task.action!r} task {task.task_id} ended {check.outcome}: "
            f"{check.counts.failed} row(s) failed of {check.counts.total}{where}. Anaplan said: {check.message or '-'}"
        )
    out_key = None
    if download_to and task.kind == "exports":
        hold_lease(ctx, lease, f"{doing}: export file download")
        folder, _, name = download_to.partition("/")
        download_key = ctx.key(folder, name or f"{task.action_id}.csv")
        with S3StreamWriter(ctx.s3, bucket, download_key) as out:
            ctx.anaplan.download_file(task.action_id, out)
        assert out.result is not None
        ctx.ledger.record_file(
            ctx.run_id, task.step, bucket, download_key, out.result.bytes, out.result.rows, out.result.sha256
        )
        out_key = download_key
    return task.model_copy(
        update={
            "polls": task.polls + 1,
            "state": check.state,
            "terminal": True,
            "outcome": str(check.outcome),
            "counts": counts,
            "dump_key": dump_key,
            "file_key": out_key,
        }
    ).model_dump()


def _record_task(
    ctx: StepContext, task: TaskRef, state: str, result: dict[str, Any], dump_key: str | None = None
) -> None:
    """The task's item in the ledger: its latest state and what this poll learned."""
    ctx.ledger.record_task(ctx.run_id, task.kind, task.action_id, task.task_id, state, result, dump_key)
