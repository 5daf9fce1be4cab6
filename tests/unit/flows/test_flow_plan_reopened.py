"""A plan row approved and written, then reopened (not approved any more), keeps its budget in F&O; a row that
left the export is reversed."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from d365_anaplan.config import CloseCalendar, DimensionMapping, PlanExport, PlansMapping
from d365_anaplan.flows.plan_deltas import plan_deltas
from d365_anaplan.flows.plans import parse_plan_export

HEADER = "Entity,Account,Cost Centre,Dept,Period,Version,Approval,Amount\n"
EXPORT = PlanExport(export_action="Budget export", version="Budget")
JAN, FEB = date(2025, 1, 1), date(2025, 2, 1)
CC = {"CostCenter": "CC01", "Department": "D1"}


def _deltas(text: str, dims: list[DimensionMapping], held: list[tuple[str, str, dict[str, str], date, Decimal]],
            plans: PlansMapping | None = None) -> tuple[list[tuple[str, Decimal]], dict[tuple[str, date], Decimal]]:  # fmt: skip
    reader = parse_plan_export(
        [text.encode("utf-8")],
        export=EXPORT,
        plans=plans or PlansMapping(exports=[EXPORT]),
        dimensions=dims,
        companies=["USMF"],
        calendar=CloseCalendar(fiscal_year_start_month=7, first_period="2024-07"),
        period_format="{Mon} {yy}",
        latest=date(2026, 6, 1),
        periods={JAN, FEB},
    )
    rows = list(reader)
    deltas, approved = plan_deltas(rows, held, [JAN, FEB], keep=reader.not_approved)
    return [(d.account, d.amount) for d in deltas], {(k[1], k[3]): v for k, v in approved.items()}


HELD = [
    ("USMF", "601500", CC, JAN, Decimal("500.00")),
    ("USMF", "601600", CC, JAN, Decimal("300.00")),
    ("USMF", "601700", CC, JAN, Decimal("200.00")),
]


def test_reopened_row_keeps_its_budget_and_a_removed_row_is_reversed(dims: list[DimensionMapping]) -> None:
    text = (
        HEADER
        + "USMF,601500,CC01,D1,Jan 25,Budget,In review,800\n"  # reopened: F&O keeps 500
        + "USMF,601600,CC01,D1,Jan 25,Budget,Approved,350\n"  # still approved: +50
    )  # 601700 left the export: reversed
    deltas, approved = _deltas(text, dims, HELD)
    assert deltas == [("601600", Decimal("50.00")), ("601700", Decimal("-200.00"))]
    # reconciliation expects what F&O keeps for the reopened cell
    assert approved == {("601500", JAN): Decimal("500.00"), ("601600", JAN): Decimal("350")}


def test_reopened_row_in_columns_keeps_every_period(dims: list[DimensionMapping]) -> None:
    plans = PlansMapping(exports=[EXPORT], layout="time_in_columns")
    text = (
        "Entity,Account,Cost Centre,Dept,Version,Approval,Jan 25,Feb 25\n"
        "USMF,601500,CC01,D1,Budget,Draft,,\n"
        "USMF,601600,CC01,D1,Budget,Approved,300,\n"
    )
    held = [*HELD[:2], ("USMF", "601500", CC, FEB, Decimal("70.00"))]
    deltas, approved = _deltas(text, dims, held, plans)
    assert deltas == []
    assert approved == {
        ("601500", JAN): Decimal("500.00"),
        ("601500", FEB): Decimal("70.00"),
        ("601600", JAN): Decimal("300"),
    }


def test_unreadable_unapproved_row_names_no_cell(dims: list[DimensionMapping]) -> None:
    text = (
        HEADER
        + "XXXX,601500,CC01,D1,Jan 25,Budget,Draft,1\n"  # not a configured company: counted, no cell, no error
        + "USMF,601600,CC01,D1,Jan 25,Budget,Approved,300\n"
    )
    deltas, approved = _deltas(text, dims, [*HELD[:2]])
    assert deltas == [("601500", Decimal("-500.00"))]  # the held cell's row is gone as far as F&O codes go
    assert ("601500", JAN) not in approved
