"""Stream a staged file into the data-source file of an Anaplan import (gzip chunks, header checked)."""

from __future__ import annotations

from typing import Any

from d365_anaplan.steps.anaplan_tasks import upload
from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.handler import StepEvent, StepOutput, step
from d365_anaplan.steps.lease import LeaseRef


class UploadEvent(StepEvent):
    lease: LeaseRef  # $.lease: renewed and verified before anything is sent to Anaplan
    step: str
    action: str
    key: str


class UploadOutput(StepOutput):
    uploaded: bool


@step(UploadEvent, UploadOutput)
def lambda_handler(ctx: StepContext, ev: UploadEvent) -> dict[str, Any]:
    return upload(ctx, ev.step, ev.action, ev.key, lease=ev.lease, dry_run=ev.dry_run)


EVENT_MODEL = UploadEvent  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
OUTPUT_MODEL = UploadOutput  # what lambda_handler returns at least (tests/contract/test_asl_pinned.py)
