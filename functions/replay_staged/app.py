"""Replay: copy a past run's staged inputs into this run so it reruns without extracting again."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.handler import StagedImport, StepEvent, StepOutput, step
from d365_anaplan.steps.replay import replay_staged
from d365_anaplan.vocabulary import Flow


class ReplayEvent(StepEvent):
    flow: Flow
    replay_of: str


class StagedExport(BaseModel):
    action: str
    file_key: str


class ReplayStagedOutput(StepOutput):
    replay_of: str
    files: int
    imports: list[StagedImport] | None = None  # actuals
    caveats: list[str] | None = None  # actuals
    exports: list[StagedExport] | None = None  # plans


@step(ReplayEvent, ReplayStagedOutput)
def lambda_handler(ctx: StepContext, ev: ReplayEvent) -> dict[str, Any]:
    return replay_staged(ctx, ev.replay_of, ev.flow)


EVENT_MODEL = ReplayEvent
OUTPUT_MODEL = ReplayStagedOutput  # what lambda_handler returns at least (tests/contract/test_asl_pinned.py)
