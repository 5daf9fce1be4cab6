from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest

from d365_anaplan.config import ActualsMapping, DimensionMapping
from d365_anaplan.errors import BadInputData
from d365_anaplan.flows.actuals import aggregate_actuals, line_rows
from d365_anaplan.flows.actuals_file import write_actuals_csv
from d365_anaplan.flows.records import GLLine


def gl(
    account: str,
    amount: str,
    day: date = date(2025, 1, 15),
    company: str = "USMF",
    cc: str | None = "CC01",
    dept: str | None = "D1",
    **kw: str,
) -> GLLine:
    dims = {}
    if cc is not None:
        dims["CostCenter"] = cc
    if dept is not None:
        dims["Department"] = dept
    return GLLine(
        company=company, account=account, dimensions=dims, accounting_date=day, amount=Decimal(amount), **kw
    )


def write(
    lines: list[GLLine], mapping: ActualsMapping, dims: list[DimensionMapping], **kw: object
) -> tuple[str, object]:
    buf = io.StringIO()
    if mapping.grain == "monthly":
        rows = aggregate_actuals(lines, dimensions=dims).rows()
    else:
        rows = list(line_rows(lines, dimensions=dims))
    totals = write_actuals_csv(rows, buf, mapping=mapping, dimensions=dims, **kw)  # type: ignore[arg-type]
    return buf.getvalue(), totals


def test_monthly_file_exact_text(actuals_mapping: ActualsMapping, dims: list[DimensionMapping]) -> None:
    lines = [
        gl("601500", "100.10"),
        gl("601500", "-0.10", day=date(2025, 1, 31)),
        gl("110110", "25", cc="CC02", dept=None),
        gl("601500", "7.00", day=date(2025, 2, 1)),
        gl("110110", "1.5", company="DEMF", cc="CC02", dept=None),
    ]
    text, totals = write(lines, actuals_mapping, dims)
    assert text == (
        "Entity,Account,Cost Centre,Dept,Period,Version,Amount\n"
        "DEMF,110110,CC02,,Jan 25,Actual,1.50\n"
        "USMF,110110,CC02,,Jan 25,Actual,25.00\n"
        "USMF,601500,CC01,D1,Jan 25,Actual,100.00\n"
        "USMF,601500,CC01,D1,Feb 25,Actual,7.00\n"
    )
    assert totals.total == Decimal("133.50")  # type: ignore[attr-defined]
    assert totals.line_count == 5  # type: ignore[attr-defined]
    assert totals.row_count == 4  # type: ignore[attr-defined]


def test_monthly_totals_match_hand_sums(
    actuals_mapping: ActualsMapping, dims: list[DimensionMapping]
) -> None:
    lines = []
    expected: dict[tuple[str, str, date, str], Decimal] = {}
    counts: dict[tuple[str, str, date, str], int] = {}
    for i in range(300):
        account = ["601500", "110110", "401100"][i % 3]
        company = ["USMF", "DEMF"][i % 2]
        day = date(2025, 1 + i % 4, 1 + i % 27)
        amount = Decimal(i * 37 % 1000 - 500) / 100
        lines.append(gl(account, str(amount), day=day, company=company, cc=f"CC{i % 5}"))
        key = (company, account, date(day.year, day.month, 1), "")  # currency: the line names none
        expected[key] = expected.get(key, Decimal(0)) + amount
        counts[key] = counts.get(key, 0) + 1
    text, totals = write(lines, actuals_mapping, dims)
    assert totals.by_account == expected  # type: ignore[attr-defined]
    assert totals.lines_by_account == counts  # type: ignore[attr-defined]
    assert totals.total == sum(expected.values())  # type: ignore[attr-defined]
    # The file itself sums to the same figure when read back as Decimal.
    body = list(csv.DictReader(io.StringIO(text)))
    assert sum(Decimal(r["Amount"]) for r in body) == sum(Decimal(str(line.amount)) for line in lines)
    assert len(body) == totals.row_count  # type: ignore[attr-defined]
    # Deterministic: same input in another order gives the same bytes.
    text2, _ = write(list(reversed(lines)), actuals_mapping, dims)
    assert text2 == text


