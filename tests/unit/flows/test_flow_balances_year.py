"""Balance-sheet balances over a window crossing a fiscal year (dynamics-budget-fiscal.md §C3): each period's
balance is its own fiscal year's opening entries plus that year's movements, or the prior year's closing
balance carried forward while the new year's opening entries are not posted."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from d365_anaplan.config import DimensionMapping
from d365_anaplan.flows.balances import balance_rows
from d365_anaplan.flows.records import GLLine

DIMS = [DimensionMapping(name="CostCenter", column="CostCenter")]
RUN = {date(2024, 11, 1), date(2024, 12, 1), date(2025, 1, 1)}  # the February run: January + 2 reload months


def gl(
    amount: str, day: date, kind: str = "Operating", *, account: str = "110110", bs: bool = True
) -> GLLine:
    return GLLine(
        company="USMF", account=account, dimensions={"CostCenter": "OU_1"}, accounting_date=day,
        amount=Decimal(amount), amount_currency="USD", period_type=kind, fiscal_year=str(day.year),
        fiscal_period=0 if kind == "Opening" else day.month, period_name=kind, balance_sheet=bs,
    )  # fmt: skip


FY2024 = [
    gl("1000", date(2024, 1, 1), "Opening"),
    gl("500", date(2024, 6, 10)),  # cash at December: 1,500
    gl("-800", date(2024, 12, 31), "Closing", account="290100"),  # P&L to retained earnings
    gl("800", date(2024, 12, 31), "Closing", account="601100", bs=False),
    gl("-800", date(2024, 3, 3), account="601100", bs=False),
]
JANUARY = [gl("50", date(2025, 1, 20))]
OPENING_2025 = [
    gl("1500", date(2025, 1, 1), "Opening"),
    gl("-800", date(2025, 1, 1), "Opening", account="290100"),
]


def cash(rows: list[object]) -> list[tuple[date, Decimal]]:
    return [(r.period, r.amount) for r in rows if r.account == "110110"]  # type: ignore[attr-defined]


def test_with_the_year_end_close_posted_the_new_year_starts_from_its_opening_entries() -> None:
    rows = balance_rows(FY2024 + OPENING_2025 + JANUARY, dimensions=DIMS, periods=RUN)
    assert cash(rows) == [
        (date(2024, 11, 1), Decimal("1500")),
        (date(2024, 12, 1), Decimal("1500")),
        (date(2025, 1, 1), Decimal("1550")),  # not 3,050: the opening entries are not added to last year's
    ]
    retained = [(r.period, r.amount) for r in rows if r.account == "290100"]
    assert retained == [(date(2024, 11, 1), Decimal(0)), (date(2024, 12, 1), Decimal(0)),
                        (date(2025, 1, 1), Decimal("-800"))]  # fmt: skip


def test_before_the_year_end_close_the_prior_years_closing_balance_is_carried_forward() -> None:
    rows = balance_rows(FY2024 + JANUARY, dimensions=DIMS, periods=RUN)
    assert cash(rows) == [
        (date(2024, 11, 1), Decimal("1500")),
        (date(2024, 12, 1), Decimal("1500")),
        (date(2025, 1, 1), Decimal("1550")),
    ]
    only_january = balance_rows(FY2024 + JANUARY, dimensions=DIMS, periods={date(2025, 1, 1)})
    assert cash(only_january) == [(date(2025, 1, 1), Decimal("1550"))]  # not the year-to-date 50


def test_an_account_without_a_january_line_still_carries_its_balance() -> None:
    rows = balance_rows([*FY2024, gl("9", date(2025, 1, 5), account="120000")], dimensions=DIMS,
                        periods={date(2025, 1, 1)})  # fmt: skip
    assert cash(rows) == [(date(2025, 1, 1), Decimal("1500"))]


def test_a_route_without_period_types_keeps_each_fiscal_year_apart() -> None:
    untyped = [g.model_copy(update={"period_type": ""}) for g in FY2024 if g.period_type != "Closing"]
    opening = [g.model_copy(update={"period_type": ""}) for g in OPENING_2025[:1] + JANUARY]
    rows = balance_rows(untyped + opening, dimensions=DIMS, periods={date(2025, 1, 1)})
    assert cash(rows) == [(date(2025, 1, 1), Decimal("1550"))]


def test_fiscal_periods_whose_years_meet_inside_a_month_keep_to_their_own_year() -> None:
    def fp(amount: str, day: date, end: date, year: str, kind: str = "Operating") -> GLLine:
        return gl(amount, day, kind).model_copy(
            update={
                "period_monthly": False,
                "period_end": end,
                "fiscal_year": year,
                "period_name": f"P {end}",
            }
        )

    lines = [
        fp("1000", date(2024, 7, 1), date(2024, 7, 1), "FY25", "Opening"),
        fp("500", date(2025, 6, 20), date(2025, 6, 28), "FY25"),  # FY25's last period ends 28 June
        fp("1500", date(2025, 6, 29), date(2025, 6, 29), "FY26", "Opening"),  # FY26 opens the next day
        fp("50", date(2025, 7, 10), date(2025, 7, 26), "FY26"),
    ]
    rows = balance_rows(lines, dimensions=DIMS, periods={date(2025, 6, 1), date(2025, 7, 1)})
    assert [(r.period, r.amount) for r in rows] == [
        (date(2025, 6, 28), Decimal("1500")),
        (date(2025, 7, 26), Decimal("1550")),
    ]
