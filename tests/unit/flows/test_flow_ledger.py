"""Ledger rules of the actuals transform: fiscal period types and labels, currencies never added, late-posting
reload of the close calendar, per-period reconciliation keys and the ``ledger`` configuration block."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from d365_anaplan.config import ActualsMapping, CloseCalendar, DimensionMapping, LedgerOptions
from d365_anaplan.errors import BadInputData
from d365_anaplan.flows.actuals import aggregate_actuals, fiscal_label, line_period, validate_gl_line
from d365_anaplan.flows.actuals_file import write_actuals_csv
from d365_anaplan.flows.calendar import periods_due
from d365_anaplan.flows.reconcile import reconcile
from d365_anaplan.flows.records import GLLine

DIMS = [DimensionMapping(name="CostCenter", column="CostCenter")]


def line(amount: str, *, kind: str = "Operating", day: date = date(2025, 12, 31), company: str = "USMF",
         currency: str = "USD", monthly: bool = True, end: date | None = None, number: int = 12,
         name: str = "Period 12") -> GLLine:  # fmt: skip
    return GLLine(
        company=company, account="601100", dimensions={"CostCenter": "OU_1"}, accounting_date=day,
        amount=Decimal(amount), amount_currency=currency, period_type=kind, fiscal_year="2025",
        fiscal_period=number, period_name=name, period_end=end, period_monthly=monthly,
    )  # fmt: skip


def test_opening_and_closing_periods_are_left_out_by_default() -> None:
    lines = [line("100"), line("-40", kind="Closing"), line("7", kind="Opening", day=date(2025, 1, 1))]
    agg = aggregate_actuals(lines, dimensions=DIMS)
    assert [(r.period, r.amount) for r in agg.rows()] == [(date(2025, 12, 1), Decimal("100"))]
    with_closing = aggregate_actuals(
        lines, dimensions=DIMS, ledger=LedgerOptions(period_types=["Operating", "Closing"])
    )
    assert [r.amount for r in with_closing.rows()] == [Decimal("60")]
    unknown = line("5", kind="")  # a route that does not name the period type: loaded
    assert validate_gl_line(unknown, 1, dimensions=DIMS) is not None


def test_fiscal_periods_are_keyed_by_their_end_and_labelled_from_fiscal_tokens() -> None:
    p6 = line("10", day=date(2025, 6, 20), monthly=False, end=date(2025, 7, 1), number=6, name="P06")
    assert line_period(p6) == date(2025, 7, 1)
    assert fiscal_label("FY{fyname} P{fpp} ({pname}, {fp})", "2025", 6, "P06") == "FY2025 P06 (P06, 6)"
    row = validate_gl_line(p6, 1, dimensions=DIMS, periods={date(2025, 7, 1)})
    assert row is not None and row.label == "FY2025 P06" and row.period == date(2025, 7, 1)
    with pytest.raises(BadInputData, match="outside the requested"):
        validate_gl_line(p6, 1, dimensions=DIMS, periods={date(2025, 6, 1)})
    closing = line("1", kind="Closing", monthly=False, end=date(2025, 12, 31))
    with pytest.raises(BadInputData, match="closing-period line cannot be loaded by fiscal period label"):
        validate_gl_line(
            closing, 1, dimensions=DIMS, ledger=LedgerOptions(period_types=["Operating", "Closing"])
        )
    out = io.StringIO()
    write_actuals_csv(
        aggregate_actuals([p6, line("-10", monthly=False, end=date(2025, 7, 1), day=date(2025, 6, 2), number=6,
                                    name="P06")], dimensions=DIMS).rows(),
        out, mapping=ActualsMapping(), dimensions=DIMS,
    )  # fmt: skip
    assert out.getvalue().splitlines()[1] == "USMF,601100,OU_1,FY2025 P06,Actual,0.00"


def test_currencies_are_never_added_and_the_currency_column_is_optional() -> None:
    lines = [
        line("100"),
        line("-100"),
        line("90", company="DEMF", currency="EUR"),
        line("-90", company="DEMF", currency="EUR"),
    ]
    rows = aggregate_actuals(lines, dimensions=DIMS).rows()
    out = io.StringIO()
    totals = write_actuals_csv(rows, out, mapping=ActualsMapping(), dimensions=DIMS,
                               ledger=LedgerOptions(currency_column="Currency"))  # fmt: skip
    assert out.getvalue().splitlines()[0].endswith("Amount,Currency")
    assert out.getvalue().splitlines()[1].endswith(",0.00,EUR")
    assert totals.by_currency == {"USD": Decimal(0), "EUR": Decimal(0)}
    with pytest.raises(BadInputData, match="several currencies"):
        _ = totals.total
    assert totals.summary()["total"] is None and totals.summary()["by_currency"] == {"EUR": "0", "USD": "0"}


def test_scheduled_runs_reload_the_last_closed_months() -> None:
    cal = CloseCalendar(timezone="UTC", business_day=3, first_period="2025-01")
    now = datetime(2025, 6, 10, 9, tzinfo=UTC)  # May is due (business day 3 of June has passed)
    assert periods_due(cal, now, date(2025, 5, 1)) == []
    assert periods_due(cal, now, date(2025, 5, 1), reload_months=2) == [date(2025, 4, 1), date(2025, 5, 1)]
    assert periods_due(cal, now, date(2025, 4, 1), reload_months=1) == [date(2025, 4, 1), date(2025, 5, 1)]
    early = CloseCalendar(timezone="UTC", business_day=3, first_period="2025-05")
    assert periods_due(early, now, date(2025, 5, 1), reload_months=3) == [date(2025, 5, 1)]


def test_fiscal_periods_reconcile_on_their_exact_key() -> None:
    left = [
        ("DEMF", "601100", date(2025, 7, 1), Decimal("5")),
        ("DEMF", "601100", date(2025, 7, 29), Decimal("7")),
    ]
    right = [
        ("DEMF", "601100", date(2025, 7, 1), Decimal("5")),
        ("DEMF", "601100", date(2025, 7, 29), Decimal("6")),
    ]
    result = reconcile(left, right, currency="EUR", exact_periods=True)
    assert not result.ok and [d.label() for d in result.mismatches()] == ["DEMF 601100 2025-07-29"]
    assert not reconcile(left, right, currency="EUR").ok  # by month the totals differ too
    assert reconcile(
        left, [("DEMF", "601100", date(2025, 7, 15), Decimal("12"))], currency="EUR"
    ).ok  # months only


def test_ledger_block_is_validated() -> None:
    with pytest.raises(ValidationError, match=r"set ledger\.currency_column"):
        LedgerOptions(currency="transaction")
    assert LedgerOptions(currency="transaction", currency_column="Currency").currency == "transaction"
    with pytest.raises(ValidationError, match="unknown posting layer"):
        LedgerOptions(posting_layers=["Current", "Budget"])
    with pytest.raises(ValidationError, match="must name the fiscal year"):
        LedgerOptions(fiscal_period_format="P{fp}")
    with pytest.raises(ValidationError, match="unknown token"):
        LedgerOptions(fiscal_period_format="{fyname} {month}")
    assert LedgerOptions(tolerances={"jpy": Decimal("1")}).tolerance("JPY", Decimal(0)) == Decimal("1")
    assert LedgerOptions().tolerance("EUR", Decimal("0.01")) == Decimal("0.01")


def test_balance_sheet_balances_include_the_opening_entry_and_every_movement_to_the_period_end() -> None:
    from d365_anaplan.flows.balances import balance_rows

    def bs(amount: str, day: date, kind: str = "Operating") -> GLLine:
        g = line(amount, day=day, kind=kind)
        return g.model_copy(update={"account": "110110", "balance_sheet": True})

    lines = [
        bs("1000", date(2025, 1, 1), "Opening"),
        bs("-50", date(2025, 1, 20)),
        bs("20", date(2025, 3, 3)),
        bs("999", date(2025, 12, 31), "Closing"),
        line("70", day=date(2025, 3, 9)),  # P&L: not a balance
    ]
    rows = balance_rows(lines, dimensions=DIMS, periods={date(2025, 2, 1), date(2025, 3, 1)})
    assert [(r.account, r.period, r.amount, r.currency) for r in rows] == [
        ("110110", date(2025, 2, 1), Decimal("950"), "USD"),
        ("110110", date(2025, 3, 1), Decimal("970"), "USD"),
    ]
