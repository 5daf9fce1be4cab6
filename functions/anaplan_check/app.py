"""Check an Anaplan task once (the ASL's Wait/Choice loop calls this); terminal tasks are recorded, dumps
and export files saved to S3, failures raised as AnaplanTaskFailed."""

from __future__ import annotations

from typing import Any

from d365_anaplan.steps.anaplan_tasks import TaskRef, check_task
from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.handler import StepEvent, step
from d365_anaplan.steps.lease import LeaseRef


class CheckEvent(StepEvent):
    lease: LeaseRef  # $.lease: renewed and verified before anything is sent to Anaplan
    task: TaskRef
    strict: bool = False
    download_to: str | None = None  # "<step>/<file name>" under the run, for exports


@step(CheckEvent, TaskRef)
def lambda_handler(ctx: StepContext, ev: CheckEvent) -> dict[str, Any]:
    return check_task(ctx, ev.task, lease=ev.lease, strict=ev.strict, download_to=ev.download_to)


EVENT_MODEL = CheckEvent  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
OUTPUT_MODEL = TaskRef  # what lambda_handler returns (tests/contract/test_asl_pinned.py)
