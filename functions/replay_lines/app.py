"""Replay the journal lines F&O rejected in a past plans run, from the run ledger alone."""

from __future__ import annotations

from typing import Any

from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.handler import StepEvent, step
from d365_anaplan.steps.replay import replay_failed_lines


class ReplayLinesEvent(StepEvent):
    replay_of: str


EVENT_MODEL = ReplayLinesEvent


@step(ReplayLinesEvent)
def lambda_handler(ctx: StepContext, ev: ReplayLinesEvent) -> dict[str, Any]:
    out = replay_failed_lines(ctx, ev.replay_of, dry_run=ev.dry_run)
    return {k: out[k] for k in ("replay_of", "lines", "written")} | {"journals": len(out["journals"])}
