"""The model calendar the Anaplan sandbox serves (issue 12, item 7): ``GET …/models/{id}/modelCalendar``.

As the integration API answers it (integration-openapi ``ModelCalendar``; anaplan-shapes.md §3): the current
fiscal year with its label and first and last day, ``{"fiscalYear": {"year": "FY27", "startDate":
"2026-07-01", "endDate": "2027-06-30"}}``. The fiscal year starts in ``fiscal_start_month``; its two-character
label names the year of its last month (``label_by="end"``, Anaplan's default) or of its first month
(``"start"``). A calendar without a fiscal year (Weeks: General) answers an empty ``modelCalendar``. The call
needs the Workspace Administrator role (OpenAPI "Minimum role"); a sandbox user that is not one gets 403.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal


@dataclass
class ModelCalendar:
    fiscal_start_month: int = 1
    label_by: Literal["end", "start"] = "end"
    has_fiscal_year: bool = True  # False: "Weeks: General" (no fiscal year)
    administrators: set[str] | None = None  # users with Workspace Administrator; None = every user
    today: date | None = None  # the model's "current" date (default: the clock's)


def fiscal_year(cal: ModelCalendar, today: date) -> dict[str, str]:
    """The fiscal year holding ``today``: label, first and last day."""
    start_year = today.year if today.month >= cal.fiscal_start_month else today.year - 1
    start = date(start_year, cal.fiscal_start_month, 1)
    end_month = (cal.fiscal_start_month - 2) % 12 + 1
    end_year = start_year + (1 if cal.fiscal_start_month != 1 else 0)
    following = date(end_year + (end_month == 12), end_month % 12 + 1, 1)
    end = date.fromordinal(following.toordinal() - 1)
    named = end.year if cal.label_by == "end" else start.year
    return {"year": f"FY{named % 100:02d}", "startDate": start.isoformat(), "endDate": end.isoformat()}


def model_calendar(
    cal: ModelCalendar, user: str | None, clock: Any = time.time
) -> tuple[int, dict[str, Any]]:
    """Status and payload (``modelCalendar``) of the call for ``user``."""
    if cal.administrators is not None and user not in cal.administrators:
        return 403, {}
    if not cal.has_fiscal_year:
        return 200, {"modelCalendar": {}}
    today = cal.today or datetime.fromtimestamp(clock(), UTC).date()
    return 200, {"modelCalendar": {"fiscalYear": fiscal_year(cal, today)}}
