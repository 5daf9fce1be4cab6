from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from d365_anaplan.errors import BadInputData
from d365_anaplan.flows.money import check_amount, currency_decimals, format_amount, parse_amount
from d365_anaplan.flows.textsafe import check_code, csv_writer, neutralise_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1234.50", "1234.50"), ("-12", "-12"), ("0", "0.00"), ("-0", "0.00"), (" 7.1 ", "7.1"), ("007", "007")],
)
def test_parse_amount_accepts_plain_numbers(text: str, expected: str) -> None:
    value = parse_amount(text, decimals=2, where="w")
    assert value == Decimal(expected)
    assert not (value == 0 and value.is_signed())


def test_parse_amount_messages_name_where_and_field() -> None:
    with pytest.raises(BadInputData) as err:
        parse_amount("1,5", decimals=2, where="export 'E' line 8", field="Value")
    assert str(err.value).startswith("export 'E' line 8: field 'Value' value '1,5' is not a plain number")


@pytest.mark.parametrize(
    ("value", "decimals", "text"),
    [
        (Decimal("1234.5"), 2, "1234.50"),
        (Decimal("-0.00"), 2, "0.00"),
        (Decimal("-0"), 0, "0"),
        (Decimal("1E+3"), 2, "1000.00"),
        (Decimal("12.345"), 3, "12.345"),
        (Decimal("999999999999999.99"), 2, "999999999999999.99"),
        (Decimal("-1.10"), 2, "-1.10"),
    ],
)
def test_format_amount(value: Decimal, decimals: int, text: str) -> None:
    assert format_amount(value, decimals) == text


def test_format_amount_never_rounds() -> None:
    with pytest.raises(ValueError, match="more than 2 decimal"):
        format_amount(Decimal("0.005"))


def test_check_amount_bounds() -> None:
    assert check_amount(Decimal("999999999999999.99"), decimals=2, where="w") == Decimal("999999999999999.99")
    for bad in (Decimal("1E15"), Decimal("-1E15"), Decimal("NaN"), Decimal("Infinity"), Decimal("0.001")):
        with pytest.raises(BadInputData, match="w: field 'amount'"):
            check_amount(bad, decimals=2, where="w")
    with pytest.raises(BadInputData, match="must be a Decimal"):
        check_amount(1.5, decimals=2, where="w")  # type: ignore[arg-type]


def test_currency_decimals() -> None:
    assert currency_decimals("usd") == 2
    assert currency_decimals("JPY") == 0
    assert currency_decimals("KWD") == 3


@pytest.mark.parametrize(
    "bad", ["=SUM(A1)", "+1", "-1", "@x", "\tx", "\rx", "\nx", "a\x00b", "a\u2028b", " x", "x "]
)
def test_check_code_refuses(bad: str) -> None:
    with pytest.raises(BadInputData) as err:
        check_code(bad, where="row 4", field="Account")
    assert str(err.value).startswith("row 4: field 'Account' value ")


def test_check_code_accepts() -> None:
    assert check_code("601500", where="w", field="f") == "601500"
    assert check_code("Ventes-Île 東京", where="w", field="f") == "Ventes-Île 東京"
    assert check_code("", where="w", field="f", allow_empty=True) == ""
    with pytest.raises(BadInputData, match="is empty"):
        check_code("", where="w", field="f")


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("=SUM(A1)", "'=SUM(A1)"),
        ("+1", "'+1"),
        ("-x", "'-x"),
        ("@a", "'@a"),
        ("\t=1", "' =1"),
        ("  =1", "'  =1"),
        ("line1\r\nline2\rline3\nline4", "line1 line2 line3 line4"),
        ('plain, with "quotes"', 'plain, with "quotes"'),
        ("", ""),
    ],
)
def test_neutralise_text(text: str, safe: str) -> None:
    assert neutralise_text(text) == safe


def test_csv_writer_dialect() -> None:
    buf = io.StringIO()
    csv_writer(buf).writerow(["a,b", 'say "x"', "plain", "ü"])
    assert buf.getvalue() == '"a,b","say ""x""",plain,ü\n'
    assert next(csv.reader(io.StringIO(buf.getvalue()))) == ["a,b", 'say "x"', "plain", "ü"]
