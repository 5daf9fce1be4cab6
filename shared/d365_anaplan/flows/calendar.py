"""Close calendar: which month periods are due, manual period ranges and fiscal-year arithmetic.

A *period* is a calendar month, represented by the :class:`~datetime.date` of its first day.

Due rule: the actuals of month M are due from business day N after M's month end, counted in the
connection's IANA time zone (``CloseCalendar.timezone``): day 1 is the first business day of the next month,
where business days are Monday to Friday minus ``CloseCalendar.holidays``. From that local day on (00:00
local time) the period is due.

Fiscal years are named by the calendar year in which they **end**: with ``fiscal_year_start_month=7``,
July 2024 - June 2025 is FY2025; with start month 1 the fiscal year is the calendar year. Quarters count
from the fiscal year's first month (Q1 = months 1-3 of the fiscal year).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from d365_anaplan.config import CloseCalendar
from d365_anaplan.errors import BadInputData, ConfigError

_PERIOD = re.compile(r"([0-9]{4})-([0-9]{2})")
MAX_RANGE_MONTHS = 120


# --- month arithmetic ---------------------------------------------------------------------------------------


def month_start(d: date) -> date:
    """The period (first day of the month) that ``d`` falls in."""
    return date(d.year, d.month, 1)


def add_months(period: date, months: int) -> date:
    """The period ``months`` after (or before, if negative) the period of ``period``."""
    index = period.year * 12 + (period.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


def month_end(period: date) -> date:
    """Last day of the month of ``period``."""
    return add_months(period, 1) - timedelta(days=1)


def months_between(first: date, last: date) -> int:
    """Number of months from ``first``'s month to ``last``'s month (0 when the same month)."""
    return (last.year - first.year) * 12 + (last.month - first.month)


def iter_periods(first: date, last: date) -> list[date]:
    """Every period from ``first`` to ``last`` inclusive (empty when ``last`` is before ``first``)."""
    start = month_start(first)
    return [add_months(start, i) for i in range(months_between(start, last) + 1)]


def period_key(period: date) -> str:
    """``YYYY-MM`` text of a period (the form used in keys, events and the ledger)."""
    return f"{period.year:04d}-{period.month:02d}"


# --- manual ranges ------------------------------------------------------------------------------------------


def parse_period(text: str, *, field: str = "period") -> date:
    """Parse ``YYYY-MM`` (e.g. ``"2025-01"``) into the period's first day.

    Raises BadInputData naming the field and the value for anything else (``2025-1``, ``2025-13``,
    ``01/2025``, empty).
    """
    match = _PERIOD.fullmatch(text.strip())
    if match is None:
        raise BadInputData(f"{field}: {text!r} is not a period; expected YYYY-MM, e.g. 2025-01")
    year, month = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12:
        raise BadInputData(f"{field}: {text!r} has month {month:02d}; months are 01 to 12")
    if year < 1900:
        raise BadInputData(f"{field}: {text!r} has year {year}; expected a year from 1900")
    return date(year, month, 1)


def period_range(first: str | date, last: str | date, *, max_months: int = MAX_RANGE_MONTHS) -> list[date]:
    """Every period from ``first`` to ``last`` inclusive; each bound is ``YYYY-MM`` text or a date.

    Raises BadInputData when a bound does not parse, when ``first`` is after ``last``, or when the range
    is longer than ``max_months`` months.
    """
    start = parse_period(first, field="from") if isinstance(first, str) else month_start(first)
    end = parse_period(last, field="to") if isinstance(last, str) else month_start(last)
    if start > end:
        raise BadInputData(f"period range: from {period_key(start)} is after to {period_key(end)}")
    count = months_between(start, end) + 1
    if count > max_months:
        raise BadInputData(
            f"period range: {period_key(start)}..{period_key(end)} spans {count} months; at most {max_months}"
        )
    return iter_periods(start, end)


# --- fiscal year --------------------------------------------------------------------------------------------


def _check_start_month(fiscal_year_start_month: int) -> None:
    if not 1 <= fiscal_year_start_month <= 12:
        raise ValueError(f"fiscal_year_start_month must be 1..12, got {fiscal_year_start_month}")


def fiscal_year(period: date, fiscal_year_start_month: int = 1) -> int:
    """Fiscal year of a month, named by the calendar year in which the fiscal year ends."""
    _check_start_month(fiscal_year_start_month)
    if fiscal_year_start_month == 1:
        return period.year
    return period.year + 1 if period.month >= fiscal_year_start_month else period.year


def fiscal_month(period: date, fiscal_year_start_month: int = 1) -> int:
    """Position of the month in its fiscal year, 1..12."""
    _check_start_month(fiscal_year_start_month)
    return (period.month - fiscal_year_start_month) % 12 + 1


def fiscal_quarter(period: date, fiscal_year_start_month: int = 1) -> int:
    """Fiscal quarter of a month, 1..4."""
    return (fiscal_month(period, fiscal_year_start_month) - 1) // 3 + 1


def fiscal_year_start(fy: int, fiscal_year_start_month: int = 1) -> date:
    """First period of fiscal year ``fy``."""
    _check_start_month(fiscal_year_start_month)
    if fiscal_year_start_month == 1:
        return date(fy, 1, 1)
    return date(fy - 1, fiscal_year_start_month, 1)


def fiscal_year_periods(fy: int, fiscal_year_start_month: int = 1) -> list[date]:
    """The twelve periods of fiscal year ``fy``."""
    start = fiscal_year_start(fy, fiscal_year_start_month)
    return [add_months(start, i) for i in range(12)]


def period_from_fiscal(fy: int, month_of_year: int, fiscal_year_start_month: int = 1) -> date:
    """The calendar period of calendar month ``month_of_year`` (1..12) inside fiscal year ``fy``."""
    start = fiscal_year_start(fy, fiscal_year_start_month)
    return add_months(start, (month_of_year - fiscal_year_start_month) % 12)


# --- close calendar -----------------------------------------------------------------------------------------


def local_today(cal: CloseCalendar, now: datetime) -> date:
    """The calendar date of ``now`` (an aware datetime) in the connection's time zone."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise BadInputData(f"close calendar: now={now.isoformat()} has no time zone; pass an aware datetime")
    return now.astimezone(ZoneInfo(cal.timezone)).date()