def test_period_format_and_fiscal_tokens(dims: list[DimensionMapping]) -> None:
    mapping = ActualsMapping(period_format="FY{fyy} {MON}", version="Actuals")
    text, _ = write([gl("601500", "1")], mapping, dims, fiscal_year_start_month=7)
    assert text.splitlines()[1] == "USMF,601500,CC01,D1,FY25 JAN,Actuals,1.00"


def test_line_grain_neutralises_descriptions_and_keeps_order(dims: list[DimensionMapping]) -> None:
    mapping = ActualsMapping(grain="line")
    lines = [
        gl("601500", "10", description="=SUM(A1)", source_id="5637144576", voucher="GNJL000123"),
        gl("601500", "-3", description='Say "hi", then\r\nleave', source_id="2", voucher="V2"),
        gl("601500", "1", description="@cmd|'/c calc'!A0", source_id="3", voucher="V3"),
        gl("601500", "2", description="Überweisung – Café 東京", source_id="4", voucher="V4"),
    ]
    text, totals = write(lines, mapping, dims)
    out = text.splitlines()
    assert out[0] == "Entity,Account,Cost Centre,Dept,Period,Version,Amount,Line,Voucher,Description"
    assert out[1] == "USMF,601500,CC01,D1,Jan 25,Actual,10.00,5637144576,GNJL000123,'=SUM(A1)"
    assert out[2] == 'USMF,601500,CC01,D1,Jan 25,Actual,-3.00,2,V2,"Say ""hi"", then leave"'
    assert out[3].endswith(",'@cmd|'/c calc'!A0")
    assert out[4].endswith(",Überweisung – Café 東京")
    assert totals.row_count == 4  # type: ignore[attr-defined]
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[2][-1] == 'Say "hi", then leave'


def test_negative_zero_and_zero_sum_written_as_plain_zero(
    actuals_mapping: ActualsMapping, dims: list[DimensionMapping]
) -> None:
    text, totals = write(
        [gl("601500", "-0.00"), gl("110110", "5"), gl("110110", "-5")], actuals_mapping, dims
    )
    assert "-0" not in text
    assert text.splitlines()[1:] == [
        "USMF,110110,CC01,D1,Jan 25,Actual,0.00",
        "USMF,601500,CC01,D1,Jan 25,Actual,0.00",
    ]
    assert totals.total == 0  # type: ignore[attr-defined]


def test_zero_decimal_currency(actuals_mapping: ActualsMapping, dims: list[DimensionMapping]) -> None:
    text, _ = write([gl("601500", "1200")], actuals_mapping, dims, decimals=0)
    assert text.splitlines()[1].endswith(",1200")
    with pytest.raises(BadInputData, match="more than 0 decimal"):
        list(aggregate_actuals([gl("601500", "12.5")], dimensions=dims, decimals=0).rows())


def test_quotes_commas_and_unicode_in_codes_are_quoted(
    actuals_mapping: ActualsMapping, dims: list[DimensionMapping]
) -> None:
    text, _ = write([gl("6015,00", "1", cc='CC "A"', dept="Ventes-Île")], actuals_mapping, dims)
    assert text.splitlines()[1] == 'USMF,"6015,00","CC ""A""",Ventes-Île,Jan 25,Actual,1.00'
    parsed = list(csv.reader(io.StringIO(text)))[1]
    assert parsed[1:4] == ["6015,00", 'CC "A"', "Ventes-Île"]


def test_summary_is_small_json(actuals_mapping: ActualsMapping, dims: list[DimensionMapping]) -> None:
    import json

    _, totals = write([gl("601500", "1.25"), gl("601500", "2", day=date(2025, 2, 3))], actuals_mapping, dims)
    summary = totals.summary()  # type: ignore[attr-defined]
    assert json.loads(json.dumps(summary)) == {
        "total": "3.25",
        "by_currency": {"": "3.25"},
        "lines": 2,
        "rows": 2,
        "by_period": [
            {"company": "USMF", "period": "2025-01", "currency": "", "amount": "1.25", "label": "Jan 25"},
            {"company": "USMF", "period": "2025-02", "currency": "", "amount": "2", "label": "Feb 25"},
        ],
    }


