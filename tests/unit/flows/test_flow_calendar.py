from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from d365_anaplan.config import CloseCalendar
from d365_anaplan.errors import BadInputData, ConfigError
from d365_anaplan.flows import calendar as c


def test_month_arithmetic() -> None:
    assert c.add_months(date(2024, 11, 1), 3) == date(2025, 2, 1)
    assert c.add_months(date(2025, 1, 1), -1) == date(2024, 12, 1)
    assert c.add_months(date(2025, 1, 31), 0) == date(2025, 1, 1)
    assert c.month_end(date(2024, 2, 1)) == date(2024, 2, 29)
    assert c.month_end(date(2025, 12, 5)) == date(2025, 12, 31)
    assert c.iter_periods(date(2024, 11, 15), date(2025, 2, 3)) == [
        date(2024, 11, 1),
        date(2024, 12, 1),
        date(2025, 1, 1),
        date(2025, 2, 1),
    ]
    assert c.iter_periods(date(2025, 2, 1), date(2025, 1, 1)) == []


def test_parse_period_ok() -> None:
    assert c.parse_period("2025-01") == date(2025, 1, 1)
    assert c.parse_period(" 1999-12 ") == date(1999, 12, 1)


@pytest.mark.parametrize(
    "bad", ["2025-1", "2025-13", "2025-00", "01/2025", "", "2025-01-01", "25-01", "abcd-ef"]
)
def test_parse_period_bad_names_value(bad: str) -> None:
    with pytest.raises(BadInputData) as err:
        c.parse_period(bad, field="from")
    assert repr(bad) in str(err.value)
    assert "from" in str(err.value)


def test_period_range() -> None:
    assert c.period_range("2024-11", "2025-01") == [date(2024, 11, 1), date(2024, 12, 1), date(2025, 1, 1)]
    assert c.period_range(date(2025, 3, 9), "2025-03") == [date(2025, 3, 1)]
    with pytest.raises(BadInputData, match="after"):
        c.period_range("2025-02", "2025-01")
    with pytest.raises(BadInputData, match="spans 13 months"):
        c.period_range("2024-01", "2025-01", max_months=12)
    with pytest.raises(BadInputData, match="'2025-1x'"):
        c.period_range("2025-01", "2025-1x")


@pytest.mark.parametrize(
    ("period", "start", "fy", "q", "fm"),
    [
        (date(2025, 1, 1), 1, 2025, 1, 1),
        (date(2025, 12, 1), 1, 2025, 4, 12),
        (date(2024, 7, 1), 7, 2025, 1, 1),
        (date(2025, 6, 1), 7, 2025, 4, 12),
        (date(2025, 3, 1), 7, 2025, 3, 9),
        (date(2024, 10, 1), 10, 2025, 1, 1),
        (date(2024, 9, 1), 10, 2024, 4, 12),
        (date(2025, 4, 1), 4, 2026, 1, 1),
    ],
)
def test_fiscal_helpers(period: date, start: int, fy: int, q: int, fm: int) -> None:
    assert c.fiscal_year(period, start) == fy
    assert c.fiscal_quarter(period, start) == q
    assert c.fiscal_month(period, start) == fm
    assert period in c.fiscal_year_periods(fy, start)
    assert c.period_from_fiscal(fy, period.month, start) == period


def test_fiscal_year_start() -> None:
    assert c.fiscal_year_start(2025, 7) == date(2024, 7, 1)
    assert c.fiscal_year_start(2025, 1) == date(2025, 1, 1)
    with pytest.raises(ValueError, match=r"1\.\.12"):
        c.fiscal_year(date(2025, 1, 1), 13)


def test_due_date_skips_weekend_and_holidays() -> None:
    # January 2025 ends on Friday 31st. Business days after: Mon 3 Feb (1), Tue 4 (2), Wed 5 (3).
    cal = CloseCalendar(business_day=3)
    assert c.due_date(date(2025, 1, 1), cal) == date(2025, 2, 5)
    # With Monday 3 Feb a holiday, day 3 moves to Thursday 6 Feb.
    cal_h = CloseCalendar(business_day=3, holidays=[date(2025, 2, 3)])
    assert c.due_date(date(2025, 1, 1), cal_h) == date(2025, 2, 6)
    # May 2025 ends on Saturday; 1st business day is Monday 2 June.
    assert c.due_date(date(2025, 5, 1), CloseCalendar(business_day=1)) == date(2025, 6, 2)
    # December 2024: 1 Jan 2025 holiday (Wed) -> Thu 2 (1), Fri 3 (2), Mon 6 (3).
    cal_ny = CloseCalendar(business_day=3, holidays=[date(2025, 1, 1)])
    assert c.due_date(date(2024, 12, 1), cal_ny) == date(2025, 1, 6)


