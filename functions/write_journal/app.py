"""Write one batch of plan journal lines to F&O (journal created or resumed by its key; lines by theirs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from d365_anaplan.observability import metrics
from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.handler import StepEvent, StepOutput, step
from d365_anaplan.steps.plans import write_journal_batch


class Batch(BaseModel):
    company: str
    journal_key: str
    journal_name: str
    description: str | None = None
    budget_model: str | None = None
    budget_code: str | None = None
    key: str
    lines: int = Field(ge=1)
    transport: Literal["odata", "package"] = "odata"  # package: a "Budget account entries" import


class WriteEvent(StepEvent):
    batch: Batch
    continuation: str | None = None  # package import still running (from the previous call)


class WriteOutput(StepOutput):
    journal_key: str
    company: str
    journal_batch_number: str | None
    written: int
    skipped: int
    rejected: int
    pending: bool  # a package import is running: Wait ``wait`` seconds, then call again
    wait: int
    continuation: str | None


@step(WriteEvent, WriteOutput)
def lambda_handler(ctx: StepContext, ev: WriteEvent) -> dict[str, Any]:
    out = write_journal_batch(ctx, ev.batch.model_dump(), dry_run=ev.dry_run, continuation=ev.continuation)
    metrics.add_metric(name="JournalLinesWritten", unit="Count", value=out["written"])
    return out


EVENT_MODEL = WriteEvent  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
OUTPUT_MODEL = WriteOutput  # what lambda_handler returns at least (tests/contract/test_asl_pinned.py)
