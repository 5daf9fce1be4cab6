"""Reading F&O: route discovery, posted GL lines and master data (dynamics-fo.md §0, §2.3, §3, §8).

Posted GL lines are not on OData by default. :meth:`DynamicsReader.discover` reads ``$metadata`` once per
run and picks a route: a published general-journal-account-entry entity set if the customer has one,
else the BI entities (``GeneralJournalEntryBiEntities`` headers give AccountingDate and the company,
``GeneralJournalAccountEntryBiEntities`` lines give the ledger account display value and amounts). The
dimension values of a line are parsed from its display value with the active ledger dimension format and
the segment delimiter. With neither route, :class:`~d365_anaplan.errors.DynamicsRouteUnavailable` says
what to publish.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Literal

from d365_anaplan.errors import BadInputData, DynamicsBadResponse, DynamicsRouteUnavailable
from d365_anaplan.flows.records import DimensionValue, GLLine, MainAccount

from . import filters as F
from .dimensions import DimensionFormat, delimiter_from_enum
from .metadata import ServiceMetadata, parse_metadata
from .odata import Continuation, ODataClient, Query

log = logging.getLogger(__name__)

HEADER_SET = "GeneralJournalEntryBiEntities"
LINE_SET = "GeneralJournalAccountEntryBiEntities"
PUBLISHED_CANDIDATES = ("GeneralJournalAccountEntries", "GeneralJournalAccountEntryEntities")
FORMAT_SET = "DimensionIntegrationFormats"
PARAMETERS_SET = "DimensionParameters"

FINANCIAL_DIMENSION_VALUES_CAVEAT = (
    "F&O's FinancialDimensionValues returns only dimension values that have been used in transactions or "
    "have had a property overridden; unused values are missing, so a value absent here may still exist in F&O."
)

_HEADER_FIELDS = (
    "SourceKey",
    "JournalNumber",
    "AccountingDate",
    "SubledgerVoucher",
    "SubledgerVoucherDataAreaId",
    "Ledger",
    "PostingLayer",
)
_LINE_FIELDS = (
    "SourceKey",
    "GeneralJournalEntry",
    "LedgerAccount",
    "AccountingCurrencyAmount",
    "TransactionCurrencyCode",
    "Text",
)
_PUBLISHED_COMPANY_FIELDS = ("dataAreaId", "DataAreaId", "LegalEntityId", "DataArea", "LedgerName")
_PUBLISHED_DISPLAY_FIELDS = ("AccountDisplayValue", "LedgerAccount")


class GLRoute(StrEnum):
    PUBLISHED = "published"
    BI = "bi"


@dataclass(frozen=True)
class Discovery:
    metadata: ServiceMetadata
    route: GLRoute
    gl_entity_set: str  # published set, or the BI line set
    has_integration_key: bool


@dataclass(frozen=True)
class DimensionAttribute:
    name: str
    report_column_name: str = ""


@dataclass(frozen=True)
class LegalEntity:
    company: str
    name: str


@dataclass(frozen=True)
class JournalName:
    company: str
    name: str
    description: str = ""
    journal_type: str = ""


@dataclass
class DimensionValueList:
    """Values read from ``FinancialDimensionValues``; ``complete`` is always False (see ``caveat``)."""

    values: list[DimensionValue]
    complete: bool = False
    caveat: str = FINANCIAL_DIMENSION_VALUES_CAVEAT


# --- row parsing ----------------------------------------------------------------------------------------


def parse_amount(row: dict[str, Any], name: str, what: str) -> Decimal:
    value = row.get(name)
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


def _text(row: dict[str, Any], name: str, what: str, *, required: bool = True) -> str:
    value = row.get(name)
    if value is None:
        if required:
            raise DynamicsBadResponse(f"{what}: field {name} is missing")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise DynamicsBadResponse(f"{what}: field {name} has an unexpected type ({type(value).__name__})")
    return str(value)


# --- reader ---------------------------------------------------------------------------------------------


@dataclass
class GLRead:
    """An iterator of :class:`GLLine`; after it ends, ``continuation`` is set when it stopped early."""

    _lines: Iterator[GLLine]
    continuation: str | None = None
    lines: int = 0
    pages: int = 0
    stopped_early: bool = False

    def __iter__(self) -> Iterator[GLLine]:
        for line in self._lines:
            self.lines += 1
            yield line


class DynamicsReader:
    """Reads one environment; ``companies`` are F&O legal entities (dataAreaId)."""

    def __init__(
        self,
        client: ODataClient,
        *,
        companies: Iterable[str],
        gl_route: Literal["auto", "published", "bi"] = "auto",
        published_gl_entity_set: str = "GeneralJournalAccountEntries",
        filter_budget: int = F.DEFAULT_FILTER_BUDGET,
    ) -> None:
        self.client = client
        self.companies = [c.upper() for c in companies]
        if not self.companies:
            raise BadInputData("DynamicsReader: at least one company is needed")
        self.gl_route = gl_route
        self.published_gl_entity_set = published_gl_entity_set
        self.filter_budget = filter_budget
        self._discovery: Discovery | None = None
        self._ledger_format: DimensionFormat | None = None
        self._budget_format: DimensionFormat | None = None
        self._delimiter: str | None = None

    # -- discovery ------------------------------------------------------------------------------------------

    def discover(self) -> Discovery:
        """Read ``$metadata`` (once) and choose the GL route."""
        if self._discovery is not None:
            return self._discovery
        meta = parse_metadata(self.client.metadata())
        published = [s for s in (self.published_gl_entity_set, *PUBLISHED_CANDIDATES) if meta.has_set(s)]
        bi_ok = meta.has_set(HEADER_SET) and meta.has_set(LINE_SET)
        route: GLRoute | None = None
        gl_set = ""
        if self.gl_route in ("auto", "published") and published:
            info = meta.entity_sets[published[0]]
            if not info.has("AccountingDate", "AccountingCurrencyAmount") or not any(
                f in info.properties for f in _PUBLISHED_DISPLAY_FIELDS
            ):
                raise DynamicsRouteUnavailable(
                    f"entity set {published[0]} is published but lacks AccountingDate, AccountingCurrencyAmount or "
                    "AccountDisplayValue/LedgerAccount; publish GeneralJournalAccountEntryEntity with those fields"
                )
            route, gl_set = GLRoute.PUBLISHED, published[0]
        elif self.gl_route in ("auto", "bi") and bi_ok:
            route, gl_set = GLRoute.BI, LINE_SET
        if route is None:
            wanted = {
                "published": f"the entity set {self.published_gl_entity_set} (publish GeneralJournalAccountEntryEntity with IsPublic and a PublicCollectionName by extension)",
                "bi": f"{HEADER_SET} and {LINE_SET}",
                "auto": f"either {self.published_gl_entity_set} (GeneralJournalAccountEntryEntity made public by extension) or both {HEADER_SET} and {LINE_SET}",
            }[self.gl_route]
            raise DynamicsRouteUnavailable(
                f"{self.client.environment_url}: no OData route to posted GL lines; the environment must publish {wanted}"
            )
        has_key = meta.has_property("LedgerJournalHeaders", "IntegrationKey")
        self._discovery = Discovery(meta, route, gl_set, has_key)
        log.info("F&O GL route: %s via %s", route.value, gl_set)
        return self._discovery

    def delimiter(self) -> str:
        if self._delimiter is None:
            rows = list(
                self.client.iter_rows(
                    Query(PARAMETERS_SET, select=("DimensionSegmentDelimiter",), cross_company=False)
                )
            )
            if not rows or "DimensionSegmentDelimiter" not in rows[0]:
                raise DynamicsBadResponse(f"{PARAMETERS_SET}: no DimensionSegmentDelimiter returned")
            self._delimiter = delimiter_from_enum(str(rows[0]["DimensionSegmentDelimiter"]))
        return self._delimiter

    def _active_format(self, format_type: str, *, includes_main_account: bool) -> DimensionFormat:
        flt = F.and_(
            F.eq("DimensionFormatType", F.EnumValue("DimensionHierarchyType", format_type)),
            F.eq("IsActive", F.EnumValue("NoYes", "Yes")),
        )
        rows = list(
            self.client.iter_rows(
                Query(
                    FORMAT_SET,
                    filter=flt,
                    select=(
                        "DimensionFormatName",
                        "DimensionFormatType",
                        "FinancialDimensionFormat",
                        "IsActive",
                    ),
                    cross_company=False,
                )
            )
        )
        if not rows:
            raise DynamicsRouteUnavailable(
                f"{FORMAT_SET}: no active {format_type}; configure it under General ledger > Chart of accounts > Dimensions > "
                "Financial dimension configuration for integrating applications"
            )
        row = rows[0]
        what = f"{FORMAT_SET} {row.get('DimensionFormatName')!r}"
        return DimensionFormat.parse(
            _text(row, "DimensionFormatName", what),
            _text(row, "FinancialDimensionFormat", what),
            self.delimiter(),
            includes_main_account=includes_main_account,
        )

    def ledger_format(self) -> DimensionFormat:
        if self._ledger_format is None:
            self._ledger_format = self._active_format(
                "DataEntityLedgerDimensionFormat", includes_main_account=True
            )
        return self._ledger_format

    def budget_format(self) -> DimensionFormat:
        if self._budget_format is None:
            self._budget_format = self._active_format(
                "DataEntityBudgetDimensionFormat", includes_main_account=True
            )
        return self._budget_format

    # -- master data ----------------------------------------------------------------------------------------

    def main_accounts(self) -> Iterator[MainAccount]:
        q = Query(
            "MainAccounts",
            select=("ChartOfAccounts", "MainAccountId", "Name", "MainAccountType"),
            cross_company=False,
        )
        for row in self.client.iter_rows(q):
            what = f"MainAccounts row {row.get('MainAccountId')!r}"
            yield MainAccount(
                account=_text(row, "MainAccountId", what),
                name=_text(row, "Name", what, required=False),
                account_type=_text(row, "MainAccountType", what, required=False),
                chart_of_accounts=_text(row, "ChartOfAccounts", what, required=False),
            )

    def dimension_attributes(self) -> list[DimensionAttribute]:
        q = Query("DimensionAttributes", select=("DimensionName", "ReportColumnName"), cross_company=False)
        return [
            DimensionAttribute(
                _text(r, "DimensionName", "DimensionAttributes row"),
                _text(r, "ReportColumnName", "DimensionAttributes row", required=False),
            )
            for r in self.client.iter_rows(q)
        ]

    def dimension_values(self, dimension: str) -> DimensionValueList:
        """Values of one dimension for our companies plus shared ones (``LegalEntityId eq ''``)."""
        flt = F.and_(F.any_of("LegalEntityId", [*self.companies, ""]), F.eq("FinancialDimension", dimension))
        q = Query(
            "FinancialDimensionValues",
            filter=flt,
            select=("FinancialDimension", "DimensionValue", "Description", "LegalEntityId"),
        )
        seen: dict[str, DimensionValue] = {}
        for row in self.client.iter_rows(q):
            what = f"FinancialDimensionValues row {row.get('DimensionValue')!r}"
            value = _text(row, "DimensionValue", what)
            seen.setdefault(
                value,
                DimensionValue(
                    dimension=dimension,
                    value=value,
                    description=_text(row, "Description", what, required=False),
                ),
            )
        return DimensionValueList(sorted(seen.values(), key=lambda d: d.value))

    def legal_entities(self) -> list[LegalEntity]:
        q = Query("LegalEntities", select=("LegalEntityId", "Name"), cross_company=False)
        return [
            LegalEntity(
                _text(r, "LegalEntityId", "LegalEntities row").upper(),
                _text(r, "Name", "LegalEntities row", required=False),
            )
            for r in self.client.iter_rows(q)
        ]

    def journal_names(self) -> list[JournalName]:
        q = Query(
            "JournalNames",
            filter=F.any_of("dataAreaId", [c.lower() for c in self.companies]),
            select=("dataAreaId", "Name", "Description", "JournalType"),
        )
        return [
            JournalName(
                _text(r, "dataAreaId", "JournalNames row").upper(),
                _text(r, "Name", "JournalNames row"),
                _text(r, "Description", "JournalNames row", required=False),
                _text(r, "JournalType", "JournalNames row", required=False),
            )
            for r in self.client.iter_rows(q)
        ]

    # -- posted GL ------------------------------------------------------------------------------------------

    def gl_lines(self, start: date, end: date, *, continuation: str | None = None) -> GLRead:
        """Posted GL lines with ``start <= AccountingDate < end`` for the configured companies.

        Stops at a page boundary when the client's ``remaining_time`` runs low; ``continuation`` then
        holds a token for the next call (same ``start``/``end``).
        """
        if end <= start:
            raise BadInputData(f"GL read: end {end} must be after start {start}")
        disc = self.discover()
        state = {
            "route": disc.route.value,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "companies": self.companies,
        }
        resume: str | None = None
        if continuation is not None:
            token = Continuation.decode(continuation)
            if token.state != state:
                raise BadInputData(
                    "GL read: the continuation token belongs to another read (route, dates or companies differ)"
                )
            resume = token.next_link
        result = GLRead(iter(()))
        gen = (
            self._published(disc, start, end, resume, result, state)
            if disc.route is GLRoute.PUBLISHED
            else self._bi(start, end, resume, result, state)
        )
        result._lines = gen
        return result

    def _company_filter(self, name: str) -> str:
        return F.any_of(name, [c.lower() for c in self.companies])

    def _published(
        self,
        disc: Discovery,
        start: date,
        end: date,
        resume: str | None,
        result: GLRead,
        state: dict[str, Any],
    ) -> Iterator[GLLine]:
        info = disc.metadata.entity_sets[disc.gl_entity_set]
        company_field = next((f for f in _PUBLISHED_COMPANY_FIELDS if f in info.properties), None)
        if company_field is None:
            raise DynamicsRouteUnavailable(
                f"{disc.gl_entity_set}: no company field (dataAreaId / LegalEntityId / DataArea) is published"
            )
        display_field = next(f for f in _PUBLISHED_DISPLAY_FIELDS if f in info.properties)
        optional = [
            f
            for f in (
                "Voucher",
                "TransactionCurrencyCode",
                "Description",
                "GeneralJournalAccountEntryRecId",
                "JournalNumber",
            )
            if f in info.properties
        ]
        select = (company_field, "AccountingDate", display_field, "AccountingCurrencyAmount", *optional)
        flt = F.and_(F.between("AccountingDate", start, end), self._company_filter(company_field))
        fmt = self.ledger_format()
        query = Query(disc.gl_entity_set, filter=flt, select=select, cross_company=True)
        for page in self.client.iter_pages(None if resume else query, resume=resume):
            result.pages += 1
            for row in page.rows:
                what = f"{disc.gl_entity_set} row {row.get('GeneralJournalAccountEntryRecId') or row.get('Voucher') or '?'}"
                account, dims = fmt.parse_value(_text(row, display_field, what), what=what)
                yield GLLine(
                    company=_text(row, company_field, what).upper(),
                    account=account,
                    dimensions=dims,
                    accounting_date=parse_date(row, "AccountingDate", what),
                    amount=parse_amount(row, "AccountingCurrencyAmount", what),
                    currency=_text(row, "TransactionCurrencyCode", what, required=False),
                    voucher=_text(row, "Voucher", what, required=False),
                    description=_text(row, "Description", what, required=False),
                    source_id=_text(row, "GeneralJournalAccountEntryRecId", what, required=False),
                )
            if page.next_link and self.client.should_stop():
                result.continuation = Continuation(page.next_link, state).encode()
                result.stopped_early = True
                return

    def _bi(
        self, start: date, end: date, resume: str | None, result: GLRead, state: dict[str, Any]
    ) -> Iterator[GLLine]:
        flt = F.and_(
            F.between("AccountingDate", start, end), self._company_filter("SubledgerVoucherDataAreaId")
        )
        query = Query(HEADER_SET, filter=flt, select=_HEADER_FIELDS, orderby="SourceKey", cross_company=True)
        fmt = self.ledger_format()
        for page in self.client.iter_pages(None if resume else query, resume=resume):
            result.pages += 1
            headers: dict[int, tuple[str, date, str]] = {}
            for row in page.rows:
                what = f"{HEADER_SET} row {row.get('SourceKey')!r}"
                key = row.get("SourceKey")
                if not isinstance(key, int) or isinstance(key, bool):
                    raise DynamicsBadResponse(f"{what}: SourceKey is not an integer")
                layer = row.get("PostingLayer")
                if layer not in (None, "", "Current"):
                    continue
                headers[key] = (
                    _text(row, "SubledgerVoucherDataAreaId", what).upper(),
                    parse_date(row, "AccountingDate", what),
                    _text(row, "SubledgerVoucher", what, required=False),
                )
            if headers:
                yield from self._bi_lines(headers, fmt)
            if page.next_link and self.client.should_stop():
                result.continuation = Continuation(page.next_link, state).encode()
                result.stopped_early = True
                return

    def _bi_lines(self, headers: dict[int, tuple[str, date, str]], fmt: DimensionFormat) -> Iterator[GLLine]:
        keys = sorted(headers)
        lo, hi = keys[0], keys[-1]
        if hi - lo + 1 <= 4 * len(keys):
            # Dense keys: one range query; lines of headers outside this page's set are skipped below.
            filters = [F.and_(F.ge("GeneralJournalEntry", lo), F.le("GeneralJournalEntry", hi))]
        else:
            filters = F.split_any_of("GeneralJournalEntry", keys, budget=self.filter_budget)
        for flt in filters:
            query = Query(LINE_SET, filter=flt, select=_LINE_FIELDS, cross_company=True)
            for row in self.client.iter_rows(query, prefetch=True):
                header = headers.get(row.get("GeneralJournalEntry"))  # type: ignore[arg-type]
                if header is None:
                    continue
                company, accounting_date, voucher = header
                fast = _fast_line(row, fmt, company, accounting_date, voucher)
                if fast is not None:
                    yield fast
                    continue
                what = f"{LINE_SET} row {row.get('SourceKey')!r}"
                account, dims = fmt.parse_value(_text(row, "LedgerAccount", what), what=what)
                yield GLLine(
                    company=company,
                    account=account,
                    dimensions=dims,
                    accounting_date=accounting_date,
                    amount=parse_amount(row, "AccountingCurrencyAmount", what),
                    currency=_text(row, "TransactionCurrencyCode", what, required=False),
                    voucher=voucher,
                    description=_text(row, "Text", what, required=False),
                    source_id=_text(row, "SourceKey", what, required=False),
                )


def _fast_line(
    row: dict[str, Any], fmt: DimensionFormat, company: str, accounting_date: date, voucher: str
) -> GLLine | None:
    """The common, well-formed BI line without per-field checks; None sends the row through the checked path."""
    ledger = row.get("LedgerAccount")
    amount = row.get("AccountingCurrencyAmount")
    currency = row.get("TransactionCurrencyCode", "")
    text = row.get("Text", "")
    key = row.get("SourceKey")
    if (
        type(ledger) is not str
        or type(amount) is not Decimal
        or type(currency) is not str
        or type(text) is not str
        or type(key) is not int
    ):
        return None
    if not amount.is_finite():
        return None
    parsed = fmt.try_parse(ledger)
    if parsed is None:
        return None
    # Every field has the declared type (checked above), so validation can be skipped safely.
    return GLLine.model_construct(
        company=company,
        account=parsed[0],
        dimensions=parsed[1],
        accounting_date=accounting_date,
        amount=amount,
        currency=currency,
        voucher=voucher,
        description=text,
        source_id=str(key),
    )
