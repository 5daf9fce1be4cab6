"""Close-calendar gate: which periods this run covers (see d365_anaplan.steps.gate)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from d365_anaplan.ledger.watermarks import Watermarks
from d365_anaplan.observability import logger, metrics, tracer
from d365_anaplan.runtime import load_connection, settings
from d365_anaplan.steps.gate import close_gate
from d365_anaplan.steps.handler import StepOutput, checked


class PeriodWindow(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str | None = Field(default=None, alias="from")
    to: str | None = None


class GateEvent(BaseModel):
    connection: str
    flow: Literal["actuals", "plans"] = "actuals"
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


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ev = GateEvent.model_validate(event)
    window = ev.periods or PeriodWindow()
    cfg = load_connection(ev.connection)
    out = close_gate(
        cfg.close_calendar,
        connection=ev.connection,
        flow=ev.flow,
        now=ev.now,
        first=window.from_,
        last=window.to,
        watermarks=Watermarks(settings().ledger_table),
        reload_months=cfg.ledger.reload_closed_months,
    )
    logger.info("close gate", extra={"periods": out["periods"], "reason": out["reason"]})
    return checked(GateOutput, out)
