"""The model's fiscal calendar against the configuration (issue 12, item 4: period labels vs the model's time).

Anaplan's ``modelCalendar`` names the current fiscal year and its first and last day
(``{"year": "FY27", "startDate": "2026-07-01", "endDate": "2027-06-30"}``; anaplan-shapes.md §3: the
start month is configurable and the two-character label names the year of the start or of the end month).
The connector's fiscal years come from ``close_calendar.fiscal_year_start_month`` and are named by the
calendar year they end in (``{fy}``/``{fyy}`` in a period format). Two ways they can disagree, both refused
with one line each:

* the start month differs: fiscal quarters, ``{fy}`` labels and the plan horizon (current and next fiscal
  year) would be computed for another year than the model's;
* a period format with a fiscal token (``{fy}``, ``{fyy}``, ``{q}``) while the model names fiscal years by
  their first month's year: every label would name the next year.
"""

from __future__ import annotations

from datetime import date

from d365_anaplan.flows.calendar import fiscal_year

FISCAL_TOKENS = ("{fy}", "{fyy}", "{q}")


def calendar_problems(
    label: str, start: date, end: date, *, start_month: int, formats: dict[str, str]
) -> list[str]:
    """What disagrees between the model's fiscal year (``label`` from ``start`` to ``end``) and the
    configuration (``start_month``; ``formats``: setting -> period format)."""
    problems = []
    model = f"the model's fiscal year {label} runs {start.isoformat()}..{end.isoformat()} (starts in month {start.month})"
    if start.month != start_month:
        problems.append(
            f"{model}, but close_calendar.fiscal_year_start_month is {start_month}: fiscal years, quarters and "
            "the plan horizon would not be the model's"
        )
        return problems
    digits = label[2:] if label.upper().startswith("FY") else ""
    ours = fiscal_year(start, start_month)
    if digits.isdigit() and int(digits) != ours % 100:
        fiscal = [
            f"{setting} {fmt!r}" for setting, fmt in formats.items() if any(t in fmt for t in FISCAL_TOKENS)
        ]
        if fiscal:
            problems.append(
                f"{model} and is named by the year of its first month; {', '.join(fiscal)} would label it "
                f"FY{ours % 100:02d} (the connector names a fiscal year by the year it ends in)"
            )
    return problems
