"""Posted GL rows of F&O: entity sets and fields of the GL routes, and the checks that turn a row's fields into
values (amounts as ``Decimal``, dates, text, named dimension values), each naming the record and field."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from d365_anaplan.dynamics.ledgers import FiscalPeriodInfo
from d365_anaplan.errors import DynamicsBadResponse

HEADER_SET = "GeneralJournalEntryBiEntities"
LINE_SET = "GeneralJournalAccountEntryBiEntities"
PUBLISHED_CANDIDATES = ("GeneralJournalAccountEntries", "GeneralJournalAccountEntryEntities")
FORMAT_SET = "DimensionIntegrationFormats"
PARAMETERS_SET = "DimensionParameters"
COMBINATION_SET = "DimensionCombinations"
HEADER_FIELDS = (
    "SourceKey",
    "JournalNumber",
    "AccountingDate",
    "SubledgerVoucher",
    "Ledger",
    "PostingLayer",
    "FiscalCalendarPeriod",
)
LINE_FIELDS = (
    "SourceKey",
    "GeneralJournalEntry",
    "LedgerAccount",
    "TransactionCurrencyCode",
    "Text",
)
AMOUNT_FIELDS = {
    "accounting": "AccountingCurrencyAmount",
    "reporting": "ReportingCurrencyAmount",
    "transaction": "TransactionCurrencyAmount",
}
DIMENSION_JSON = "LedgerDimensionValuesJson"
PUBLISHED_COMPANY_FIELDS = ("dataAreaId", "DataAreaId", "LegalEntityId", "DataArea", "LedgerName")
PUBLISHED_DISPLAY_FIELDS = ("AccountDisplayValue", "LedgerAccount")


def parse_row_amount(row: dict[str, Any], name: str, what: str) -> Decimal:
    value = row.get(name)
    if type(value) is Decimal and value.is_finite():  # the usual case: OData JSON parsed with Decimal
        return value
    if isinstance(value, bool) or value is None:
        raise DynamicsBadResponse(f"{what}: field {name} is missing or not a number ({value!r})")
    if isinstance(value, Decimal | int):
        amount = Decimal(value)
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise DynamicsBadResponse(f"{what}: field {name} is not a number ({value[:40]!r})") from None
    else:
        raise DynamicsBadResponse(f"{what}: field {name} is not a number ({type(value).__name__})")
    if not amount.is_finite():
        raise DynamicsBadResponse(f"{what}: field {name} is not a finite number ({value!r})")
    return amount


def parse_date(row: dict[str, Any], name: str, what: str) -> date:
    """The date part of an ``Edm.DateTimeOffset`` (date-only fields travel as DateTimeOffset, §2.1)."""
    value = row.get(name)
    if not isinstance(value, str) or len(value) < 10:
        raise DynamicsBadResponse(f"{what}: field {name} is not a date ({value!r})")
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        raise DynamicsBadResponse(f"{what}: field {name} is not an ISO date/time ({value[:40]!r})") from None


def row_text(row: dict[str, Any], name: str, what: str, *, required: bool = True) -> str:
    value = row.get(name)
    if type(value) is str:
        return value
    if value is None:
        if required:
            raise DynamicsBadResponse(f"{what}: field {name} is missing")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise DynamicsBadResponse(f"{what}: field {name} has an unexpected type ({type(value).__name__})")
    return str(value)


@dataclass(frozen=True, slots=True)
class Header:
    company: str
    accounting_date: date
    voucher: str
    period: FiscalPeriodInfo | None


_SEEN_LIMIT = 50_000  # split results kept per reader (memory stays flat however many lines are read)


def remember(seen: dict[str, Any], key: str, value: Any) -> None:
    if len(seen) >= _SEEN_LIMIT:
        seen.clear()
    seen[key] = value


def has_named(row: dict[str, Any], named: bool) -> bool:
    raw = row.get(DIMENSION_JSON) if named else None
    return isinstance(raw, str) and bool(raw.strip())


def split_key(row: dict[str, Any]) -> str:
    return row_text(row, "SourceKey", "", required=False) or row_text(
        row, "GeneralJournalAccountEntryRecId", "", required=False
    )


def named_dimensions(raw: str, display: str, what: str) -> tuple[str, dict[str, str]]:
    """Main account and dimension values by name from ``LedgerDimensionValuesJson``: a list of
    ``{"Name": ..., "Value": ...}`` objects or one object of name -> value (the format is UNCONFIRMED)."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise DynamicsBadResponse(f"{what}: {DIMENSION_JSON} is not JSON ({raw[:60]!r})") from None
    pairs: list[tuple[Any, Any]]
    if isinstance(data, dict):
        pairs = list(data.items())
    elif isinstance(data, list) and all(isinstance(x, dict) for x in data):
        pairs = [(x.get("Name", x.get("DimensionName")), x.get("Value", x.get("DisplayValue"))) for x in data]
    else:
        raise DynamicsBadResponse(
            f"{what}: {DIMENSION_JSON} is neither a list of Name/Value pairs nor an object"
        )
    values: dict[str, str] = {}
    for name, value in pairs:
        if not isinstance(name, str) or not isinstance(value, str | int) or isinstance(value, bool):
            raise DynamicsBadResponse(f"{what}: {DIMENSION_JSON} has an entry without a text Name and Value")
        values[name] = str(value)
    account = values.pop("MainAccount", "")
    if not account:
        raise DynamicsBadResponse(
            f"{what}: {DIMENSION_JSON} names no MainAccount (LedgerAccount {display!r})"
        )
    return account, {k: v for k, v in values.items() if v}