# --- bad data ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "field", "fragment"),
    [
        (gl("=SUM(A1)", "1", source_id="77"), "account", "'=SUM(A1)'"),
        (gl("+601500", "1", source_id="77"), "account", "starts with '+'"),
        (gl("-601500", "1", source_id="77"), "account", "starts with '-'"),
        (gl("@601500", "1", source_id="77"), "account", "starts with '@'"),
        (gl("\t601500", "1", source_id="77"), "account", "starts with '\\t'"),
        (gl("601500", "1", cc="=1+1", source_id="77"), "dimensions.CostCenter", "'=1+1'"),
        (gl("601500", "1", dept="\rD1", source_id="77"), "dimensions.Department", "starts with"),
        (gl("60\n1500", "1", source_id="77"), "account", "control character"),
        (gl("", "1", source_id="77"), "account", "empty"),
        (gl("601500 ", "1", source_id="77"), "account", "leading or trailing"),
        (gl("601500", "12.345", source_id="77"), "amount", "more than 2 decimal"),
        (gl("601500", "1000000000000000", source_id="77"), "amount", "too large"),
        (gl("601500", "-1000000000000000.00", source_id="77"), "amount", "too large"),
        (gl("601500", "1", day=date(2025, 3, 1), source_id="77"), "accounting_date", "outside the requested"),
        (gl("601500", "1", company="ZZZZ", source_id="77"), "company", "not one of"),
    ],
)
def test_bad_gl_lines_name_record_and_field(
    line: GLLine, field: str, fragment: str, dims: list[DimensionMapping]
) -> None:
    good = gl("601500", "1", source_id="1")
    with pytest.raises(BadInputData) as err:
        aggregate_actuals(
            [good, line],
            dimensions=dims,
            companies={"USMF", "DEMF"},
            periods={date(2025, 1, 1), date(2025, 2, 1)},
        )
    msg = str(err.value)
    assert "GL line 2" in msg
    assert "id 77" in msg
    assert repr(field) in msg
    assert fragment in msg


def test_too_many_decimals_allowed_when_trailing_zeros(dims: list[DimensionMapping]) -> None:
    agg = aggregate_actuals([gl("601500", "1.500000")], dimensions=dims)
    assert agg.rows()[0].amount == Decimal("1.5")


def test_duplicate_column_names_refused(dims: list[DimensionMapping]) -> None:
    mapping = ActualsMapping(amount_column="Dept")
    with pytest.raises(BadInputData, match="'Dept' is configured twice"):
        write([gl("601500", "1")], mapping, dims)


def test_line_grain_bad_voucher_refused(dims: list[DimensionMapping]) -> None:
    with pytest.raises(BadInputData, match="voucher"):
        write([gl("601500", "1", voucher="=cmd", source_id="9")], ActualsMapping(grain="line"), dims)


def test_huge_amounts_sum_exactly(actuals_mapping: ActualsMapping, dims: list[DimensionMapping]) -> None:
    lines = [gl("601500", "999999999999999.99") for _ in range(3)] + [gl("601500", "0.03")]
    text, totals = write(lines, actuals_mapping, dims)
    assert text.splitlines()[1].endswith(",3000000000000000.00")
    assert totals.total == Decimal("3000000000000000.00")  # type: ignore[attr-defined]


def test_three_decimal_currencies_keep_their_fils(
    actuals_mapping: ActualsMapping, dims: list[DimensionMapping]
) -> None:
    """A Kuwaiti dinar line carries fils (3 decimals): it is loaded exactly, written with 3 places; the same
    amount in USD has a decimal too many and is refused, naming the line."""
    text, totals = write(
        [gl("601500", "12.345", company="KWCO", amount_currency="KWD")], actuals_mapping, dims
    )
    assert text.splitlines()[1].split(",")[-1] == "12.345"
    assert totals.by_currency == {"KWD": Decimal("12.345")}  # type: ignore[attr-defined]
    with pytest.raises(BadInputData, match="more than 2 decimal"):
        list(aggregate_actuals([gl("601500", "12.345", amount_currency="USD")], dimensions=dims).rows())
