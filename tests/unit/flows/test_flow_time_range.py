"""The periods a run writes against the model's period labels (steps/time_range.py)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from d365_anaplan.config import ConnectionConfig, parse_connection
from d365_anaplan.errors import AnaplanAuthError, AnaplanNotFound
from d365_anaplan.steps.time_range import range_problem, time_range_findings

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MODEL = [f"{m} {y}" for y in ("25", "26") for m in MONTHS]  # the model's time range: Jan 25..Dec 26
SETTING = "mapping.actuals.period_format"


def months(first: tuple[int, int], count: int) -> list[date]:
    year, month = first
    return [date(year + (month - 1 + i) // 12, (month - 1 + i) % 12 + 1, 1) for i in range(count)]


def test_periods_inside_the_model_time_range_pass() -> None:
    assert range_problem(months((2025, 1), 24), MODEL, "{Mon} {yy}", 1, SETTING) is None


def test_periods_before_the_model_time_range_are_refused() -> None:
    problem = range_problem(months((2024, 11), 4), MODEL, "{Mon} {yy}", 1, SETTING)
    assert problem == (
        "mapping.actuals.period_format '{Mon} {yy}': periods 2024-11..2024-12 (['Nov 24', 'Dec 24']) are before "
        "the model's time range 'Jan 25'..'Dec 26' (2025-01..2026-12)"
    )


def test_periods_after_the_model_time_range_are_refused() -> None:
    problem = range_problem(months((2026, 6), 12), MODEL, "{Mon} {yy}", 1, SETTING)
    assert problem is not None
    assert (
        "periods 2027-01..2027-05 (['Jan 27', 'Feb 27', 'Mar 27']…) are after the model's time range"
        in problem
    )


def test_labels_the_model_does_not_use_are_refused_as_a_mismatch() -> None:
    problem = range_problem(months((2025, 1), 3), MODEL, "{yyyy}-{mm}", 1, SETTING)
    assert problem == (
        "mapping.actuals.period_format '{yyyy}-{mm}' writes period labels like '2025-01', which are not the "
        "model's period labels (['Jan 25', 'Feb 25', 'Mar 25']…)"
    )


def test_fiscal_tokens_label_by_the_fiscal_year() -> None:
    model = [
        f"FY{y} P{p:02d}" for y in ("26", "27") for p in range(1, 13)
    ]  # July years, FY26 = Jul 25..Jun 26
    assert range_problem(months((2025, 7), 24), model, "FY{fyy} P{fpp}", 7, SETTING) is None
    problem = range_problem(months((2025, 6), 2), model, "FY{fyy} P{fpp}", 7, SETTING)
    assert problem is not None and "periods 2025-06 (['FY25 P12']) are before" in problem


def test_only_the_labels_are_compared_without_periods() -> None:
    assert range_problem([], MODEL, "{Mon} {yy}", 1, SETTING) is None
    assert range_problem([], MODEL, "{yyyy}-{mm}", 1, SETTING) is not None


class Model:
    """What the client answers for the time source (labels, or the error the call raises)."""

    def __init__(self, answer: list[str] | Exception | None) -> None:
        self.answer = answer

    def time_items(self, line_item: str) -> list[str] | None:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def config(time_source: str | None = "GL Actuals.Amount") -> ConnectionConfig:
    data: dict[str, Any] = {
        "name": "contoso",
        "dynamics": {
            "environment_url": "https://contoso.operations.dynamics.com",
            "tenant_id": "t",
            "client_id": "app",
            "client_secret": "x",
            "companies": ["usmf"],
        },
        "anaplan": {
            "workspace_id": "8a8b8c8d8e8f",
            "model_id": "ABCDEF0123456789",
            "auth": {"mode": "basic", "username": "u@contoso.com", "password": "x"},
        },
        "mapping": {"actuals": {"time_source": time_source}},
    }
    return parse_connection(data)


def test_the_verdict_refuses_the_run_periods_outside_the_range() -> None:
    (found,) = time_range_findings(config(), Model(MODEL), "actuals", {"actuals": ["2027-01"]})  # type: ignore[arg-type]
    assert not found.ok and found.name == "model time range (actuals)"
    assert "are after the model's time range" in found.detail and "time_source" in found.remedy
    (ok,) = time_range_findings(config(), Model(MODEL), "actuals", {"actuals": ["2025-03"]})  # type: ignore[arg-type]
    assert ok.ok and ok.detail == "periods 2025-03 in the Time dimension of 'GL Actuals.Amount'"


@pytest.mark.parametrize(
    ("answer", "cfg", "reason"),
    [
        (
            AnaplanAuthError("GET …/items: 403"),
            config(),
            "not verified (GET …/items: 403; the user needs read",
        ),
        (
            AnaplanNotFound("GET …/items: 404"),
            config(),
            "not verified (GET …/items: 404; Anaplan answers 404",
        ),
        (None, config(), "not verified: line item 'GL Actuals.Amount' has no Time dimension"),
        (MODEL, config(None), "not verified: mapping.actuals.time_source is not set"),
    ],
)
def test_what_cannot_be_read_is_not_verified(answer: Any, cfg: ConnectionConfig, reason: str) -> None:
    (found,) = time_range_findings(cfg, Model(answer), "actuals", {"actuals": ["2031-01"]})  # type: ignore[arg-type]
    assert found.ok and found.detail.startswith(reason), found.detail


def test_a_line_item_the_model_does_not_have_is_refused() -> None:
    missing = AnaplanNotFound("GET …/lineItems: no line item 'GL Actuals.Amount' in model M (have [])")
    (found,) = time_range_findings(config(), Model(missing), "actuals", None)  # type: ignore[arg-type]
    assert not found.ok and found.detail.startswith(
        "mapping.actuals.time_source: GET …/lineItems: no line item"
    )


def test_plans_check_each_export_period_format_against_the_plan_horizon() -> None:
    cfg = config().model_copy(deep=True)
    data = cfg.model_dump(by_alias=True, exclude_none=True)
    data["mapping"]["plans"] = {"exports": [
        {"export_action": "Export Approved Budget", "version": "Budget"},
        {"export_action": "Export Forecast", "version": "Forecast", "period_format": "{yyyy}-{mm}"},
    ]}  # fmt: skip
    plans = parse_connection(data)
    (found,) = time_range_findings(plans, Model(MODEL), "plans", {"plans": ["2026-12", "2027-01"]})  # type: ignore[arg-type]
    assert not found.ok and found.name == "model time range (plans)"
    assert found.detail.startswith("mapping.plans.exports[0].period_format '{Mon} {yy}': periods 2027-01")
    assert (
        "mapping.plans.exports[1].period_format '{yyyy}-{mm}' writes period labels like '2026-12'"
        in found.detail
    )
