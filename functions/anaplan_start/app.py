"""Start an Anaplan import, export or process once per (run, step); a retry follows the task already started."""

from __future__ import annotations

from typing import Any, Literal

from d365_anaplan.steps.anaplan_tasks import TaskRef, start_action
from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.handler import StepEvent, step
from d365_anaplan.steps.lease import LeaseRef


class StartEvent(StepEvent):
    lease: LeaseRef  # $.lease: renewed and verified before anything is sent to Anaplan
    step: str
    kind: Literal["imports", "exports", "processes"]
    action: str


@step(StartEvent, TaskRef)
def lambda_handler(ctx: StepContext, ev: StartEvent) -> dict[str, Any]:
    return start_action(ctx, ev.step, ev.kind, ev.action, lease=ev.lease, dry_run=ev.dry_run)


EVENT_MODEL = StartEvent  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
OUTPUT_MODEL = TaskRef  # what lambda_handler returns (tests/contract/test_asl_pinned.py)
