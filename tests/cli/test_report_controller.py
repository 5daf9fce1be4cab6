"""Issue 13 item 6: a report a controller trusts - one sign convention for actuals and plans, nothing added
across currencies, units on every chart, account names beside codes, and demo data that looks like a ledger
(revenue credit-normal, plans in proportion to actuals at every --gl-lines)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

import pytest

from devkit.report import SIGN_CONVENTION, Chart, Reconciliation, ReportData, Series, render, svg_chart
from devkit.sandbox.anaplan.seed import build_seed
from devkit.sandbox.dynamics import seed as fo_seed
from devkit.stack import plan_accounts, plan_basis

JAN = date(2025, 1, 1)


def _two_currencies() -> Reconciliation:
    left = {("USMF", "401100", JAN): Decimal("-1000.00"), ("DEMF", "401100", JAN): Decimal("-700.00")}
    return Reconciliation("F&O vs Anaplan", "F&O", "Anaplan", left, dict(left),
                          currencies={"USMF": "USD", "DEMF": "EUR"}, account_names={"401100": "Sales revenue"})  # fmt: skip


def test_totals_are_per_company_and_currency_never_added() -> None:
    r = _two_currencies()
    text = r.side_text("left")
    assert "USMF -1,000.00 USD" in text and "DEMF -700.00 EUR" in text
    assert "1,700.00" not in text  # USD and EUR are never added
    html = render(ReportData("R", "s", [], [], [], [r]))
    assert "401100 Sales revenue" in html and "<td>EUR</td>" in html and "1,700.00" not in html
    assert SIGN_CONVENTION in html


def test_charts_carry_their_currency() -> None:
    chart = Chart("Revenue by month — DEMF, EUR", ["Jan 25"], [Series("Actual", [Decimal("5")], "bar", "#000")],
                  unit="EUR")  # fmt: skip
    svg = svg_chart(chart)
    assert ">EUR</text>" in svg and "5.00 EUR" in svg


@pytest.mark.parametrize("lines", [2_000, 40_000])
def test_demo_ledger_is_credit_normal_and_plans_follow_actuals(lines: int) -> None:
    gl = fo_seed.GLGenerator(total_lines=lines, months=12, start=date(2025, 1, 1))
    net: dict[tuple[str, str, int], int] = defaultdict(int)  # (company, account type, month) -> cents
    for v in range(gl.voucher_count):
        head = gl.voucher(v)
        for line in gl.voucher_lines(v):
            net[head.company, line.account.account_type, head.accounting_date.month] += line.cents
    for company in fo_seed.COMPANIES:
        for month in range(1, 13):
            assert net[company, "Revenue", month] < 0, (company, month)  # revenue is a net credit
            assert net[company, "Expense", month] > 0, (company, month)

    basis = plan_basis(gl)
    seed = build_seed(accounts=[(a.account, a.name) for a in fo_seed.MAIN_ACCOUNTS],
                      entities=[(c, c) for c in fo_seed.COMPANIES], plan_accounts=plan_accounts(), plan_basis=basis)  # fmt: skip
    budget: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for (entity, account, _period, version), cell in seed.modules["Plan"].cells.items():
        if version == "Budget":
            budget[entity, account] += cell["Amount"]
    actual: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for (company, account, _m), value in basis.items():
        actual[company, account] += value
    assert actual
    for key, value in actual.items():
        ratio = budget[key] / value
        assert Decimal("0.85") <= ratio <= Decimal("1.15"), (key, budget[key], value)  # same sign, same size
