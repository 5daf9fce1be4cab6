from __future__ import annotations

import io
import json
from datetime import date
from decimal import Decimal

import pytest

from d365_anaplan.config import CloseCalendar, DimensionMapping, PlanExport, PlansMapping
from d365_anaplan.errors import BadInputData
from d365_anaplan.flows.plans import PlanExportReader, iter_text_lines, parse_plan_export
from d365_anaplan.flows.records import PlanRow

HEADER = "Entity,Account,Cost Centre,Dept,Period,Version,Approval,Amount\n"
EXPORT = PlanExport(export_action="Budget export", version="Budget")


def reader(
    text: str | bytes,
    dims: list[DimensionMapping],
    *,
    chunk: int = 0,
    plans: PlansMapping | None = None,
    **kw: object,
) -> PlanExportReader:
    data = text.encode("utf-8") if isinstance(text, str) else text
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)] if chunk else [data]
    options: dict[str, object] = {
        "companies": ["USMF", "DEMF"],
        "calendar": CloseCalendar(fiscal_year_start_month=7, first_period="2024-07"),
        "period_format": "{Mon} {yy}",
        "latest": date(2026, 6, 1),
    }
    options.update(kw)
    return parse_plan_export(
        chunks,
        export=EXPORT,
        plans=plans or PlansMapping(exports=[EXPORT]),
        dimensions=dims,
        **options,  # type: ignore[arg-type]
    )


def parse(
    text: str | bytes, dims: list[DimensionMapping], **kw: object
) -> tuple[list[PlanRow], PlanExportReader]:
    r = reader(text, dims, **kw)
    return list(r), r


GOOD = (
    HEADER
    + "USMF,601500,CC01,D1,Jan 25,Budget,Approved,1234.50\n"
    + "usmf,601500,CC01,D1,Feb 25,Budget,Approved,-12\n"
    + "USMF,601500,CC01,D1,Jan 25,Forecast,Approved,99\n"
    + "DEMF,110110,,D2,Jan 25,Budget,Draft,5\n"
    + "\n"
    + 'DEMF,"110,110","CC ""x""",Ventes-Île,Mar 25,Budget,Approved,0.5\n'
)


@pytest.mark.parametrize("chunk", [0, 1, 7, 64])
def test_parses_rows_and_counts(chunk: int, dims: list[DimensionMapping]) -> None:
    rows, r = parse(GOOD, dims, chunk=chunk)
    assert [(x.line_number, x.company, x.account, x.dimensions, x.period, x.amount) for x in rows] == [
        (
            2,
            "USMF",
            "601500",
            {"CostCenter": "CC01", "Department": "D1"},
            date(2025, 1, 1),
            Decimal("1234.50"),
        ),
        (3, "USMF", "601500", {"CostCenter": "CC01", "Department": "D1"}, date(2025, 2, 1), Decimal("-12")),
        (
            7,
            "DEMF",
            "110,110",
            {"CostCenter": 'CC "x"', "Department": "Ventes-Île"},
            date(2025, 3, 1),
            Decimal("0.5"),
        ),
    ]
    assert all(x.version == "Budget" for x in rows)
    c = r.counters
    assert (c.data_rows, c.accepted, c.skipped_unapproved, c.skipped_blank) == (5, 3, 1, 1)
    assert c.skipped_version == {"Forecast": 1}
    # USMF books in USD, DEMF in EUR: the totals stay per company and per currency, never one sum (1223.00).
    assert c.by_company == {"USMF": Decimal("1222.50"), "DEMF": Decimal("0.5")}
    data = c.to_json({"USMF": "USD", "DEMF": "EUR"}.__getitem__)
    assert data["by_currency"] == {"EUR": "0.5", "USD": "1222.50"}
    assert list(data["by_currency"]) == ["EUR", "USD"], "sorted by currency code"
    assert "total" not in data and "1223" not in json.dumps(data)
    # companies of one currency are added within it
    assert c.by_currency({"USMF": "USD", "DEMF": "USD"}.__getitem__) == {"USD": Decimal("1223.00")}


def test_bom_crlf_and_no_final_newline(dims: list[DimensionMapping]) -> None:
    text = "\ufeff" + HEADER.replace("\n", "\r\n") + "USMF,601500,CC01,D1,Jan 25,Budget,Approved,7"
    rows, _ = parse(text, dims, chunk=3)
    assert len(rows) == 1
    assert rows[0].amount == Decimal("7")


def test_extra_columns_and_column_order_do_not_matter(dims: list[DimensionMapping]) -> None:
    text = "Amount,Note,Dept,Cost Centre,Version,Approval,Period,Account,Entity\n3.25,x,D1,CC1,Budget,Approved,Dec 24,601500,USMF\n"
    rows, _ = parse(text, dims)
    assert rows[0].amount == Decimal("3.25")
    assert rows[0].period == date(2024, 12, 1)


