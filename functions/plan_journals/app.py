"""Validate the downloaded plan exports, align them with F&O, and stage the journals' line batches."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.handler import StepEvent, StepOutput, step
from d365_anaplan.steps.plans import plan_journals


class DownloadedExport(BaseModel):
    action: str
    file_key: str


class PlanEvent(StepEvent):
    exports: list[DownloadedExport] = Field(min_length=1)
    periods: list[str] = Field(min_length=1)
    accept_drift: bool = False  # the run accepts changed F&O metadata and records the new fingerprint
    accept_failed_reconcile: bool = False  # write although the last plans run failed ReconcilePlan


class PlanOutput(StepOutput):
    batches: list[dict[str, Any]]
    totals_key: str
    journals: int
    rows: int
    differences: dict[str, Any]


@step(PlanEvent, PlanOutput)
def lambda_handler(ctx: StepContext, ev: PlanEvent) -> dict[str, Any]:
    # a dry run writes nothing: after a failed ReconcilePlan it shows the differences a rerun would write
    accept_failed = ev.accept_failed_reconcile or ev.dry_run
    return plan_journals(
        ctx, [e.model_dump() for e in ev.exports], ev.periods, ev.accept_drift, accept_failed
    )


EVENT_MODEL = PlanEvent  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
OUTPUT_MODEL = PlanOutput  # what lambda_handler returns at least (tests/contract/test_asl_pinned.py)
