"""One resumable slice of one extraction item (a company's posted GL in one month of its window), staged as
JSON lines (the ASL loops while ``more``)."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import Field

from d365_anaplan.observability import metrics
from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.gl_extract import extract_gl
from d365_anaplan.steps.handler import StepEvent, StepOutput, step


class ExtractGLEvent(StepEvent):
    company: str
    slice: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}(\.\.[0-9]{4}-[0-9]{2})?$")  # a month, or a whole window
    start: date
    end: date
    part: int = Field(default=0, ge=0)
    continuation: str | None = None


class ExtractGLOutput(StepOutput):
    part: int
    continuation: str | None
    more: bool
    lines: int
    pending: bool  # a package export is running: Wait ``wait`` seconds, then call again
    wait: int


@step(ExtractGLEvent, ExtractGLOutput)
def lambda_handler(ctx: StepContext, ev: ExtractGLEvent) -> dict[str, Any]:
    out = extract_gl(ctx, ev.company, (ev.start, ev.end), ev.slice, ev.part, ev.continuation)
    metrics.add_metric(name="GLLinesStaged", unit="Count", value=out["lines"])
    return out


EVENT_MODEL = ExtractGLEvent  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
OUTPUT_MODEL = ExtractGLOutput  # what lambda_handler returns at least (tests/contract/test_asl_pinned.py)
