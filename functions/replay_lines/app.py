"""Replay the journal lines F&O rejected in a past plans run, from the run ledger alone."""

from __future__ import annotations

from typing import Any

from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.handler import StepEvent, StepOutput, step
from d365_anaplan.steps.replay import replay_failed_lines


class ReplayLinesEvent(StepEvent):
    replay_of: str


class ReplayLinesOutput(StepOutput):
    lines: int
    written: int
    journals: int


@step(ReplayLinesEvent, ReplayLinesOutput)
def lambda_handler(ctx: StepContext, ev: ReplayLinesEvent) -> dict[str, Any]:
    out = replay_failed_lines(ctx, ev.replay_of, dry_run=ev.dry_run)
    return {k: out[k] for k in ("replay_of", "lines", "written")} | {"journals": len(out["journals"])}


EVENT_MODEL = ReplayLinesEvent
OUTPUT_MODEL = ReplayLinesOutput  # what lambda_handler returns at least (tests/contract/test_asl_pinned.py)