def test_without_approval_column(dims: list[DimensionMapping]) -> None:
    plans = PlansMapping(exports=[EXPORT], approval_column=None)
    text = "Entity,Account,Cost Centre,Dept,Period,Version,Amount\nUSMF,601500,CC01,D1,Jan 25,Budget,1\n"
    rows, _ = parse(text, dims, plans=plans)
    assert len(rows) == 1


def test_period_filter_skips_and_counts(dims: list[DimensionMapping]) -> None:
    rows, r = parse(GOOD, dims, periods={date(2025, 1, 1)})
    assert [x.line_number for x in rows] == [2]
    assert r.counters.skipped_out_of_range == 2


def test_negative_zero_becomes_zero(dims: list[DimensionMapping]) -> None:
    rows, _ = parse(HEADER + "USMF,601500,CC01,D1,Jan 25,Budget,Approved,-0.00\n", dims)
    assert rows[0].amount == 0
    assert not rows[0].amount.is_signed()


def test_rows_are_streamed(dims: list[DimensionMapping]) -> None:
    consumed: list[int] = []

    def chunks():  # type: ignore[no-untyped-def]
        for i, line in enumerate(GOOD.splitlines(keepends=True)):
            consumed.append(i)
            yield line.encode()

    r = parse_plan_export(
        chunks(),
        export=EXPORT,
        plans=PlansMapping(exports=[EXPORT]),
        dimensions=dims,
        companies=["USMF", "DEMF"],
        calendar=CloseCalendar(),
        period_format="{Mon} {yy}",
    )
    assert consumed == []
    it = iter(r)
    next(it)
    assert consumed == [0, 1]
    with pytest.raises(RuntimeError):
        iter(r)


def test_iter_text_lines_splits_chunks() -> None:
    assert list(iter_text_lines([b"a\nb", b"c\r\n", b"", b"d"], source="x")) == ["a\n", "bc\r\n", "d"]


# --- bad data ------------------------------------------------------------------------------------------------


def row(
    amount: str = "1",
    *,
    company: str = "USMF",
    account: str = "601500",
    cc: str = "CC01",
    period: str = "Jan 25",
) -> str:
    return f"{company},{account},{cc},D1,{period},Budget,Approved,{amount}\n"


@pytest.mark.parametrize(
    ("amount", "fragment"),
    [
        ('"1,234.50"', "thousands separators"),
        ('"1.234,50"', "thousands separators or comma decimals"),
        ("1.234.50", "more than one '.'"),
        ("12e3", "exponent"),
        ("NaN", "not a finite number"),
        ("Infinity", "not a finite number"),
        ("", "is empty"),
        ("   ", "is empty"),
        ("(12.00)", "accounting negatives"),
        ("+5", "leading '+'"),
        ("$5", "not a plain number"),
        ("1 234", "spaces"),
        ("12.345", "more than 2 decimal places"),
        ("1000000000000000", "too large"),
        (".5", "not a plain number"),
    ],
)
def test_bad_amounts(amount: str, fragment: str, dims: list[DimensionMapping]) -> None:
    text = HEADER + row() + row(amount, account="601600")
    with pytest.raises(BadInputData) as err:
        parse(text, dims)
    msg = str(err.value)
    assert "export 'Budget export' line 3" in msg
    assert "'Amount'" in msg
    assert fragment in msg


def test_unquoted_thousands_separator_shifts_fields(dims: list[DimensionMapping]) -> None:
    with pytest.raises(BadInputData, match=r"line 3: has 9 field\(s\), the header has 8"):
        parse(HEADER + row() + row("1,234.50", account="601600"), dims)


def test_unicode_and_too_many_decimals_in_zero_decimal_currency(dims: list[DimensionMapping]) -> None:
    rows, _ = parse(HEADER + row("1200", account="Überweisung東京"), dims, decimals=0)
    assert rows[0].account == "Überweisung東京"
    with pytest.raises(BadInputData, match=r"line 2: field 'Amount' value '12.5' has more than 0 decimal"):
        parse(HEADER + row("12.5"), dims, decimals=0)


@pytest.mark.parametrize(
    ("line", "fragments"),
    [
        (row(account="=SUM(A1)"), ["line 3", "'Account'", "'=SUM(A1)'", "formula"]),
        (row(cc="@x"), ["line 3", "'Cost Centre'", "'@x'"]),
        (row(cc="-1"), ["line 3", "'Cost Centre'", "starts with '-'"]),
        (row(account=""), ["line 3", "'Account'", "empty"]),
        (row(company="ZZZ"), ["line 3", "'Entity'", "'ZZZ' is not a configured company"]),
        (row(period="Jan 2025"), ["line 3", "'Period'", "'Jan 2025'", "'{Mon} {yy}'"]),
        (row(period="Jun 24"), ["line 3", "'Period'", "'Jun 24'", "before the first period", "2024-07"]),
        (row(period="Jul 26"), ["line 3", "'Period'", "'Jul 26'", "in the future"]),
        ("USMF,601500,CC01,D1,Jan 25,Budget,Approved\n", ["line 3", "has 7 field(s), the header has 8"]),
        ('USMF,601500,"CC01"x,D1,Jan 25,Budget,Approved,1\n', ["line 3", "not valid CSV"]),
    ],
)
def test_bad_rows_name_line_and_field(line: str, fragments: list[str], dims: list[DimensionMapping]) -> None:
    with pytest.raises(BadInputData) as err:
        parse(HEADER + row() + line, dims)
    for f in fragments:
        assert f in str(err.value)


