"""The GL extraction plan: company x month items, inline or as an S3 manifest for a Distributed Map."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.fanout import prepare_extract
from d365_anaplan.steps.handler import StepEvent, StepOutput, step


class PrepareExtractEvent(StepEvent):
    periods: list[str] = Field(min_length=1)


class PrepareExtractOutput(StepOutput):
    count: int
    distributed: bool
    max_concurrency: int
    bucket: str
    manifest: str | None
    items: list[dict[str, str]]


@step(PrepareExtractEvent, PrepareExtractOutput)
def lambda_handler(ctx: StepContext, ev: PrepareExtractEvent) -> dict[str, Any]:
    return prepare_extract(ctx, ev.periods)


EVENT_MODEL = PrepareExtractEvent  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
OUTPUT_MODEL = (
    PrepareExtractOutput  # what lambda_handler returns at least (tests/contract/test_asl_pinned.py)
)
