"""Read the written journals back from F&O and reconcile them with the approved plan totals."""

from __future__ import annotations

from typing import Any

from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.handler import StepEvent, StepOutput, step
from d365_anaplan.steps.plans import reconcile_plan


class ReconcileEvent(StepEvent):
    totals_key: str
    written: list[dict[str, Any]]


class ReconcileOutput(StepOutput):
    ok: bool
    by_currency: dict[str, str]  # currency code -> approved total (currencies are never added)
    pending_completion: int


@step(ReconcileEvent, ReconcileOutput)
def lambda_handler(ctx: StepContext, ev: ReconcileEvent) -> dict[str, Any]:
    return reconcile_plan(ctx, ev.totals_key, ev.written)


EVENT_MODEL = ReconcileEvent  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
OUTPUT_MODEL = ReconcileOutput  # what lambda_handler returns at least (tests/contract/test_asl_pinned.py)
