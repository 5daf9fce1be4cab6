"""The close-calendar gate: which periods a run covers.

* actuals, scheduled: the months after the flow's watermark whose close is due (business day N after month
  end in the connection's time zone); nothing due ends the run as SKIPPED.
* plans, scheduled: the current fiscal year and the next (the plan horizon approved plans cover).
* manual or replay: the requested range, checked against the fiscal calendar (actuals cannot be in the
  future; plans may reach the planning horizon).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from d365_anaplan.config import CloseCalendar
from d365_anaplan.flows.calendar import (
    add_months,
    check_in_fiscal_calendar,
    current_period,
    fiscal_horizon,
    fiscal_year,
    fiscal_year_start,
    parse_period,
    period_range,
    periods_due,
)
from d365_anaplan.ledger.watermarks import Watermarks
from d365_anaplan.observability import logger
from d365_anaplan.runtime import load_connection, settings
from d365_anaplan.vocabulary import Flow


def plans_window(cal: CloseCalendar, now: datetime) -> list[date]:
    """The current fiscal year and the next, month by month."""
    fy = fiscal_year(current_period(cal, now), cal.fiscal_year_start_month)
    first = fiscal_year_start(fy, cal.fiscal_year_start_month)
    return period_range(first, add_months(first, 23))


def requested(
    cal: CloseCalendar, flow: Flow, now: datetime, first: str | None, last: str | None
) -> list[date]:
    start = parse_period(first or last or "", field="periods.from")
    end = parse_period(last or first or "", field="periods.to")
    months = period_range(start, end)
    latest = current_period(cal, now) if flow == "actuals" else fiscal_horizon(cal, now)
    for month in months:
        check_in_fiscal_calendar(month, cal, latest=latest, what="periods", value=month.strftime("%Y-%m"))
    return months


def close_gate(
    cal: CloseCalendar,
    *,
    connection: str,
    flow: Flow,
    now: datetime,
    first: str | None,
    last: str | None,
    watermarks: Watermarks,
    reload_months: int = 0,
) -> dict[str, Any]:
    if first or last:
        months, reason = requested(cal, flow, now, first, last), "requested"
    elif flow == "plans":
        months, reason = plans_window(cal, now), "plan horizon"
    else:
        mark = watermarks.get(connection, flow)
        loaded = parse_period(mark.value) if mark else None
        months = periods_due(cal, now.astimezone(UTC), loaded, reload_months=reload_months)
        new = [m for m in months if loaded is None or m > loaded]
        reason = ("due" if new else "reload of closed months") if months else "nothing due"
    labels = [m.strftime("%Y-%m") for m in months]
    return {
        "due": bool(labels),
        "reason": reason,
        "periods": labels,
        "window": {"from": labels[0], "to": labels[-1]} if labels else None,
    }


def close_gate_for(
    connection: str, flow: Flow, now: datetime, first: str | None, last: str | None
) -> dict[str, Any]:
    """The gate for a connection's configured close calendar and its ledger watermark (functions/close_gate)."""
    cfg = load_connection(connection)
    out = close_gate(
        cfg.close_calendar,
        connection=connection,
        flow=flow,
        now=now,
        first=first,
        last=last,
        watermarks=Watermarks(settings().ledger_table),
        reload_months=cfg.ledger.reload_closed_months,
    )
    logger.info("close gate", extra={"periods": out["periods"], "reason": out["reason"]})
    return out
