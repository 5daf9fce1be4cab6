"""Reconcile what Anaplan holds with what F&O posted (row counts; per account and period with a read-back)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.handler import StepEvent, StepOutput, step
from d365_anaplan.steps.reconcile_actuals import reconcile_actuals


class ReconcileEvent(StepEvent):
    totals_key: str
    rows: int = Field(ge=0)
    counts: dict[str, Any] = Field(default_factory=dict)
    readback_key: str | None = None
    dump_key: str | None = None  # the actuals import's failure dump, when Anaplan gave one
    periods: list[str] = Field(min_length=1)


class ReconcileOutput(StepOutput):
    ok: bool
    fo_total: str | None
    compared: int


@step(ReconcileEvent, ReconcileOutput)
def lambda_handler(ctx: StepContext, ev: ReconcileEvent) -> dict[str, Any]:
    return reconcile_actuals(ctx, ev.totals_key, ev.counts, ev.rows, ev.readback_key, ev.periods, ev.dump_key)


EVENT_MODEL = ReconcileEvent  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
OUTPUT_MODEL = ReconcileOutput  # what lambda_handler returns at least (tests/contract/test_asl_pinned.py)
