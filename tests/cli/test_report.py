"""The demo report's reconciliation and rendering (pure: no sandboxes)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from html.parser import HTMLParser

from devkit.report import Chart, Reconciliation, ReportData, Series, render, svg_chart

JAN, FEB = date(2025, 1, 1), date(2025, 2, 1)


def _recon(right_feb: str) -> Reconciliation:
    left = {("USMF", "401100", JAN): Decimal("-100.00"), ("USMF", "401100", FEB): Decimal("50.10")}
    right = {("USMF", "401100", JAN): Decimal("-100.00"), ("USMF", "401100", FEB): Decimal(right_feb)}
    return Reconciliation("F&O vs Anaplan", "F&O", "Anaplan", left, right)


def test_reconciliation_to_the_cent() -> None:
    assert _recon("50.10").ok
    off = _recon("50.09")
    assert not off.ok
    assert off.status() == "1 DIFFERENCE(S)"
    ((key, left, right, diff),) = off.differences()
    assert key == ("USMF", "401100", FEB) and (left, right, diff) == (
        Decimal("50.10"),
        Decimal("50.09"),
        Decimal("0.01"),
    )
    assert off.by_account() == [("USMF", "401100", Decimal("-49.90"), Decimal("-49.91"), Decimal("0.01"))]
    missing = Reconciliation("x", "a", "b", {("USMF", "1", JAN): Decimal("1.00")}, {})
    assert not missing.ok and missing.differences()[0][3] == Decimal("1.00")
    assert not Reconciliation("x", "a", "b", {}, {}).ok  # nothing compared is not a pass


def test_report_lists_differences_and_is_well_formed() -> None:
    chart = Chart("Revenue", ["Jan 25", "Feb 25"], [Series("Actual", [Decimal("-5"), Decimal("12.5")], "bar", "#000"),
                                                     Series("Budget", [Decimal("3"), Decimal("4")], "line", "#f00")])  # fmt: skip
    data = ReportData("Report <1>", "sub", [("Rows", "2")], [{"name": "Actuals", "status": "SUCCEEDED",
                      "rows": [("Rows", 2)]}], [chart], [_recon("50.09")], ok=False)  # fmt: skip
    text = render(data)
    assert "Report &lt;1&gt;" in text and "ATTENTION" in text
    assert "1 DIFFERENCE(S)" in text and '<table class="diff">' in text and "0.01" in text
    parser = HTMLParser()
    parser.feed(text)
    svg = svg_chart(chart)
    assert svg.count("<rect") >= 2 and "<polyline" in svg and "Budget" in svg
