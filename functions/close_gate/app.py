"""Close-calendar gate: which periods this run covers.

A scheduled run proceeds only when a month is due under the connection's close calendar (business day N
after month end, in the connection's time zone) and not yet loaded (the flow's watermark). A manual or
replay start may name a period range, which is checked against the fiscal calendar instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from d365_anaplan.flows.calendar import (
    check_in_fiscal_calendar,
    current_period,
    fiscal_horizon,
    parse_period,
    period_range,
    periods_due,
)
from d365_anaplan.ledger.watermarks import Watermarks
from d365_anaplan.observability import logger, metrics, tracer
from d365_anaplan.runtime import load_connection, settings


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


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ev = GateEvent.model_validate(event)
    cfg = load_connection(ev.connection)
    cal = cfg.close_calendar
    if ev.periods is not None and (ev.periods.from_ or ev.periods.to):
        start = parse_period(ev.periods.from_ or ev.periods.to or "", field="periods.from")
        end = parse_period(ev.periods.to or ev.periods.from_ or "", field="periods.to")
        months = period_range(start, end)
        # actuals cannot lie in the future; plans may, up to the planning horizon
        latest = current_period(cal, ev.now) if ev.flow == "actuals" else fiscal_horizon(cal, ev.now)
        for month in months:
            check_in_fiscal_calendar(month, cal, latest=latest, what="periods", value=month.strftime("%Y-%m"))
        reason = "requested"
    else:
        mark = Watermarks(settings().ledger_table).get(ev.connection, ev.flow)
        last = parse_period(mark.value) if mark else None
        months = periods_due(cal, ev.now.astimezone(UTC), last)
        reason = "due" if months else "nothing due"
    labels = [m.strftime("%Y-%m") for m in months]
    logger.info("close gate", extra={"periods": labels, "reason": reason})
    return {
        "due": bool(labels),
        "reason": reason,
        "periods": labels,
        "window": {"from": labels[0], "to": labels[-1]} if labels else None,
    }
