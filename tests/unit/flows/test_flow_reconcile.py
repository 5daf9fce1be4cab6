from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest

from d365_anaplan.errors import ReconciliationFailed
from d365_anaplan.flows.reconcile import SideTotals, assert_reconciled, reconcile

JAN, FEB = date(2025, 1, 1), date(2025, 2, 1)
D = Decimal


def test_equal_sides_reconcile_whatever_the_split() -> None:
    left = [
        ("USMF", "601500", JAN, D("10.00")),
        ("USMF", "601500", date(2025, 1, 31), D("5.50")),
        ("USMF", "110110", FEB, D("-3")),
    ]
    right = [("USMF", "110110", FEB, D("-3.00")), ("USMF", "601500", JAN, D("15.5"))]
    result = reconcile(left, right, currency="USD", left_name="dynamics", right_name="anaplan")
    assert result.ok
    assert (result.matched_accounts, result.matched_periods) == (2, 2)
    assert result.left_totals == result.right_totals == {"USD": D("12.5")}
    assert "reconciled dynamics with anaplan" in result.to_text()
    assert "(totals USD 12.50)" in result.to_text()
    assert_reconciled(result)


def test_mismatch_and_missing_both_sides() -> None:
    left = [
        ("USMF", "601500", JAN, D("100.00")),
        ("USMF", "110110", JAN, D("20.00")),
        ("DEMF", "401100", FEB, D("0.00")),
    ]
    right = [("USMF", "601500", JAN, D("99.99")), ("USMF", "222222", JAN, D("7.00"))]
    result = reconcile(
        left, right, currency={"USMF": "USD", "DEMF": "EUR"}, left_name="dynamics", right_name="anaplan"
    )
    assert not result.ok
    acc = {
        (d.kind, d.account): (d.left, d.right, d.difference)
        for d in result.differences
        if d.level == "account"
    }
    assert acc == {
        ("mismatch", "601500"): (D("100.00"), D("99.99"), D("0.01")),
        ("missing_right", "110110"): (D("20.00"), None, D("20.00")),
        ("missing_left", "222222"): (None, D("7.00"), D("-7.00")),
    }
    # A zero total present on one side only is not a difference.
    assert result.matched_accounts == 1
    per = [(d.kind, d.company, d.period, d.difference) for d in result.differences if d.level == "period"]
    # USMF Jan: 120.00 vs 106.99; DEMF Feb 0 vs nothing matches.
    assert per == [("mismatch", "USMF", JAN, D("13.01"))]
    assert result.matched_periods == 1
    data = json.loads(json.dumps(result.to_json(max_items=2)))
    assert data["mismatches"] == 2
    assert data["missing_left"] == 1
    assert data["missing_right"] == 1
    assert data["truncated"] == 2
    assert data["differences"][0] == {
        "level": "account",
        "kind": "missing_right",
        "company": "USMF",
        "account": "110110",
        "period": "2025-01",
        "currency": "USD",
        "left": "20.00",
        "right": None,
        "difference": "20.00",
    }
    assert data["differences"][1]["level"] == "period"


def test_assert_reconciled_names_top_differences() -> None:
    left = [("USMF", f"6{i:05d}", JAN, D(i)) for i in range(1, 30)]
    right = [("USMF", f"6{i:05d}", JAN, D(i) if i % 2 else D(0)) for i in range(1, 30)]
    with pytest.raises(ReconciliationFailed) as err:
        assert_reconciled(
            reconcile(left, right, currency="USD", left_name="file", right_name="anaplan"), top=3
        )
    msg = str(err.value)
    # Differences are the even accounts 2..28 (14 keys) plus the USMF January total (sum of 2..28 = 210).
    assert "15 difference(s) beyond tolerance 0" in msg
    lines = msg.splitlines()
    assert lines[1] == "  USMF 2025-01 (all accounts) in USD: file 435, anaplan 225, difference 210"
    assert lines[2] == "  USMF 600028 2025-01 in USD: file 28, anaplan 0, difference 28"
    assert lines[3] == "  USMF 600026 2025-01 in USD: file 26, anaplan 0, difference 26"
    assert lines[4] == "  ... and 12 more"


def test_tolerance() -> None:
    left = [("USMF", "601500", JAN, D("100.00"))]
    right = [("USMF", "601500", JAN, D("100.01"))]
    assert not reconcile(left, right, currency="USD").ok
    assert reconcile(left, right, currency="USD", tolerance=D("0.01")).ok
    assert reconcile(left, [], currency="USD", tolerance=D("100")).ok
    with pytest.raises(ValueError, match="non-negative"):
        reconcile(left, right, currency="USD", tolerance=D("-1"))


def test_float_amounts_refused() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        SideTotals.from_items("x", [("USMF", "1", JAN, 1.5)])  # type: ignore[list-item]


def test_many_small_amounts_sum_exactly() -> None:
    # 10,000 lines of 0.01 against one total of 100.00: exact with Decimal (a float sum would drift).
    left = [("USMF", "601500", JAN, D("0.01"))] * 10_000
    assert reconcile(left, [("USMF", "601500", JAN, D("100.00"))], currency="USD").ok


def test_totals_per_currency_never_one_sum() -> None:
    """USMF books in USD, DEMF in EUR: the sides' totals are per currency; no number adds the two."""
    left = [("USMF", "601500", JAN, D("1234.00")), ("DEMF", "601500", JAN, D("567.00"))]
    right = [("USMF", "601500", JAN, D("1234.00")), ("DEMF", "601500", JAN, D("560.00"))]
    currencies = {"USMF": "USD", "DEMF": "EUR"}
    ok = reconcile(left, left, currency=currencies, left_name="Anaplan", right_name="F&O")
    assert ok.left_totals == {"EUR": D("567.00"), "USD": D("1234.00")}
    assert list(ok.left_totals) == ["EUR", "USD"], "sorted by currency code"
    assert ok.to_text().endswith("(totals EUR 567.00; USD 1,234.00)")
    bad = reconcile(left, right, currency=currencies, left_name="Anaplan", right_name="F&O")
    data = json.loads(json.dumps(bad.to_json()))
    assert data["left_totals"] == {"EUR": "567.00", "USD": "1234.00"}
    assert data["right_totals"] == {"EUR": "560.00", "USD": "1234.00"}
    assert {d["currency"] for d in data["differences"]} == {"EUR"}, "DEMF's difference is in EUR"
    text = bad.to_text()
    assert "totals Anaplan EUR 567.00; USD 1,234.00 vs F&O EUR 560.00; USD 1,234.00" in text
    assert "DEMF 601500 2025-01 in EUR: Anaplan 567.00, F&O 560.00, difference 7.00" in text
    for summed in ("1801", "1,801", "1794", "1,794"):  # USD + EUR on either side
        assert summed not in text and summed not in json.dumps(data)


def test_a_company_without_currency_is_refused() -> None:
    with pytest.raises(ValueError, match="no currency for DEMF"):
        reconcile([("DEMF", "601500", JAN, D(1))], [], currency={"USMF": "USD"})