def test_duplicate_rows_name_both_lines(dims: list[DimensionMapping]) -> None:
    text = HEADER + row("1") + row("2", account="601600") + row("3")
    with pytest.raises(BadInputData) as err:
        parse(text, dims)
    msg = str(err.value)
    assert "line 4: duplicate row" in msg
    assert "already on line 2" in msg
    assert "account 601500" in msg


def test_same_key_other_version_is_not_duplicate(dims: list[DimensionMapping]) -> None:
    text = HEADER + row("1") + "USMF,601500,CC01,D1,Jan 25,Forecast,Approved,2\n"
    rows, r = parse(text, dims)
    assert len(rows) == 1
    assert r.counters.skipped_version == {"Forecast": 1}


def test_rows_of_other_versions_are_not_validated(dims: list[DimensionMapping]) -> None:
    text = HEADER + row("1") + "USMF,=X,CC01,D1,bad,Forecast,Approved,1,234\n".replace(",1,234", ",oops")
    rows, _ = parse(text, dims)
    assert len(rows) == 1


def test_non_utf8_byte_names_the_line(dims: list[DimensionMapping]) -> None:
    data = (HEADER + row()).encode() + b"USMF,601500,Caf\xe9,D1,Jan 25,Budget,Approved,1\n"
    for chunk in (0, 5):
        with pytest.raises(BadInputData) as err:
            parse(data, dims, chunk=chunk)
        assert "line 3: not valid UTF-8 (byte 0xe9 at position 16)" in str(err.value)


def test_utf16_file_is_refused(dims: list[DimensionMapping]) -> None:
    with pytest.raises(BadInputData, match="line 1: not valid UTF-8"):
        parse((HEADER + row()).encode("utf-16"), dims)


def test_missing_columns_in_header(dims: list[DimensionMapping]) -> None:
    text = "Entity,Account,Period,Version,Value\nUSMF,601500,Jan 25,Budget,1\n"
    with pytest.raises(BadInputData) as err:
        parse(text, dims)
    msg = str(err.value)
    assert "header (line 1): missing column(s) 'Amount', 'Approval', 'Cost Centre', 'Dept'" in msg
    assert "found 'Entity', 'Account', 'Period', 'Version', 'Value'" in msg


def test_duplicate_header_column(dims: list[DimensionMapping]) -> None:
    with pytest.raises(BadInputData, match="column 'Dept' appears twice"):
        parse(HEADER.replace("Approval", "Dept") + row(), dims)


@pytest.mark.parametrize("text", ["", HEADER, HEADER + "\n\n"])
def test_empty_export(text: str, dims: list[DimensionMapping]) -> None:
    with pytest.raises(BadInputData, match="export 'Budget export' returned no rows"):
        parse(text, dims)
    rows, r = parse(text, dims, allow_empty=True)
    assert rows == []
    assert r.counters.accepted == 0


def test_only_other_versions_explains_what_was_skipped(dims: list[DimensionMapping]) -> None:
    text = (
        HEADER + "USMF,601500,CC01,D1,Jan 25,Forecast,Approved,2\nUSMF,601500,CC01,D1,Jan 25,Budget,Draft,2\n"
    )
    with pytest.raises(BadInputData) as err:
        parse(text, dims)
    assert (
        "returned no rows of version 'Budget' to load (2 data row(s) skipped: version 'Forecast': 1; not approved: 1)"
        in str(err.value)
    )


def test_quoted_line_break_is_named_by_its_first_line(dims: list[DimensionMapping]) -> None:
    text = HEADER + row() + 'USMF,601500,"CC\n01",D1,Jan 25,Budget,Approved,1\n' + row("x", account="601700")
    with pytest.raises(BadInputData) as err:
        parse(text, dims)
    # the multi-line record starts on line 3 and its cost centre holds a control character
    assert "line 3" in str(err.value)
    assert "control character" in str(err.value)


def test_binary_file_object_is_accepted(dims: list[DimensionMapping]) -> None:
    r = reader(b"", dims)
    assert isinstance(r, PlanExportReader)
    stream = io.BytesIO(GOOD.encode())
    rows = list(
        parse_plan_export(
            stream,
            export=EXPORT,
            plans=PlansMapping(exports=[EXPORT]),
            dimensions=dims,
            companies=["USMF", "DEMF"],
            calendar=CloseCalendar(),
            period_format="{Mon} {yy}",
        )
    )
    assert len(rows) == 3


def test_text_chunks_are_refused() -> None:
    with pytest.raises(TypeError, match="binary mode"):
        list(iter_text_lines(["a,b\n"], source="export 'E'"))  # type: ignore[list-item]
