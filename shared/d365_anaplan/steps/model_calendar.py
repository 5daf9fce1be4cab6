"""The pre-check's model-calendar verdict (issue 12, item 4): the model's fiscal year (``GET …/modelCalendar``)
against ``close_calendar.fiscal_year_start_month`` and the period formats (``flows/model_calendar.py``).

The call needs the Workspace Administrator role (integration OpenAPI "Minimum role"); a user without it gets
403, and a calendar without a fiscal year (Weeks: General) answers none: then the verdict passes as "not
verified" rather than failing a run for what the integration user may not read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from d365_anaplan.errors import AnaplanAuthError, AnaplanNotFound, BadInputData
from d365_anaplan.flows.model_calendar import calendar_problems

if TYPE_CHECKING:
    from d365_anaplan.anaplan.client import AnaplanClient
    from d365_anaplan.config import ConnectionConfig
    from d365_anaplan.steps.preflight import Finding

NAME = "model calendar (fiscal year)"
REMEDY = (
    "set close_calendar.fiscal_year_start_month to the month the model's fiscal year starts in, and use period "
    "formats whose fiscal tokens ({fy}, {fyy}, {q}) name the year as the model does (or calendar tokens "
    "{yyyy}/{yy}), or ask the model builder to change the calendar (Model settings > Calendar)"
)


def formats(cfg: ConnectionConfig) -> dict[str, str]:
    """Every period format the flows write or read: setting -> format."""
    m = cfg.mapping
    out = {"mapping.actuals.period_format": m.actuals.period_format}
    for i, export in enumerate(m.plans.exports):
        if export.period_format:
            out[f"mapping.plans.exports[{i}].period_format"] = export.period_format
    return out


def calendar_finding(cfg: ConnectionConfig, client: AnaplanClient) -> Finding:
    from d365_anaplan.steps.preflight import Finding

    start_month = cfg.close_calendar.fiscal_year_start_month
    try:
        fy = client.fiscal_year()
    except (AnaplanAuthError, AnaplanNotFound) as exc:
        return Finding(NAME, True, f"not verified ({exc}; reading the model calendar needs the Workspace "
                       "Administrator role)")  # fmt: skip
    if fy is None:
        return Finding(
            NAME, True, "not verified: the model calendar has no fiscal year (e.g. Weeks: General)"
        )
    problems = calendar_problems(fy.year, fy.start_date, fy.end_date, start_month=start_month,
                                 formats=formats(cfg))  # fmt: skip
    if problems:
        return Finding(NAME, False, "; ".join(problems), REMEDY, BadInputData)
    return Finding(NAME, True, f"{fy.year} {fy.start_date}..{fy.end_date}: starts in month {start_month}, as "
                   "close_calendar.fiscal_year_start_month says")  # fmt: skip
