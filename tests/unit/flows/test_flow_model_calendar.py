"""The model's fiscal year against the configuration (flows/model_calendar.py)."""

from __future__ import annotations

from datetime import date

from d365_anaplan.flows.model_calendar import calendar_problems

JULY = (date(2026, 7, 1), date(2027, 6, 30))
FMT = {"mapping.actuals.period_format": "{Mon} {yy}"}


def test_a_model_starting_its_year_where_the_configuration_does_passes() -> None:
    assert calendar_problems("FY27", *JULY, start_month=7, formats=FMT) == []
    assert calendar_problems("FY26", date(2026, 1, 1), date(2026, 12, 31), start_month=1, formats=FMT) == []
    fiscal = {"mapping.actuals.period_format": "FY{fyy} {Mon}"}
    assert calendar_problems("FY27", *JULY, start_month=7, formats=fiscal) == []


def test_a_july_model_with_a_january_configuration_is_refused() -> None:
    (line,) = calendar_problems("FY27", *JULY, start_month=1, formats=FMT)
    assert line == (
        "the model's fiscal year FY27 runs 2026-07-01..2027-06-30 (starts in month 7), but "
        "close_calendar.fiscal_year_start_month is 1: fiscal years, quarters and the plan horizon would not be "
        "the model's"
    )


def test_fiscal_labels_named_by_the_first_year_are_refused_for_fiscal_formats_only() -> None:
    fiscal = {
        "mapping.actuals.period_format": "FY{fyy} {Mon}",
        "mapping.plans.exports[0].period_format": "{Mon} {yy}",
    }
    (line,) = calendar_problems("FY26", *JULY, start_month=7, formats=fiscal)
    assert "is named by the year of its first month" in line
    assert "mapping.actuals.period_format 'FY{fyy} {Mon}' would label it FY27" in line
    assert "exports[0]" not in line
    assert calendar_problems("FY26", *JULY, start_month=7, formats=FMT) == [], (
        "month labels carry no FY label"
    )
