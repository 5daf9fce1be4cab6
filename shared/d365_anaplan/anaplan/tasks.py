"""Anaplan tasks: start, list, poll (one poll shaped for a Step Functions loop), wait, cancel; and what a task's
result means (outcome, row counts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from d365_anaplan.anaplan.limits import next_poll_wait
from d365_anaplan.anaplan.models import TERMINAL_STATES, Outcome, RowCounts, Task, TaskResult
from d365_anaplan.anaplan.transport import AnaplanTransport
from d365_anaplan.errors import AnaplanError, AnaplanPollTimeout

Kind = Literal["imports", "exports", "processes", "actions"]
MIN_POLL_SECONDS = 5.0


class TaskCheck(BaseModel):
    """One poll of a task, shaped for a Step Functions poll loop."""

    model_config = ConfigDict(frozen=True)

    kind: str
    action_id: str
    task_id: str
    state: str
    terminal: bool
    outcome: Outcome | None = None
    next_wait_seconds: int
    failure_dump_available: bool = False
    counts: RowCounts = RowCounts()
    failed_nested: list[str] = []  # object ids of failing process steps
    dump_object_ids: list[str] = []  # process steps with a failure dump
    message: str = ""


def row_counts(result: TaskResult | None) -> RowCounts:
    """Sum the ``hierarchyRowsProcessed`` details of a result (and of nested results)."""
    if result is None:
        return RowCounts()
    names = {
        "total": "totalRowCount",
        "success": "successRowCount",
        "created": "successCreateCount",
        "updated": "successUpdateCount",
        "warnings": "warningsRowCount",
        "failed": "failedCount",
        "ignored": "ignoredCount",
        "invalid": "invalidCount",
    }
    sums = dict.fromkeys(names, 0)
    stack = [result]
    while stack:
        current = stack.pop()
        stack.extend(current.nested_results)
        for detail in current.details:
            if detail.type != "hierarchyRowsProcessed":
                continue
            pairs = detail.pairs()
            for ours, theirs in names.items():
                try:
                    sums[ours] += int(pairs.get(theirs, "0"))
                except ValueError:
                    continue
    return RowCounts(**sums)


def classify(task: Task) -> Outcome | None:
    """success / success with warnings / failed / cancelled, or None while the task is not terminal."""
    if task.task_state == "CANCELLED":
        return Outcome.CANCELLED
    if task.task_state != "COMPLETE":
        return None
    result = task.result
    if result is None or not result.successful:
        return Outcome.FAILED
    if any(not n.successful for n in result.nested_results):
        return Outcome.FAILED
    counts = row_counts(result)
    dump = result.failure_dump_available or any(n.failure_dump_available for n in result.nested_results)
    if dump or counts.warnings or counts.failed or counts.ignored or counts.invalid:
        return Outcome.SUCCESS_WITH_WARNINGS
    return Outcome.SUCCESS


def task_check(kind: str, action_id: str, task: Task, elapsed_seconds: float) -> TaskCheck:
    """What one poll of ``task`` means for the poll loop."""
    outcome = classify(task)
    result = task.result
    nested = result.nested_results if result else []
    messages = [
        d.local_message_text.strip() for d in (result.details if result else []) if d.local_message_text
    ]
    return TaskCheck(
        kind=kind,
        action_id=action_id,
        task_id=task.task_id,
        state=task.task_state,
        terminal=task.task_state in TERMINAL_STATES,
        outcome=outcome,
        next_wait_seconds=next_poll_wait(elapsed_seconds),
        failure_dump_available=bool(result and result.failure_dump_available),
        counts=row_counts(result),
        failed_nested=[n.object_id or "?" for n in nested if not n.successful],
        dump_object_ids=[n.object_id for n in nested if n.failure_dump_available and n.object_id],
        message="; ".join(messages)[:1000],
    )


class Tasks:
    """The task calls of one model (``…/{kind}/{action id}/tasks``)."""

    def __init__(
        self,
        transport: AnaplanTransport,
        model_path: str,
        locale: str,
        *,
        monotonic: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self.transport = transport
        self.model_path = model_path
        self.locale = locale
        self.monotonic = monotonic
        self.sleep = sleep
        self._last_poll: dict[str, float] = {}

    def start(
        self, kind: Kind, action_id: str, *, mapping_parameters: list[dict[str, str]] | None = None
    ) -> str:
        """``POST …/{kind}/{id}/tasks`` with ``localeName`` (then optional ``mappingParameters``)."""
        path = f"{self.model_path}/{kind}/{action_id}/tasks"
        body: dict[str, Any] = {"localeName": self.locale}
        if mapping_parameters:
            body["mappingParameters"] = mapping_parameters
        call = f"POST {path}"
        answer = self.transport.json(
            "POST", path, call=call, obj=f"{kind[:-1]} {action_id}", json_body=body, idempotent=False
        )
        raw = answer.get("task") if isinstance(answer.get("task"), dict) else answer
        task_id = raw.get("taskId") if isinstance(raw, dict) else None
        if not task_id:
            raise AnaplanError(f"{call} ({kind[:-1]} {action_id}): the answer has no taskId")
        return str(task_id)

    def listed(self, kind: Kind, action_id: str) -> list[dict[str, Any]]:
        """The tasks Anaplan lists for an action (``GET …/{kind}/{id}/tasks``), each with a ``taskId``."""
        path = f"{self.model_path}/{kind}/{action_id}/tasks"
        body = self.transport.json("GET", path, call=f"GET {path}", obj=f"{kind[:-1]} {action_id}")
        tasks = body.get("tasks")
        return (
            [t for t in tasks if isinstance(t, dict) and t.get("taskId")] if isinstance(tasks, list) else []
        )

    def get(self, kind: Kind, action_id: str, task_id: str) -> Task:
        path = f"{self.model_path}/{kind}/{action_id}/tasks/{task_id}"
        call = f"GET {path}"
        body = self.transport.json("GET", path, call=call, obj=f"{kind[:-1]} {action_id} task {task_id}")
        return self.transport.parse(Task, body.get("task") or {}, call, f"task {task_id}")

    def check(self, kind: Kind, action_id: str, task_id: str, *, elapsed_seconds: float = 0.0) -> TaskCheck:
        """Poll once (for a Step Functions Wait/Choice loop); ``next_wait_seconds`` is at least 5."""
        key = f"{kind}/{action_id}/{task_id}"
        last = self._last_poll.get(key)
        if last is not None:
            gap = self.monotonic() - last
            if gap < MIN_POLL_SECONDS:
                self.sleep(MIN_POLL_SECONDS - gap)
        task = self.get(kind, action_id, task_id)
        self._last_poll[key] = self.monotonic()
        return task_check(kind, action_id, task, elapsed_seconds)

    def wait(self, kind: Kind, action_id: str, task_id: str, *, timeout_s: float = 3600.0) -> TaskCheck:
        """Poll until COMPLETE or CANCELLED (local use; in AWS the state machine loops over :meth:`check`)."""
        start = self.monotonic()
        while True:
            elapsed = self.monotonic() - start
            check = self.check(kind, action_id, task_id, elapsed_seconds=elapsed)
            if check.terminal:
                return check
            if elapsed + check.next_wait_seconds > timeout_s:
                raise AnaplanPollTimeout(
                    f"{kind[:-1]} {action_id} task {task_id}: still {check.state} after {int(elapsed)} s"
                )
            self.sleep(check.next_wait_seconds)

    def cancel(self, kind: Kind, action_id: str, task_id: str) -> Task | None:
        """``DELETE`` on the task URL; returns the task state Anaplan reports, if any."""
        path = f"{self.model_path}/{kind}/{action_id}/tasks/{task_id}"
        resp = self.transport.send(
            "DELETE", path, call=f"DELETE {path}", obj=f"task {task_id}", expected=(200, 202, 204)
        )
        try:
            body = resp.json()
        except ValueError:
            return None
        raw = body.get("task") if isinstance(body, dict) else None
        return Task.model_validate(raw) if isinstance(raw, dict) else None
