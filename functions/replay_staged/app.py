"""Replay: copy a past run's staged inputs into this run so it reruns without extracting again."""

from __future__ import annotations

from typing import Any, Literal

from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.handler import StepEvent, step
from d365_anaplan.steps.replay import replay_staged


class ReplayEvent(StepEvent):
    flow: Literal["actuals", "plans"]
    replay_of: str


EVENT_MODEL = ReplayEvent


@step(ReplayEvent)
def lambda_handler(ctx: StepContext, ev: ReplayEvent) -> dict[str, Any]:
    return replay_staged(ctx, ev.replay_of, ev.flow)
