"""Helpers for the Dynamics unit tests (responses-based)."""

from __future__ import annotations

import json
from typing import Any

import requests

from d365_anaplan.dynamics.odata import ODataClient
from d365_anaplan.dynamics.odata_shapes import dumps_exact

ENV = "https://contoso.operations.dynamics.com"
DATA = f"{ENV}/data"
NS = "Microsoft.Dynamics.DataEntities"


class FakeTokens:
    client_id = "client-123"

    def __init__(self) -> None:
        self.issued = 0
        self.invalidated = 0

    def token(self) -> str:
        self.issued += 1
        return f"tok{self.invalidated}"

    def invalidate(self) -> None:
        self.invalidated += 1


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(**kwargs: Any) -> tuple[ODataClient, FakeTokens, Sleeps]:
    tokens = FakeTokens()
    sleeps = Sleeps()
    kwargs.setdefault("sleep", sleeps)
    client = ODataClient(ENV, tokens, requests.Session(), **kwargs)
    return client, tokens, sleeps


def page(rows: list[dict[str, Any]], next_link: str | None = None) -> str:
    body: dict[str, Any] = {"@odata.context": f"{DATA}/$metadata#X", "value": rows}
    if next_link:
        body["@odata.nextLink"] = next_link
    return dumps_exact(body)


def fo_error_body(
    message: str,
    inner_type: str = "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException",
) -> str:
    return json.dumps(
        {
            "error": {
                "code": "",
                "message": "An error has occurred.",
                "innererror": {"message": message, "type": inner_type, "stacktrace": "at X"},
            }
        }
    )


def metadata(sets: dict[str, list[str]], keys: dict[str, list[str]] | None = None) -> str:
    """A small CSDL document with the given entity sets and (string) properties."""
    types = []
    container = []
    for name, props in sets.items():
        tname = name + "Type"
        key = (keys or {}).get(name, props[:1])
        types.append(
            f'<EntityType Name="{tname}"><Key>'
            + "".join(f'<PropertyRef Name="{k}"/>' for k in key)
            + "</Key>"
            + "".join(f'<Property Name="{p}" Type="Edm.String"/>' for p in props)
            + "</EntityType>"
        )
        container.append(f'<EntitySet Name="{name}" EntityType="{NS}.{tname}"/>')
    return (
        '<?xml version="1.0" encoding="utf-8"?><edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">'
        f'<edmx:DataServices><Schema Namespace="{NS}" xmlns="http://docs.oasis-open.org/odata/ns/edm">'
        + "".join(types)
        + '<EntityContainer Name="Resources">'
        + "".join(container)
        + "</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>"
    )


BI_SETS = {
    "GeneralJournalEntryBiEntities": [
        "JournalNumber",
        "FiscalCalendarYear",
        "Ledger",
        "AccountingDate",
        "SourceKey",
        "SubledgerVoucher",
        "SubledgerVoucherDataAreaId",
        "PostingLayer",
    ],
    "GeneralJournalAccountEntryBiEntities": [
        "SourceKey",
        "GeneralJournalEntry",
        "LedgerAccount",
        "AccountingCurrencyAmount",
        "TransactionCurrencyCode",
        "Text",
    ],
    "LedgerJournalHeaders": [
        "dataAreaId",
        "JournalBatchNumber",
        "JournalName",
        "Description",
        "IsPosted",
        "IntegrationKey",
    ],
    "LedgerJournalLines": ["dataAreaId", "JournalBatchNumber", "LineNumber", "Text"],
    "MainAccounts": ["ChartOfAccounts", "MainAccountId", "Name"],
}


def format_rows(fmt: str = "MainAccount-BusinessUnit-CostCenter-Department") -> str:
    return page(
        [
            {
                "DimensionFormatName": "LF",
                "DimensionFormatType": "DataEntityLedgerDimensionFormat",
                "FinancialDimensionFormat": fmt,
                "IsActive": "Yes",
            }
        ]
    )


def delimiter_rows(value: str = "Hyphen") -> str:
    return page([{"DimensionSegmentDelimiter": value}])


# --- ledgers and fiscal calendars (dynamics-budget-fiscal.md §C, §D) ----------------------------------------

LEDGER_RECIDS = {"USMF": 5637144826, "DEMF": 5637145827}


def books_responses(responses_mod: Any, calendar: str = "Fiscal", year: int = 2025) -> None:
    """Ledgers of USMF (USD) and DEMF (EUR, reporting USD) on one monthly calendar with opening and closing
    periods, registered on ``responses``."""
    import calendar as cal_mod

    ledgers = [
        {"LegalEntityId": c, "Name": c, "LedgerRecId": r, "FiscalCalendar": calendar,
         "AccountingCurrency": "USD" if c == "USMF" else "EUR", "ReportingCurrency": "USD"}
        for c, r in LEDGER_RECIDS.items()
    ]  # fmt: skip
    periods = [{"Calendar": calendar, "FiscalYear": str(year), "PeriodName": "Opening", "Type": "Opening",
                "StartDate": f"{year}-01-01T00:00:00Z", "EndDate": f"{year}-01-01T00:00:00Z"}]  # fmt: skip
    for m in range(1, 13):
        last = cal_mod.monthrange(year, m)[1]
        periods.append({"Calendar": calendar, "FiscalYear": str(year), "PeriodName": f"Period {m}",
                        "Type": "Operating", "StartDate": f"{year}-{m:02d}-01T00:00:00Z",
                        "EndDate": f"{year}-{m:02d}-{last:02d}T00:00:00Z"})  # fmt: skip
    periods.append({"Calendar": calendar, "FiscalYear": str(year), "PeriodName": "Closing", "Type": "Closing",
                    "StartDate": f"{year}-12-01T00:00:00Z", "EndDate": f"{year}-12-31T00:00:00Z"})  # fmt: skip
    responses_mod.get(f"{DATA}/Ledgers", body=page(ledgers))
    responses_mod.get(f"{DATA}/FiscalPeriods", body=page(periods))
