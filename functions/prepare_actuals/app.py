"""Transform staged GL to the actuals import's columns, check alignment with the Anaplan lists, write it."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.handler import StepEvent, StepOutput, step
from d365_anaplan.steps.lease import LeaseRef
from d365_anaplan.steps.prepare_actuals import prepare_actuals


class PrepareEvent(StepEvent):
    lease: LeaseRef  # $.lease: it reads the Anaplan lists and records the held cells under the lease
    periods: list[str] = Field(min_length=1)


class PrepareOutput(StepOutput):
    action: str
    key: str
    rows: int
    lines: int
    total: str | None  # None when the file holds more than one currency
    totals_key: str
    alignment_key: str


@step(PrepareEvent, PrepareOutput)
def lambda_handler(ctx: StepContext, ev: PrepareEvent) -> dict[str, Any]:
    return prepare_actuals(ctx, ev.periods, lease=ev.lease, dry_run=ev.dry_run)


EVENT_MODEL = PrepareEvent  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
OUTPUT_MODEL = PrepareOutput  # what lambda_handler returns at least (tests/contract/test_asl_pinned.py)
