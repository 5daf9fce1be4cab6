"""Shared fixtures of the flow tests: small configuration objects built directly (no YAML, no I/O)."""

from __future__ import annotations

import pytest

from d365_anaplan.config import ActualsMapping, CloseCalendar, DimensionMapping, PlanExport, PlansMapping


@pytest.fixture
def dims() -> list[DimensionMapping]:
    return [
        DimensionMapping(name="CostCenter", column="Cost Centre", unmapped_member="CC_UNMAPPED"),
        DimensionMapping(name="Department", column="Dept", unmapped_member="DEPT_UNMAPPED"),
    ]


@pytest.fixture
def actuals_mapping() -> ActualsMapping:
    return ActualsMapping(unmapped_account="999999")


@pytest.fixture
def cal() -> CloseCalendar:
    return CloseCalendar(
        timezone="Europe/Berlin", business_day=3, fiscal_year_start_month=7, first_period="2024-07"
    )


@pytest.fixture
def plans_mapping() -> PlansMapping:
    return PlansMapping(exports=[PlanExport(export_action="Budget export", version="Budget")])