def test_periods_due_uses_local_time_zone() -> None:
    cal = CloseCalendar(timezone="Asia/Tokyo", business_day=3)
    # Due day for Jan 2025 is Wed 5 Feb (local). 2025-02-04T15:30Z is 00:30 on 5 Feb in Tokyo: due.
    assert c.periods_due(cal, datetime(2025, 2, 4, 15, 30, tzinfo=UTC), date(2024, 12, 1)) == [
        date(2025, 1, 1)
    ]
    # 14:59Z is 23:59 on 4 Feb in Tokyo: not yet due.
    assert c.periods_due(cal, datetime(2025, 2, 4, 14, 59, tzinfo=UTC), date(2024, 12, 1)) == []
    # The same instant in UTC is still 4 Feb: not due either.
    assert (
        c.periods_due(
            CloseCalendar(business_day=3), datetime(2025, 2, 4, 15, 30, tzinfo=UTC), date(2024, 12, 1)
        )
        == []
    )


def test_periods_due_catches_up_after_watermark() -> None:
    cal = CloseCalendar(business_day=2)
    now = datetime(2025, 4, 10, 12, tzinfo=UTC)  # March due on 2 April -> latest due is March
    assert c.periods_due(cal, now, date(2024, 12, 15)) == [
        date(2025, 1, 1),
        date(2025, 2, 1),
        date(2025, 3, 1),
    ]
    assert c.periods_due(cal, now, date(2025, 3, 1)) == []
    # No watermark, no first period: only the latest due month.
    assert c.periods_due(cal, now, None) == [date(2025, 3, 1)]


def test_periods_due_before_due_day_gives_previous_month() -> None:
    cal = CloseCalendar(business_day=5)
    now = datetime(2025, 4, 2, 8, tzinfo=UTC)  # March not due until 7 April
    assert c.latest_due_period(cal, now) == date(2025, 2, 1)
    assert c.periods_due(cal, now, None) == [date(2025, 2, 1)]


def test_periods_due_respects_first_period() -> None:
    cal = CloseCalendar(business_day=1, first_period="2025-02")
    now = datetime(2025, 5, 20, tzinfo=UTC)
    assert c.periods_due(cal, now, None) == [date(2025, 2, 1), date(2025, 3, 1), date(2025, 4, 1)]
    assert c.periods_due(cal, now, date(2024, 6, 1)) == [date(2025, 2, 1), date(2025, 3, 1), date(2025, 4, 1)]


def test_periods_due_other_offset_aware_now() -> None:
    cal = CloseCalendar(timezone="America/New_York", business_day=1)
    # 2 June 2025 is the first business day after May; 03:00+02:00 on 2 June = 21:00 on 1 June in New York.
    now = datetime(2025, 6, 2, 3, tzinfo=timezone(timedelta(hours=2)))
    assert c.latest_due_period(cal, now) == date(2025, 4, 1)


def test_naive_now_is_refused() -> None:
    with pytest.raises(BadInputData, match="time zone"):
        c.periods_due(CloseCalendar(), datetime(2025, 1, 1), None)  # noqa: DTZ001


def test_bad_first_period_is_config_error() -> None:
    cal = CloseCalendar(first_period="July 2024")
    with pytest.raises(ConfigError, match=r"close_calendar.first_period"):
        c.periods_due(cal, datetime(2025, 1, 10, tzinfo=UTC), None)


def test_check_in_fiscal_calendar(cal: CloseCalendar) -> None:
    assert c.check_in_fiscal_calendar(date(2024, 7, 20), cal) == date(2024, 7, 1)
    with pytest.raises(BadInputData) as err:
        c.check_in_fiscal_calendar(
            date(2024, 6, 1), cal, what="export 'B' line 4 field 'Period'", value="Jun 24"
        )
    assert "'Jun 24'" in str(err.value)
    assert "line 4" in str(err.value)
    assert "2024-07" in str(err.value)
    with pytest.raises(BadInputData, match=r"'2025-05' is in the future"):
        c.check_in_fiscal_calendar(date(2025, 5, 1), cal, latest=date(2025, 4, 1))


def test_fiscal_horizon_and_current(cal: CloseCalendar) -> None:
    now = datetime(2025, 2, 10, tzinfo=UTC)
    assert c.current_period(cal, now) == date(2025, 2, 1)
    # FY start July: Feb 2025 is FY2025; two years ahead is FY2027 ending June 2027.
    assert c.fiscal_horizon(cal, now) == date(2027, 6, 1)
