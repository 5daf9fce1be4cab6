"""Close-calendar gate: which periods this run covers (see d365_anaplan.steps.gate)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from d365_anaplan.steps.gate import close_gate_for
from d365_anaplan.steps.handler import StepOutput, handler
from d365_anaplan.vocabulary import Flow, PeriodWindow


class GateEvent(BaseModel):
    connection: str
    flow: Flow = "actuals"
    trigger: str = "manual"
    now: datetime  # $$.Execution.StartTime
    periods: PeriodWindow | None = None


class GateOutput(StepOutput):
    due: bool
    reason: str
    periods: list[str]
    window: dict[str, str] | None


EVENT_MODEL = GateEvent  # what lambda_handler validates (events/ tests: tests/unit/test_events.py)
OUTPUT_MODEL = GateOutput  # what lambda_handler returns at least (tests/contract/test_asl_pinned.py)


@handler(GateEvent, GateOutput)
def lambda_handler(ev: GateEvent) -> dict[str, Any]:
    window = ev.periods or PeriodWindow()
    return close_gate_for(ev.connection, ev.flow, ev.now, window.from_, window.to)
