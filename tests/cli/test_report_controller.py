"""Issue 13 item 6: a report a controller trusts - one sign convention for actuals and plans, nothing added
across currencies, units on every chart, account names beside codes, and demo data that looks like a ledger
(revenue credit-normal, plans in proportion to actuals at every --gl-lines)."""

from __future__ import annotations

import io
import re
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

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


# --- plan totals: per currency, never one sum across companies (USMF books in USD, DEMF in EUR) ---------------


def _example_config() -> Any:
    import yaml

    from d365_anaplan.config import ConnectionConfig

    path = Path(__file__).resolve().parents[2] / "examples" / "connection.yaml"
    cfg = ConnectionConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert cfg.dynamics.journal.currency_codes == {"USMF": "USD", "DEMF": "EUR"}
    return cfg


def test_plan_versions_table_is_per_currency() -> None:
    from d365_anaplan.flows.journal_keys import export_tag
    from devkit.demo import plan_versions
    from devkit.report import plan_versions_html

    cfg = _example_config()
    tag = export_tag(cfg.name, cfg.mapping.plans.exports[0].export_action)  # the Budget export
    app = SimpleNamespace(budget_headers={("DEMF", "BR-1"): {"ReasonComment": f"{tag}-1", "Status": "Draft"}},
                          journal_headers={})  # fmt: skip
    plan = {
        "Budget": {("USMF", "601500", JAN): Decimal("1234.00"), ("DEMF", "601500", JAN): Decimal("567.00")}
    }
    fo = {"Budget": {("USMF", "601500", JAN): Decimal("1234.00"), ("DEMF", "601500", JAN): Decimal("560.00")}}
    rows = plan_versions(SimpleNamespace(dynamics=SimpleNamespace(app=app)), cfg, plan, fo)
    budget = [(cur, approved, held, pending) for version, _where, cur, approved, held, pending in rows
              if version == "Budget"]  # fmt: skip
    assert budget == [
        ("EUR", Decimal("567.00"), Decimal("560.00"), 1),
        ("USD", Decimal("1234.00"), Decimal("1234.00"), 0),
    ]
    html = plan_versions_html(rows)
    assert "<th>Currency</th>" in html and "<td>EUR</td>" in html and "<td>USD</td>" in html
    assert "1,234.00" in html and "567.00" in html and "560.00" in html
    assert "1,801.00" not in html and "1,794.00" not in html, "USD + EUR, approved and held, never shown"
    assert "-7.00" in html, "DEMF's difference shows on the EUR row"


class _Ledger:
    """The run's step records, as ``RunLedger.steps`` returns them."""

    def __init__(self, steps: list[tuple[str, str, dict[str, Any]]]) -> None:
        self._steps = [SimpleNamespace(step=s, status=st, detail=d) for s, st, d in steps]

    def steps(self, run_id: str) -> list[Any]:
        return self._steps

    def journals(self, run_id: str) -> list[Any]:
        return []


def _printed(steps: list[tuple[str, str, dict[str, Any]]], flow: str = "plans") -> str:
    from devkit.commands._describe import collect, print_facts

    out = io.StringIO()
    print_facts(collect(_Ledger(steps), "r1", {"run": {"dry_run": True}}, flow, "SUCCEEDED"), out)
    return out.getvalue()


def test_run_output_shows_plan_totals_per_currency() -> None:
    text = _printed([
        ("ValidatePlan", "SUCCEEDED", {"exports": {"Export Approved Budget": {
            "accepted": 2, "skipped_unapproved": 0, "by_currency": {"EUR": "567.00", "USD": "1234.00"}}}}),
        ("ReconcilePlan", "SUCCEEDED", {"matched_accounts": 2, "left_totals": {"EUR": "567.00", "USD": "1234.00"}}),
    ])  # fmt: skip
    assert "EUR 567.00; USD 1,234.00" in text, text
    assert "(approved EUR 567.00; USD 1,234.00)" in text, text
    assert "1,801" not in text and "1801" not in text, "USD and EUR are never added"


def test_run_output_of_an_older_record_shows_no_cross_currency_sum() -> None:
    """A run recorded before totals were per currency kept one number over USD and EUR: it is not shown."""
    text = _printed([
        ("ValidatePlan", "SUCCEEDED", {"exports": {"Export Approved Budget": {
            "accepted": 2, "skipped_unapproved": 0, "total": "1801.00"}}}),
        ("ReconcilePlan", "SUCCEEDED", {"matched_accounts": 2, "left_total": "1801.00"}),
    ])  # fmt: skip
    assert "2 company/account/period totals match" in text and "Export Approved Budget" in text
    assert "1,801" not in text and "1801" not in text


def test_run_output_gl_net_per_currency() -> None:
    """Transaction amounts of one company are in several currencies: the net is per currency, not 0."""
    text = _printed([
        ("ExtractGL:USMF:2025-01", "SUCCEEDED", {"lines": 3, "total": None,
                                                 "by_currency": {"USD": "100.00", "EUR": "-40.00"}}),
        ("ExtractGL:USMF:2025-02", "SUCCEEDED", {"lines": 1, "total": "5.00", "by_currency": {"USD": "5.00"}}),
        ("PrepareActuals", "SUCCEEDED", {"rows": 2, "lines": 4, "total": None,
                                         "by_currency": {"EUR": "-40.00", "USD": "1105.00"}}),
    ], flow="actuals")  # fmt: skip
    assert re.search(r"USMF +4  EUR -40.00; USD 105.00\n", text), text
    assert "2 rows from 4 GL lines, net EUR -40.00; USD 1,105.00" in text, text
    assert "65.00" not in text and "1,065.00" not in text
