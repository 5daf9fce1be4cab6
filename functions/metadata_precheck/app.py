"""The Anaplan metadata pre-check of a flow: imports vs the files the run writes, exports vs what plans read,
lists. Runs before anything is extracted, so a misnamed import or a missing column fails in seconds."""

from __future__ import annotations

from typing import Any

from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.handler import StepEvent, StepOutput, step
from d365_anaplan.steps.preflight import metadata_precheck
from d365_anaplan.vocabulary import Flow


class PrecheckEvent(StepEvent):
    flow: Flow
    accept_drift: bool = False  # the run accepts changed metadata and records the new fingerprint
    periods: list[str] | None = (
        None  # the close gate's periods (YYYY-MM): checked against the model's time range
    )


class PrecheckOutput(StepOutput):
    checked: int  # metadata verdicts that passed (any failure raises with its remedy)


@step(PrecheckEvent, PrecheckOutput)
def lambda_handler(ctx: StepContext, ev: PrecheckEvent) -> dict[str, Any]:
    return metadata_precheck(ctx, ev.flow, ev.accept_drift, ev.periods)


EVENT_MODEL = PrecheckEvent  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
OUTPUT_MODEL = PrecheckOutput  # what it returns (the ASL reads it: tests/contract/test_asl_pinned.py)