def is_business_day(d: date, cal: CloseCalendar) -> bool:
    """Monday-Friday and not a configured holiday."""
    return d.weekday() < 5 and d not in set(cal.holidays)


def due_date(period: date, cal: CloseCalendar) -> date:
    """The local date from which the actuals of ``period`` are due (business day N after month end)."""
    holidays = set(cal.holidays)
    day = month_end(month_start(period))
    found = 0
    while found < cal.business_day:
        day += timedelta(days=1)
        if day.weekday() < 5 and day not in holidays:
            found += 1
    return day


def current_period(cal: CloseCalendar, now: datetime) -> date:
    """The (still open) month that ``now`` falls in, in the connection's time zone."""
    return month_start(local_today(cal, now))


def latest_due_period(cal: CloseCalendar, now: datetime) -> date:
    """The latest closed month whose due day has come."""
    today = local_today(cal, now)
    candidate = add_months(month_start(today), -1)
    while due_date(candidate, cal) > today:
        candidate = add_months(candidate, -1)
    return candidate


def first_calendar_period(cal: CloseCalendar) -> date | None:
    """``CloseCalendar.first_period`` as a date (ConfigError naming the setting when it does not parse)."""
    if cal.first_period is None:
        return None
    try:
        return parse_period(cal.first_period, field="close_calendar.first_period")
    except BadInputData as exc:
        raise ConfigError([str(exc)]) from None


def periods_due(
    cal: CloseCalendar, now: datetime, last_loaded: date | None, *, reload_months: int = 0
) -> list[date]:
    """Months after the watermark ``last_loaded`` up to the latest closed month whose due day has come.

    ``last_loaded`` is the last period already loaded (any day of that month). Without a watermark the
    run starts at ``first_period`` when configured, else it loads only the latest due month. Periods before
    ``first_period`` are never returned. An empty list means nothing is due (the handler raises
    :class:`~d365_anaplan.errors.PeriodNotDue`).

    ``reload_months`` N > 0: the last N months already loaded (up to the watermark) are returned again, so
    postings that arrived in closed months after they were loaded reach Anaplan on the next scheduled run.
    """
    latest = latest_due_period(cal, now)
    first = first_calendar_period(cal)
    if last_loaded is not None:
        start = add_months(month_start(last_loaded), 1)
    elif first is not None:
        start = first
    else:
        start = latest
    if last_loaded is not None and reload_months > 0:
        reload_start = add_months(min(month_start(last_loaded), latest), 1 - reload_months)
        start = min(start, reload_start)
    if first is not None and start < first:
        start = first
    return iter_periods(start, latest) if start <= latest else []


def fiscal_horizon(cal: CloseCalendar, now: datetime, years_ahead: int = 2) -> date:
    """Last period of the fiscal year ``years_ahead`` years after the current one (the plans horizon)."""
    current = current_period(cal, now)
    fy = fiscal_year(current, cal.fiscal_year_start_month) + years_ahead
    return add_months(fiscal_year_start(fy, cal.fiscal_year_start_month), 11)


def check_in_fiscal_calendar(
    period: date,
    cal: CloseCalendar,
    *,
    latest: date | None = None,
    what: str = "period",
    value: str | None = None,
) -> date:
    """Return ``period`` (as a month start) if the fiscal calendar knows it, else raise BadInputData.

    Outside the calendar: before ``CloseCalendar.first_period``, or after ``latest``. ``latest`` is the
    caller's notion of "the future": actuals pass :func:`current_period` (nothing can be posted in a later
    month), plans pass :func:`fiscal_horizon` (budgets are for future months, but not decades ahead).
    ``what`` names the record and field, ``value`` the text as the user wrote it, for the message.
    """
    p = month_start(period)
    shown = value if value is not None else period_key(p)
    first = first_calendar_period(cal)
    if first is not None and p < first:
        raise BadInputData(
            f"{what} {shown!r} is before the first period of the fiscal calendar ({period_key(first)})"
        )
    if latest is not None and p > month_start(latest):
        raise BadInputData(f"{what} {shown!r} is in the future (after {period_key(month_start(latest))})")
    return p
