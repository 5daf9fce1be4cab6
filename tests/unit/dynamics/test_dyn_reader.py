"""Discovery, GL routes, dimension parsing and master data with `responses` (dynamics-fo.md §0, §2.3, §3)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from dyn_support import (
    BI_SETS,
    DATA,
    LEDGER_RECIDS,
    books_responses,
    delimiter_rows,
    format_rows,
    make_client,
    metadata,
    page,
)

from d365_anaplan.config import LedgerOptions
from d365_anaplan.dynamics.dimensions import DimensionFormat, delimiter_from_enum
from d365_anaplan.dynamics.master_data import FINANCIAL_DIMENSION_VALUES_CAVEAT, GLRoute
from d365_anaplan.dynamics.metadata import parse_metadata
from d365_anaplan.dynamics.reader import DynamicsReader
from d365_anaplan.errors import BadInputData, DynamicsBadResponse, DynamicsRouteUnavailable

# The published entity below does not carry FiscalCalendarPeriod: its windows start after the opening period (1 Jan),
# which such a route cannot tell from operating lines (test_a_route_without_periods_refuses_year_end_windows).
PUBLISHED = {
    "GeneralJournalAccountEntries": [
        "GeneralJournalAccountEntryRecId",
        "AccountingDate",
        "AccountDisplayValue",
        "AccountingCurrencyAmount",
        "DataArea",
        "Voucher",
        "TransactionCurrencyCode",
        "PostingLayer",
        "PostingType",
    ]
}


def reader(**kw: object) -> DynamicsReader:
    """A reader whose display values follow the integration format (unless ``options`` says otherwise)."""
    client, _, _ = make_client(page_size=kw.pop("page_size", 5000))  # type: ignore[arg-type]
    kw.setdefault("options", LedgerOptions(display_value_order="format"))
    return DynamicsReader(client, companies=["usmf", "DEMF"], **kw)  # type: ignore[arg-type]


def _qs(i: int) -> dict[str, list[str]]:
    return parse_qs(urlsplit(responses.calls[i].request.url).query)


def _qs_of(entity_set: str) -> dict[str, list[str]]:
    """The query of the first call to ``entity_set``."""
    for call in responses.calls:
        if urlsplit(call.request.url).path.endswith("/" + entity_set):
            return parse_qs(urlsplit(call.request.url).query)
    raise AssertionError(f"no call to {entity_set}")


@responses.activate
def test_discovery_prefers_published_entity() -> None:
    responses.get(f"{DATA}/$metadata", body=metadata({**BI_SETS, **PUBLISHED}))
    disc = reader().discover()
    assert disc.route is GLRoute.PUBLISHED and disc.gl_entity_set == "GeneralJournalAccountEntries"
    assert disc.has_integration_key


@responses.activate
def test_discovery_falls_back_to_bi_entities_and_reads_metadata_once() -> None:
    responses.get(f"{DATA}/$metadata", body=metadata(BI_SETS))
    r = reader()
    assert r.discover().route is GLRoute.BI
    r.discover()
    assert len(responses.calls) == 1


@responses.activate
def test_no_route_gives_one_clear_error() -> None:
    responses.get(f"{DATA}/$metadata", body=metadata({"MainAccounts": ["MainAccountId"]}))
    with pytest.raises(DynamicsRouteUnavailable) as exc:
        reader().discover()
    text = str(exc.value)
    assert (
        "GeneralJournalAccountEntries" in text
        and "GeneralJournalEntryBiEntities" in text
        and "GeneralJournalAccountEntryBiEntities" in text
    )


@responses.activate
def test_forced_published_route_without_the_set() -> None:
    responses.get(f"{DATA}/$metadata", body=metadata(BI_SETS))
    with pytest.raises(DynamicsRouteUnavailable, match="publish GeneralJournalAccountEntryEntity"):
        reader(gl_route="published").discover()


def _formats() -> None:
    books_responses(responses)
    responses.get(f"{DATA}/DimensionIntegrationFormats", body=format_rows())
    responses.get(f"{DATA}/DimensionParameters", body=delimiter_rows())


@responses.activate
def test_bi_route_joins_headers_and_lines_and_parses_dimensions() -> None:
    responses.get(f"{DATA}/$metadata", body=metadata(BI_SETS))
    _formats()
    headers = [
        {
            "SourceKey": 100,
            "AccountingDate": "2025-01-31T00:00:00Z",
            "SubledgerVoucher": "V1",
            "Ledger": LEDGER_RECIDS["USMF"],
            "SubledgerVoucherDataAreaId": "usmf",
            "PostingLayer": "Current",
        },
        {
            "SourceKey": 101,
            "AccountingDate": "2025-01-31T00:00:00Z",
            "SubledgerVoucher": "V2",
            "Ledger": LEDGER_RECIDS["DEMF"],
            "SubledgerVoucherDataAreaId": "demf",
            "PostingLayer": "Current",
        },
        {
            "SourceKey": 102,
            "AccountingDate": "2025-01-31T00:00:00Z",
            "SubledgerVoucher": "V3",
            "Ledger": LEDGER_RECIDS["USMF"],
            "SubledgerVoucherDataAreaId": "usmf",
            "PostingLayer": "Operations",
        },
    ]
    responses.get(f"{DATA}/GeneralJournalEntryBiEntities", body=page(headers))
    lines = [
        {
            "SourceKey": 1,
            "GeneralJournalEntry": 100,
            "LedgerAccount": "601100-001-OU_3566-022",
            "AccountingCurrencyAmount": Decimal("100.25"),
            "TransactionCurrencyCode": "USD",
            "Text": "a",
        },
        {
            "SourceKey": 2,
            "GeneralJournalEntry": 100,
            "LedgerAccount": "110110-001--",
            "AccountingCurrencyAmount": Decimal("-100.25"),
            "TransactionCurrencyCode": "USD",
            "Text": "b",
        },
        {
            "SourceKey": 3,
            "GeneralJournalEntry": 101,
            "LedgerAccount": "401100",
            "AccountingCurrencyAmount": -5,
            "TransactionCurrencyCode": "EUR",
            "Text": "c",
        },
        {
            "SourceKey": 4,
            "GeneralJournalEntry": 102,
            "LedgerAccount": "401100",
            "AccountingCurrencyAmount": 9,
            "TransactionCurrencyCode": "USD",
            "Text": "operations layer",
        },
    ]
    responses.get(f"{DATA}/GeneralJournalAccountEntryBiEntities", body=page(lines))
    out = list(reader().gl_lines(date(2025, 1, 1), date(2025, 2, 1)))
    assert [(g.company, g.account, g.amount, g.voucher) for g in out] == [
        ("USMF", "601100", Decimal("100.25"), "V1"),
        ("USMF", "110110", Decimal("-100.25"), "V1"),
        ("DEMF", "401100", Decimal("-5"), "V2"),
    ]
    assert out[0].dimensions == {"BusinessUnit": "001", "CostCenter": "OU_3566", "Department": "022"}
    assert out[1].dimensions == {"BusinessUnit": "001"}
    assert out[0].accounting_date == date(2025, 1, 31) and out[0].source_id == "1"
    hq = _qs_of("GeneralJournalEntryBiEntities")
    layer = "Microsoft.Dynamics.DataEntities.CurrentOperationsTax'Current'"
    budget = "Microsoft.Dynamics.DataEntities.LedgerTransType'Budget'"
    assert hq["$filter"] == [
        "(AccountingDate ge 2025-01-01T00:00:00Z and AccountingDate lt 2025-02-01T00:00:00Z) and "
        f"(Ledger eq {LEDGER_RECIDS['USMF']} or Ledger eq {LEDGER_RECIDS['DEMF']}) and (PostingLayer eq {layer}) and "
        f"(JournalCategory ne {budget})"
    ]
    assert hq["cross-company"] == ["true"] and hq["$orderby"] == ["SourceKey"]
    assert [g.amount_currency for g in out] == ["USD", "USD", "EUR"]
    assert {(g.fiscal_year, g.fiscal_period, g.period_name) for g in out} == {("2025", 1, "Period 1")}
    lq = _qs_of("GeneralJournalAccountEntryBiEntities")
    assert lq["$filter"] == ["(GeneralJournalEntry ge 100) and (GeneralJournalEntry le 101)"]


@responses.activate
def test_sparse_header_keys_use_or_groups() -> None:
    responses.get(f"{DATA}/$metadata", body=metadata(BI_SETS))
    _formats()
    headers = [
        {
            "SourceKey": k,
            "AccountingDate": "2025-01-31T00:00:00Z",
            "SubledgerVoucher": "V",
            "SubledgerVoucherDataAreaId": "usmf",
            "Ledger": LEDGER_RECIDS["USMF"],
        }
        for k in (10, 1000, 99999)
    ]
    responses.get(f"{DATA}/GeneralJournalEntryBiEntities", body=page(headers))
    responses.get(f"{DATA}/GeneralJournalAccountEntryBiEntities", body=page([]))
    assert list(reader().gl_lines(date(2025, 1, 1), date(2025, 2, 1))) == []
    assert _qs_of("GeneralJournalAccountEntryBiEntities")["$filter"] == [
        "GeneralJournalEntry eq 10 or GeneralJournalEntry eq 1000 or GeneralJournalEntry eq 99999"
    ]


@responses.activate
def test_read_stops_before_time_limit_and_resumes() -> None:
    responses.get(f"{DATA}/$metadata", body=metadata(PUBLISHED))
    _formats()
    nxt = f"{DATA}/GeneralJournalAccountEntries?$skiptoken=2"
    row = {
        "GeneralJournalAccountEntryRecId": 1,
        "AccountingDate": "2025-01-05T00:00:00Z",
        "AccountDisplayValue": "601100---022",
        "AccountingCurrencyAmount": 1,
        "DataArea": "usmf",
        "Voucher": "V",
    }
    responses.get(
        f"{DATA}/GeneralJournalAccountEntries",
        body=page([row], nxt),
        match=[responses.matchers.query_param_matcher({}, strict_match=False)],
    )
    remaining = [100.0]
    client, _, _ = make_client(remaining_time=lambda: remaining[0], safety_seconds=30)
    r = DynamicsReader(client, companies=["USMF"], options=LedgerOptions(display_value_order="format"))
    read = r.gl_lines(date(2025, 1, 2), date(2025, 2, 1))
    remaining[0] = 10.0  # the Lambda is about to time out
    first = list(read)
    assert len(first) == 1 and read.stopped_early and read.continuation
    assert first[0].dimensions == {"Department": "022"}
    responses.get(nxt, body=page([{**row, "GeneralJournalAccountEntryRecId": 2}]))
    remaining[0] = 900.0
    again = r.gl_lines(date(2025, 1, 2), date(2025, 2, 1), continuation=read.continuation)
    rest = list(again)
    assert [g.source_id for g in rest] == ["2"] and again.continuation is None
    with pytest.raises(BadInputData, match="another read"):
        r.gl_lines(date(2025, 1, 2), date(2025, 3, 1), continuation=read.continuation)


@responses.activate
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("AccountingDate", "31/01/2025", "not an ISO date"),
        ("AccountingDate", None, "not a date"),
        ("AccountingCurrencyAmount", "12,50", "not a number"),
        ("AccountingCurrencyAmount", True, "not a number"),
        ("AccountDisplayValue", "601100-001-OU_3566-022-EXTRA", "has 5 segments"),
        ("AccountDisplayValue", "-001--", "no main account"),
    ],
)
def test_bad_gl_rows_fail_clearly(field: str, value: object, message: str) -> None:
    responses.get(f"{DATA}/$metadata", body=metadata(PUBLISHED))
    _formats()
    row: dict[str, object] = {
        "GeneralJournalAccountEntryRecId": 7,
        "AccountingDate": "2025-01-05T00:00:00Z",
        "AccountDisplayValue": "601100",
        "AccountingCurrencyAmount": 1,
        "DataArea": "usmf",
    }
    row[field] = value
    responses.get(f"{DATA}/GeneralJournalAccountEntries", body=page([row]))
    with pytest.raises(DynamicsBadResponse, match=message) as exc:
        list(reader().gl_lines(date(2025, 1, 2), date(2025, 2, 1)))
    assert "GeneralJournalAccountEntries row 7" in str(exc.value)


@responses.activate
def test_master_data_and_dimension_caveat() -> None:
    responses.get(
        f"{DATA}/MainAccounts",
        body=page(
            [
                {
                    "ChartOfAccounts": "Shared",
                    "MainAccountId": "110110",
                    "Name": "Bank",
                    "MainAccountType": "Asset",
                }
            ]
        ),
    )
    responses.get(
        f"{DATA}/FinancialDimensionValues",
        body=page(
            [
                {"DimensionValue": "OU_3566", "Description": "Finance", "LegalEntityId": ""},
                {"DimensionValue": "OU_3566", "Description": "Finance", "LegalEntityId": "usmf"},
            ]
        ),
    )
    responses.get(f"{DATA}/LegalEntities", body=page([{"LegalEntityId": "usmf", "Name": "Contoso"}]))
    responses.get(
        f"{DATA}/JournalNames",
        body=page([{"dataAreaId": "usmf", "Name": "Budget", "Description": "d", "JournalType": "Daily"}]),
    )
    responses.get(
        f"{DATA}/DimensionAttributes", body=page([{"DimensionName": "CostCenter", "ReportColumnName": "CC"}])
    )
    r = reader()
    accounts = list(r.main_accounts())
    assert accounts[0].account == "110110" and accounts[0].account_type == "Asset"
    assert "cross-company" not in _qs(0)  # shared entity
    values = r.dimension_values("CostCenter")
    assert [v.value for v in values.values] == ["OU_3566"] and values.complete is False
    assert values.caveat == FINANCIAL_DIMENSION_VALUES_CAVEAT and "unused values are missing" in values.caveat
    assert _qs(1)["$filter"] == [
        "(LegalEntityId eq 'USMF' or LegalEntityId eq 'DEMF' or LegalEntityId eq '') and (FinancialDimension eq 'CostCenter')"
    ]
    assert r.legal_entities()[0].company == "USMF"
    assert r.journal_names()[0].name == "Budget"
    assert r.dimension_attributes()[0].name == "CostCenter"


@responses.activate
def test_no_active_ledger_format() -> None:
    responses.get(f"{DATA}/DimensionIntegrationFormats", body=page([]))
    with pytest.raises(
        DynamicsRouteUnavailable, match="Financial dimension configuration for integrating applications"
    ):
        reader().ledger_format()
    q = _qs(0)["$filter"][0]
    assert "DimensionHierarchyType'DataEntityLedgerDimensionFormat'" in q and "NoYes'Yes'" in q


def test_dimension_format_build_and_parse() -> None:
    fmt = DimensionFormat.parse("LF", "MainAccount-BusinessUnit-CostCenter-Department", "-")
    assert fmt.build("601100", {"CostCenter": "OU_3566", "Department": "022"}) == "601100--OU_3566-022"
    assert fmt.build("110110", {}) == "110110---"
    assert fmt.parse_value("601100--OU_3566-022") == (
        "601100",
        {"CostCenter": "OU_3566", "Department": "022"},
    )
    assert fmt.parse_value("401100") == ("401100", {})
    assert fmt.build_from_segments(["601100", "001"]) == "601100-001--"
    with pytest.raises(BadInputData, match="drop the surplus"):
        fmt.build_from_segments(["601100", "001", "OU_3566", "022", "X"])
    with pytest.raises(BadInputData, match="not in the active"):
        fmt.build("601100", {"Project": "P1"})
    with pytest.raises(BadInputData, match="contains the segment delimiter"):
        fmt.build("601100", {"CostCenter": "OU-3566"})
    with pytest.raises(BadInputData, match="main account is empty"):
        fmt.build(" ", {})
    other = DimensionFormat.parse("LF", "MainAccount.Department", ".")
    assert other.build("605140", {"Department": "001"}) == "605140.001"


def test_dimension_format_syntax_variants_and_errors() -> None:
    assert DimensionFormat.parse("x", "MainAccount | Department | CostCenter", "-").segments == (
        "MainAccount",
        "Department",
        "CostCenter",
    )
    with pytest.raises(DynamicsBadResponse, match="must start with MainAccount"):
        DimensionFormat.parse("x", "Department-MainAccount", "-")
    with pytest.raises(DynamicsBadResponse, match="repeats"):
        DimensionFormat.parse("x", "MainAccount-Department-Department", "-")
    assert (
        delimiter_from_enum("Hyphen") == "-"
        and delimiter_from_enum("DoubleBar") == "||"
        and delimiter_from_enum(".") == "."
    )
    with pytest.raises(DynamicsBadResponse):
        delimiter_from_enum("Semicolon")


def test_metadata_parsing_and_refusals() -> None:
    meta = parse_metadata(
        metadata(BI_SETS, keys={"LedgerJournalHeaders": ["dataAreaId", "JournalBatchNumber"]})
    )
    info = meta.entity_set("LedgerJournalHeaders")
    assert (
        info is not None
        and info.keys == ("dataAreaId", "JournalBatchNumber")
        and meta.has_property("LedgerJournalHeaders", "IntegrationKey")
    )
    with pytest.raises(DynamicsBadResponse, match="DTD"):
        parse_metadata('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x/>')
    with pytest.raises(DynamicsBadResponse, match="not well-formed"):
        parse_metadata("<edmx:Edmx")
    with pytest.raises(DynamicsBadResponse, match="no entity sets"):
        parse_metadata('<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"/>')


# --- ledgers, fiscal calendars and named dimensions (dynamics-budget-fiscal.md §C, §D) ------------------


@responses.activate
def test_ledgers_and_fiscal_periods_number_operating_periods_and_closing_after_them() -> None:
    from d365_anaplan.dynamics.ledgers import LedgerBooks

    books_responses(responses)
    client, _, _ = make_client()
    books = LedgerBooks.read(client, ["usmf", "DEMF"], period_keys=False)
    assert (
        books.ledger("DEMF").accounting_currency == "EUR" and books.ledger("DEMF").reporting_currency == "USD"
    )
    assert books.company_of_ledger(LEDGER_RECIDS["DEMF"]) == "DEMF" and books.company_of_ledger(1) is None
    periods = books.periods["Fiscal"]
    assert [(p.name, p.type, p.number) for p in periods if p.type != "Operating"] == [
        ("Opening", "Opening", 0),
        ("Closing", "Closing", 13),
    ]
    assert books.operating_period("USMF", date(2025, 12, 31), "x").number == 12
    assert books.is_monthly("USMF")
    assert "Ledgers" in urlsplit(responses.calls[0].request.url).path
    assert _qs(0)["$filter"] == ["LegalEntityId eq 'USMF' or LegalEntityId eq 'DEMF'"]


@responses.activate
def test_a_company_without_a_ledger_is_named() -> None:
    from d365_anaplan.dynamics.ledgers import LedgerBooks

    books_responses(responses)
    client, _, _ = make_client()
    with pytest.raises(DynamicsRouteUnavailable, match=r"no ledger for legal entity \['FRRT'\]"):
        LedgerBooks.read(client, ["USMF", "FRRT"])


def test_named_dimension_values_win_over_positions() -> None:
    from d365_anaplan.dynamics.gl_rows import named_dimensions

    raw = '[{"Name":"MainAccount","Value":"601100"},{"Name":"CostCenter","Value":"OU_3566"},{"Name":"BusinessUnit","Value":"001"}]'
    assert named_dimensions(raw, "601100-OU_3566-001", "row 1") == (
        "601100",
        {"CostCenter": "OU_3566", "BusinessUnit": "001"},
    )
    assert named_dimensions('{"MainAccount": "110110", "BusinessUnit": "002"}', "110110-002", "row 2") == (
        "110110",
        {"BusinessUnit": "002"},
    )
    with pytest.raises(DynamicsBadResponse, match="row 3: LedgerDimensionValuesJson names no MainAccount"):
        named_dimensions('[{"Name":"CostCenter","Value":"OU_1"}]', "x", "row 3")
    with pytest.raises(DynamicsBadResponse, match="is not JSON"):
        named_dimensions("[{", "x", "row 4")


@responses.activate
def test_lines_sharing_a_display_value_get_their_own_dimensions() -> None:
    """Splits are remembered per read; each line still owns its dimension values (and a bad line fails)."""
    responses.get(f"{DATA}/$metadata", body=metadata(PUBLISHED))
    _formats()
    rows = [
        {
            "GeneralJournalAccountEntryRecId": i,
            "AccountingDate": "2025-01-05T00:00:00Z",
            "AccountDisplayValue": "601100-001-OU_3566-022",
            "AccountingCurrencyAmount": Decimal("1.10"),
            "DataArea": "usmf",
        }
        for i in (1, 2)
    ]
    responses.get(f"{DATA}/GeneralJournalAccountEntries", body=page(rows))
    r = reader()
    first, second = r.gl_lines(date(2025, 1, 2), date(2025, 2, 1))
    assert (
        first.dimensions
        == second.dimensions
        == {"BusinessUnit": "001", "CostCenter": "OU_3566", "Department": "022"}
    )
    first.dimensions["CostCenter"] = "changed"
    assert second.dimensions["CostCenter"] == "OU_3566"
    again = list(r.gl_lines(date(2025, 1, 2), date(2025, 2, 1)))
    assert again[0].dimensions["CostCenter"] == "OU_3566"


def test_checked_gl_line_is_the_validated_line() -> None:
    from d365_anaplan.flows.records import GLLine

    values = {
        "company": "USMF", "account": "601100", "dimensions": {"CostCenter": "OU_1"},
        "accounting_date": date(2025, 1, 5), "amount": Decimal("-1.10"), "currency": "USD", "voucher": "V1",
        "description": "d", "source_id": "7", "amount_currency": "USD", "period_type": "", "fiscal_year": "2025",
        "fiscal_period": 1, "period_name": "Period 1", "period_end": date(2025, 1, 31), "period_monthly": True,
        "balance_sheet": False,
    }  # fmt: skip
    line = GLLine.checked(**values)
    assert line == GLLine.model_validate(values) and line.model_fields_set == set(values)
    assert line.model_copy(update={"account": "1"}).account == "1" and line.account == "601100"
    with pytest.raises(TypeError, match="exactly the fields"):
        GLLine.checked(**{k: v for k, v in values.items() if k != "currency"})


def _published_without(*missing: str) -> dict[str, list[str]]:
    return {
        "GeneralJournalAccountEntries": [
            f for f in PUBLISHED["GeneralJournalAccountEntries"] if f not in missing
        ]
    }


@responses.activate
@pytest.mark.parametrize(
    ("missing", "options", "named"),
    [
        (
            ("PostingLayer",),
            {},
            "PostingLayer is not published, so lines of other posting layers cannot be left out",
        ),
        (
            ("PostingType",),
            {},
            "neither JournalCategory nor PostingType is published, so budget appropriation",
        ),
    ],
)
def test_a_published_entity_that_cannot_filter_is_refused(
    missing: tuple[str, ...], options: dict[str, object], named: str
) -> None:
    """Without the column the filter needs, the lines of other posting layers or the budget appropriation
    entries would be loaded as actuals: the route is refused, naming the column and the remedy."""
    responses.get(f"{DATA}/$metadata", body=metadata(_published_without(*missing)))
    _formats()
    with pytest.raises(DynamicsRouteUnavailable, match=named) as exc:
        list(reader(options=LedgerOptions(display_value_order="format", **options)).gl_lines(
            date(2025, 2, 1), date(2025, 3, 1)))  # fmt: skip
    assert "gl_route: bi" in str(exc.value)


@responses.activate
def test_a_route_without_periods_refuses_year_end_windows() -> None:
    """A published entity without FiscalCalendarPeriod cannot tell the opening entries of 1 January from that
    day's operating lines (or the closing period's from December's): a window covering them is refused while
    the connection leaves opening and closing entries out; February is read; including Opening reads January."""
    responses.get(f"{DATA}/$metadata", body=metadata(PUBLISHED))
    _formats()
    responses.get(f"{DATA}/GeneralJournalAccountEntries", body=page([]))
    with pytest.raises(DynamicsRouteUnavailable, match=r"USMF's opening entries of 2025 .*dated 2025-01-01"):
        list(reader().gl_lines(date(2025, 1, 1), date(2025, 2, 1)))
    assert list(reader().gl_lines(date(2025, 2, 1), date(2025, 3, 1))) == []
    both = LedgerOptions(display_value_order="format", period_types=["Opening", "Operating"])
    assert list(reader(options=both).gl_lines(date(2025, 1, 1), date(2025, 2, 1))) == []


@responses.activate
def test_check_window_refuses_with_the_runs_message_before_reading() -> None:
    """``check`` asks the reader about the run's months: the refusal a read would give, before any GL request."""
    responses.get(f"{DATA}/$metadata", body=metadata(PUBLISHED))
    _formats()
    r = reader()
    with pytest.raises(DynamicsRouteUnavailable) as checked:
        r.check_window(date(2025, 1, 1), date(2025, 2, 1))
    assert not any("GeneralJournalAccountEntries?" in c.request.url for c in responses.calls)
    responses.get(f"{DATA}/GeneralJournalAccountEntries", body=page([]))
    with pytest.raises(DynamicsRouteUnavailable) as read:
        list(reader().gl_lines(date(2025, 1, 1), date(2025, 2, 1)))
    assert str(checked.value) == str(read.value)
    assert "filters posting layers (Current)" in r.check_window(date(2025, 2, 1), date(2025, 3, 1))


@pytest.mark.parametrize("recid", ["\u00b2", "\u0663", "9" * 5000])
@responses.activate
def test_a_package_fiscal_period_that_is_not_an_ascii_recid_is_left_out_not_raised(recid: str) -> None:
    """Package text is not trusted: a superscript or Arabic-Indic digit, or a 5000-digit value, is no RecId."""
    responses.get(f"{DATA}/$metadata", body=metadata(PUBLISHED))
    _formats()
    row = {
        "AccountingDate": "2025-02-05",
        "AccountDisplayValue": "601100-001-OU_3566-022",
        "AccountingCurrencyAmount": "1.10",
        "DataArea": "usmf",
        "PostingLayer": "Current",
        "PostingType": "LedgerJournal",
        "FiscalCalendarPeriod": recid,
        "_line": 2,
    }
    lines = list(
        reader().package_lines([row], frozenset(row), date(2025, 2, 1), date(2025, 3, 1), "package p.zip")
    )
    assert [line.dimensions["CostCenter"] for line in lines] == ["OU_3566"]
