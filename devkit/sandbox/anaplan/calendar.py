"""``GET …/models/{id}/modelCalendar`` of the Anaplan sandbox (integration OpenAPI, "Get current fiscal year").

The answer is the model's current fiscal year: its label (``FY25``, named by the year it ends in, Anaplan's
default of aligning the label with the end month) and its first and last day. The seed's
``fiscal_year_start_month`` decides where the year starts; ``current_year`` (the calendar year of "today"
in the model) which year is current.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any


def fiscal_year_body(start_month: int, today: date) -> dict[str, Any]:
    """``{"fiscalYear": {"year", "startDate", "endDate"}}`` of the fiscal year that holds ``today``."""
    first_year = today.year if today.month >= start_month else today.year - 1
    start = date(first_year, start_month, 1)
    end = date(first_year + 1, start_month, 1) - timedelta(days=1)
    return {"fiscalYear": {"year": f"FY{end.year % 100:02d}", "startDate": start.isoformat(),
                           "endDate": end.isoformat()}}  # fmt: skip
