from __future__ import annotations

from datetime import date

import pytest

from d365_anaplan.errors import BadInputData, ConfigError
from d365_anaplan.flows.calendar import add_months
from d365_anaplan.flows.periods import format_period, parse_period_label, validate_period_format

MARCH_2025 = date(2025, 3, 1)


@pytest.mark.parametrize(
    ("fmt", "start", "expected"),
    [
        ("{Mon} {yy}", 1, "Mar 25"),
        ("{yyyy}-{mm}", 1, "2025-03"),
        ("{m}/{yyyy}", 1, "3/2025"),
        ("{MON}{yyyy}", 1, "MAR2025"),
        ("{mon}-{yy}", 1, "mar-25"),
        ("FY{fyy} {Mon}", 7, "FY25 Mar"),
        ("FY{fy} Q{q} {Mon}", 7, "FY2025 Q3 Mar"),
        ("FY{fy} Q{q} {Mon}", 1, "FY2025 Q1 Mar"),
        ("FY{fy} M{mm}", 4, "FY2025 M03"),
        ("FY{fy} M{mm}", 3, "FY2026 M03"),
        # FY starting April: March 2025 is the last month of FY2025.
        ("FY{fyy} {Mon}", 4, "FY25 Mar"),
    ],
)
def test_format_known_labels(fmt: str, start: int, expected: str) -> None:
    assert format_period(MARCH_2025, fmt, start) == expected
    assert parse_period_label(expected, fmt, start) == MARCH_2025


@pytest.mark.parametrize(
    "fmt", ["{Mon} {yy}", "{yyyy}{mm}", "FY{fyy} {MON}", "{m}.{fy}", "Q{q} {mon} {yyyy}"]
)
@pytest.mark.parametrize("start", [1, 4, 7, 10])
def test_round_trip_every_month_of_three_years(fmt: str, start: int) -> None:
    for i in range(36):
        d = add_months(date(2023, 1, 1), i)
        assert parse_period_label(format_period(d, fmt, start), fmt, start) == d


def test_fiscal_year_only_format_maps_back_to_calendar_year() -> None:
    # FY starts in July: "FY25 Aug" is August 2024.
    assert parse_period_label("FY25 Aug", "FY{fyy} {Mon}", 7) == date(2024, 8, 1)
    assert parse_period_label("FY25 Jun", "FY{fyy} {Mon}", 7) == date(2025, 6, 1)


@pytest.mark.parametrize(
    ("label", "fmt"),
    [
        ("mar 25", "{Mon} {yy}"),  # wrong case
        ("Mar 2025", "{Mon} {yy}"),  # four-digit year
        ("Mar  25", "{Mon} {yy}"),  # extra space
        ("2025-3", "{yyyy}-{mm}"),  # missing padding
        ("03/2025", "{m}/{yyyy}"),  # unexpected padding
        ("Mrz 25", "{Mon} {yy}"),  # not English
        ("", "{Mon} {yy}"),
        ("FY2025 Q1 Mar", "FY{fy} Q{q} {Mon}"),  # wrong quarter for FY start 7 (March is Q3)
        ("2025-13", "{yyyy}-{mm}"),
    ],
)
def test_parse_rejects_with_label_and_format(label: str, fmt: str) -> None:
    with pytest.raises(BadInputData) as err:
        parse_period_label(label, fmt, 7)
    assert repr(label) in str(err.value)
    assert repr(fmt) in str(err.value)


@pytest.mark.parametrize("fmt", ["{yyyy}", "{Mon}", "{Mon} {year}", "{Mon {yy}", "Q{q} {fy}"])
def test_invalid_formats_are_config_errors(fmt: str) -> None:
    with pytest.raises(ConfigError):
        validate_period_format(fmt)
    with pytest.raises(ConfigError):
        format_period(MARCH_2025, fmt)


def test_format_uses_month_of_any_day() -> None:
    assert format_period(date(2025, 3, 31), "{yyyy}-{mm}") == "2025-03"


@pytest.mark.parametrize(
    ("d", "start", "expected"),
    [
        (date(2026, 7, 1), 7, "FY27 P01"),  # July opens FY27 (named by the year it ends in)
        (date(2026, 12, 1), 7, "FY27 P06"),
        (date(2027, 6, 1), 7, "FY27 P12"),
        (date(2027, 7, 1), 7, "FY28 P01"),
        (date(2025, 3, 1), 1, "FY25 P03"),
        (date(2025, 3, 1), 4, "FY25 P12"),
    ],
)
def test_fiscal_period_token_labels(d: date, start: int, expected: str) -> None:
    assert format_period(d, "FY{fyy} P{fpp}", start) == expected
    assert parse_period_label(expected, "FY{fyy} P{fpp}", start) == d


@pytest.mark.parametrize("fmt", ["FY{fyy} P{fpp}", "{fy}.{fp}", "P{fp} {yyyy}"])
@pytest.mark.parametrize("start", [1, 4, 7, 10])
def test_fiscal_period_round_trip(fmt: str, start: int) -> None:
    for i in range(36):
        d = add_months(date(2023, 1, 1), i)
        assert parse_period_label(format_period(d, fmt, start), fmt, start) == d


@pytest.mark.parametrize(("label", "fmt"), [("FY27 P13", "FY{fyy} P{fpp}"), ("FY27 P1", "FY{fyy} P{fpp}"),
                                            ("FY27 P01", "FY{fyy} P{fp}")])  # fmt: skip
def test_fiscal_period_token_is_exact(label: str, fmt: str) -> None:
    with pytest.raises(BadInputData):
        parse_period_label(label, fmt, 7)
