"""Reading F&O: route discovery, posted GL lines and master data (dynamics-fo.md §0, §2.3, §3, §8).

Posted GL lines are not on OData by default. :meth:`DynamicsReader.discover` reads ``$metadata`` once per
run and picks a route: a published general-journal-account-entry entity set if the customer has one,
else the BI entities (``GeneralJournalEntryBiEntities`` headers give AccountingDate and the company,
``GeneralJournalAccountEntryBiEntities`` lines give the ledger account display value and amounts). The
dimension values of a line are parsed from its display value with the active ledger dimension format and
the segment delimiter. Lines with named values (``LedgerDimensionValuesJson``) are split by name; the
others from their display value, in the order of the account structure that applies to the line (found in
``DimensionCombinations``; its segment order from ``ledger.account_structures``), or in the integration format's
order when ``ledger.display_value_order`` says the display values follow it. With neither route, :class:`~d365_anaplan.errors.DynamicsRouteUnavailable` says
what to publish.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Literal

from d365_anaplan.config import LedgerOptions
from d365_anaplan.dynamics import filters as F
from d365_anaplan.dynamics.dimensions import DimensionFormat, delimiter_from_enum, split_by_structure
from d365_anaplan.dynamics.ledgers import FiscalPeriodInfo, LedgerBooks, LedgerInfo
from d365_anaplan.dynamics.metadata import ServiceMetadata, parse_metadata
from d365_anaplan.dynamics.odata import ODataClient
from d365_anaplan.dynamics.odata_shapes import Continuation, Query
from d365_anaplan.errors import BadInputData, ConfigError, DynamicsBadResponse, DynamicsRouteUnavailable
from d365_anaplan.flows.records import DimensionValue, GLLine, MainAccount

log = logging.getLogger(__name__)

HEADER_SET = "GeneralJournalEntryBiEntities"
LINE_SET = "GeneralJournalAccountEntryBiEntities"
PUBLISHED_CANDIDATES = ("GeneralJournalAccountEntries", "GeneralJournalAccountEntryEntities")
FORMAT_SET = "DimensionIntegrationFormats"
PARAMETERS_SET = "DimensionParameters"
COMBINATION_SET = "DimensionCombinations"
_SPLIT_CHUNK = 500  # lines whose display values are looked up in DimensionCombinations together

FINANCIAL_DIMENSION_VALUES_CAVEAT = (
    "F&O's FinancialDimensionValues returns only dimension values that have been used in transactions or "
    "have had a property overridden; unused values are missing, so a value absent here may still exist in F&O."
)

_HEADER_FIELDS = (
    "SourceKey",
    "JournalNumber",
    "AccountingDate",
    "SubledgerVoucher",
    "Ledger",
    "PostingLayer",
    "FiscalCalendarPeriod",
)
_LINE_FIELDS = (
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


def _text(row: dict[str, Any], name: str, what: str, *, required: bool = True) -> str:
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
        options: LedgerOptions | None = None,
    ) -> None:
        self.client = client
        self.options = options or LedgerOptions()
        self._books: LedgerBooks | None = None
        self._bs_accounts: frozenset[str] | None = None
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
        # display value -> (account structure, main account) rows of DimensionCombinations
        self._combinations: dict[str, list[tuple[str, str]]] = {}
        self._splits: dict[str, str] | None = None  # source id -> how the line was split (sample_split only)
        # Splits already made in this reader (bounded): LedgerDimensionValuesJson text -> (account, dimensions),
        # display value -> (account, dimensions, how). Lines repeat a few thousand combinations; only
        # successful splits are kept, so a bad value still fails on every line with its own record named.
        self._named_seen: dict[str, tuple[str, dict[str, str]]] = {}
        self._display_seen: dict[str, tuple[str, dict[str, str], str]] = {}
        self._monthly: dict[str, bool] = {}  # company -> lines bucketed by calendar month (per read)

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
            select=(
                "ChartOfAccounts",
                "MainAccountId",
                "Name",
                "MainAccountType",
                *self._account_attributes(),
            ),
            cross_company=False,
        )
        for row in self.client.iter_rows(q):
            what = f"MainAccounts row {row.get('MainAccountId')!r}"
            yield MainAccount(
                account=_text(row, "MainAccountId", what),
                name=_text(row, "Name", what, required=False),
                account_type=_text(row, "MainAccountType", what, required=False),
                chart_of_accounts=_text(row, "ChartOfAccounts", what, required=False),
                category=_text(row, "MainAccountCategory", what, required=False),
                parent=_text(row, "ParentMainAccountId", what, required=False),
            )

    def _account_attributes(self) -> tuple[str, ...]:
        """MainAccountCategory / ParentMainAccountId when the connection writes them and F&O publishes them."""
        opts = self.options
        wanted = []
        if opts.account_category_column:
            wanted.append("MainAccountCategory")
        if opts.account_parent_column:
            wanted.append("ParentMainAccountId")
        if not wanted:
            return ()
        meta = self.discover().metadata
        return tuple(f for f in wanted if meta.has_property("MainAccounts", f))

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

    # -- ledgers and fiscal calendars ------------------------------------------------------------------------

    def books(self) -> LedgerBooks:
        """The configured companies' ledgers and fiscal calendars (read once)."""
        if self._books is None:
            meta = self.discover().metadata
            self._books = LedgerBooks.read(
                self.client, self.companies, period_keys=meta.has_set("FiscalCalendarPeriodBiEntities")
            )
        return self._books

    def fiscal_basis(self, company: str) -> bool:
        """True when the company's lines are bucketed by fiscal period rather than by calendar month."""
        basis = self.options.period_basis
        if basis == "month":
            return False
        if basis == "fiscal":
            return True
        return not self.books().is_monthly_cached(company)

    def period_monthly(self, company: str) -> bool:
        """``not fiscal_basis(company)``, remembered for the lines of a read."""
        monthly = self._monthly.get(company)
        if monthly is None:
            monthly = self._monthly[company] = not self.fiscal_basis(company)
        return monthly

    def window(self, company: str, start: date, end: date) -> tuple[date, date]:
        """The AccountingDate window for months [start, end): with fiscal periods, every period ending in
        those months, whole (a fiscal period belongs to the month it ends in)."""
        if not self.fiscal_basis(company):
            return start, end
        periods = self.books().periods_ending_in(company, start, end)
        if not periods:
            return start, start
        return min(p.start for p in periods), max(p.end for p in periods) + timedelta(days=1)

    def balances_window(self, company: str, start: date, end: date) -> tuple[date, date]:
        """:meth:`window`, starting at the first day of its fiscal year (opening period included) so that
        balance-sheet accounts can be loaded as period-end balances."""
        lo, hi = self.window(company, start, end)
        if hi <= lo:
            return lo, hi
        books = self.books()
        year = books.operating_period(company, lo, f"fiscal year of {lo}").fiscal_year
        first = min(p.start for p in books.periods[books.ledger(company).calendar] if p.fiscal_year == year)
        return min(first, lo), hi

    def balance_sheet_accounts(self) -> frozenset[str]:
        """Main accounts whose type is a balance-sheet type (Asset, Liability, Equity, BalanceSheet)."""
        if self._bs_accounts is None:
            self._bs_accounts = frozenset(
                a.account
                for a in self.main_accounts()
                if a.account_type in ("Asset", "Liability", "Equity", "BalanceSheet")
            )
        return self._bs_accounts

    def _amount_currency(self, ledger: LedgerInfo, row: dict[str, Any], what: str) -> str:
        choice = self.options.currency
        if choice == "accounting":
            return ledger.accounting_currency
        if choice == "reporting":
            if not ledger.reporting_currency:
                raise ConfigError(
                    [
                        f"ledger.currency: reporting, but the ledger of {ledger.company} has no reporting currency"
                    ]
                )
            return ledger.reporting_currency
        return _text(row, "TransactionCurrencyCode", what).upper()

    def describe_ledgers(self) -> list[str]:
        """One line per company: ledger, currencies, calendar and how its lines are bucketed (for ``check``)."""
        books = self.books()
        out = []
        for company in self.companies:
            lg = books.ledger(company)
            basis = "fiscal periods" if self.fiscal_basis(company) else "calendar months"
            out.append(
                f"{company}: ledger {lg.name} (RecId {lg.recid}), accounting {lg.accounting_currency}, "
                f"reporting {lg.reporting_currency or 'none'}, calendar {lg.calendar} -> {basis}"
            )
        return out

    def sample_split(self, start: date, end: date, limit: int = 5) -> list[tuple[GLLine, str]]:
        """Up to ``limit`` posted lines of the window, split into account and named dimension values the way
        the run will split them, each with how it was split (``check`` shows them)."""
        out: list[tuple[GLLine, str]] = []
        self._splits = {}
        try:
            for line in self.gl_lines(start, end):
                out.append((line, self._splits.get(line.source_id, "")))
                if len(out) >= limit:
                    break
        finally:
            self._splits = None
        return out

    # -- display values ---------------------------------------------------------------------------------------

    def _lookup_structures(self, displays: Iterable[str]) -> None:
        """Read the account structure of each display value from ``DimensionCombinations`` (batched, cached)."""
        wanted = sorted({d for d in displays if d not in self._combinations})
        if not wanted:
            return
        if not self.discover().metadata.has_set(COMBINATION_SET):
            raise DynamicsRouteUnavailable(
                f"GL lines have no named dimension values and {COMBINATION_SET} is not published, so the account "
                f"structure of LedgerAccount {wanted[0]!r} cannot be known; publish LedgerDimensionValuesJson or "
                f"{COMBINATION_SET}, or set ledger.display_value_order: format if display values follow the ledger "
                "integration format"
            )
        for d in wanted:
            self._combinations[d] = []
        for flt in F.split_any_of("DisplayValue", wanted, budget=self.filter_budget):
            query = Query(
                COMBINATION_SET,
                filter=flt,
                select=("DisplayValue", "MainAccount", "AccountStructure"),
                cross_company=False,
            )
            for row in self.client.iter_rows(query):
                what = f"{COMBINATION_SET} row {row.get('DisplayValue')!r}"
                display = _text(row, "DisplayValue", what)
                entry = (
                    _text(row, "AccountStructure", what),
                    _text(row, "MainAccount", what, required=False),
                )
                if display in self._combinations and entry not in self._combinations[display]:
                    self._combinations[display].append(entry)

    def _split_display(
        self, display: str, fmt: DimensionFormat, what: str
    ) -> tuple[str, dict[str, str], str]:
        """(main account, dimensions, how) of a line without named values."""
        if self.options.display_value_order == "format":
            account, dims = fmt.parse_value(display, what=what)
            return account, dims, f"ledger format {fmt.name!r} ({fmt.delimiter.join(fmt.segments)})"
        self._lookup_structures([display])
        found = self._combinations[display]
        if not found:
            raise DynamicsBadResponse(
                f"{what}: LedgerAccount {display!r} is not in {COMBINATION_SET}, so its account structure is unknown"
            )
        results: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        for structure, main_account in found:
            order = self.options.account_structures.get(structure)
            if order is None:
                raise ConfigError(
                    [
                        f"{what}: account {main_account or display!r} is in account structure {structure!r}, whose "
                        f"segment order is not configured; add ledger.account_structures {structure!r}: "
                        "[MainAccount, ...] in the structure's order, or set ledger.display_value_order: format if "
                        "F&O's display values follow the ledger integration format"
                    ],
                    source="ledger.account_structures",
                )
            account, dims = split_by_structure(display, structure, tuple(order), self.delimiter(), what=what)
            if main_account and account != main_account:
                raise ConfigError(
                    [
                        f"{what}: the order configured for account structure {structure!r} ({'-'.join(order)}) puts "
                        f"{account!r} in MainAccount of {display!r}, but {COMBINATION_SET} says main account "
                        f"{main_account!r}; fix ledger.account_structures {structure!r}"
                    ],
                    source="ledger.account_structures",
                )
            results[(account, tuple(sorted(dims.items())))] = (
                f"account structure {structure!r} ({self.delimiter().join(order)})"
            )
        if len(results) > 1:
            raise DynamicsBadResponse(
                f"{what}: LedgerAccount {display!r} belongs to account structures "
                f"{sorted(s for s, _ in found)} that split it differently"
            )
        (((account, items), how),) = results.items()
        return account, dict(items), how

    def _split_lines(
        self,
        rows: Iterable[dict[str, Any]],
        display_field: str,
        named: bool,
        fmt: DimensionFormat,
        what: Callable[[dict[str, Any]], str],
    ) -> Iterator[tuple[dict[str, Any], str, str, dict[str, str]]]:
        """(row, what, account, dimensions) of each row, by name where the row has named values, else from its
        display value; display values are looked up in DimensionCombinations a chunk at a time."""
        chunk: list[dict[str, Any]] = []

        def flush() -> Iterator[tuple[dict[str, Any], str, str, dict[str, str]]]:
            if self.options.display_value_order == "structure":
                self._lookup_structures(
                    str(r.get(display_field))
                    for r in chunk
                    if isinstance(r.get(display_field), str) and not _has_named(r, named)
                )
            named_seen, display_seen = self._named_seen, self._display_seen
            for r in chunk:
                w = what(r)
                display = _text(r, display_field, w)
                raw = r.get(DIMENSION_JSON) if named else None
                if isinstance(raw, str) and raw.strip():
                    hit = named_seen.get(raw)
                    if hit is None:
                        hit = _named_dimensions(raw, display, w)
                        _remember(named_seen, raw, hit)
                    account, dims = hit[0], dict(hit[1])
                    if self._splits is not None:
                        self._splits[_split_key(r)] = f"named values ({DIMENSION_JSON})"
                else:
                    seen = display_seen.get(display)
                    if seen is None:
                        seen = self._split_display(display, fmt, w)
                        _remember(display_seen, display, seen)
                    account, dims = seen[0], dict(seen[1])
                    if self._splits is not None:
                        self._splits[_split_key(r)] = f"{display!r} in {seen[2]}"
                yield r, w, account, dims
            chunk.clear()

        for row in rows:
            chunk.append(row)
            if len(chunk) >= _SPLIT_CHUNK:
                yield from flush()
        yield from flush()

    # -- posted GL ------------------------------------------------------------------------------------------

    def gl_lines(self, start: date, end: date, *, continuation: str | None = None) -> GLRead:
        """Posted GL lines with ``start <= AccountingDate < end`` for the configured companies.

        Only the configured posting layers; budget appropriation entries left out (unless configured);
        each line attributed to the legal entity owning its ledger, tagged with its fiscal period and type.
        Stops at a page boundary when the client's ``remaining_time`` runs low; ``continuation`` then
        holds a token for the next call (same ``start``/``end``).
        """
        if end <= start:
            raise BadInputData(f"GL read: end {end} must be after start {start}")
        self._forget_splits()
        disc = self.discover()
        opts = self.options
        state = {
            "route": disc.route.value,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "companies": self.companies,
            "layers": opts.posting_layers,
            "currency": opts.currency,
            "budget": opts.exclude_budget_entries,
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

    def _forget_splits(self) -> None:
        """A read starts from the options as they are now (the caches of :meth:`_split_lines`)."""
        self._named_seen.clear()
        self._display_seen.clear()
        self._monthly.clear()

    def _company_filter(self, name: str) -> str:
        return F.any_of(name, [c.lower() for c in self.companies])

    def _layer_filter(self) -> str:
        return F.any_of(
            "PostingLayer", [F.EnumValue("CurrentOperationsTax", x) for x in self.options.posting_layers]
        )

    def _period(self, company: str, d: date, recid: Any, what: str) -> FiscalPeriodInfo | None:
        books = self.books()
        if isinstance(recid, int) and not isinstance(recid, bool) and books.by_recid:
            return books.period_of_recid(company, recid, d, what)
        return None

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
        books = self.books()
        company_field = next((f for f in _PUBLISHED_COMPANY_FIELDS if f in info.properties), None)
        if company_field is None:
            raise DynamicsRouteUnavailable(
                f"{disc.gl_entity_set}: no company field (dataAreaId / LegalEntityId / DataArea) is published"
            )
        by_ledger = "LedgerName" in info.properties
        amount_field = AMOUNT_FIELDS[self.options.currency]
        if amount_field not in info.properties:
            raise DynamicsRouteUnavailable(
                f"{disc.gl_entity_set}: {amount_field} is not published (ledger.currency)"
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
                "FiscalCalendarPeriod",
                "LedgerName",
            )
            if f in info.properties and f != company_field
        ]
        select = (company_field, "AccountingDate", display_field, amount_field, *optional)
        parts = [F.between("AccountingDate", start, end)]
        if by_ledger:
            parts.append(F.any_of("LedgerName", [books.ledger(c).name for c in self.companies]))
        else:
            parts.append(self._company_filter(company_field))
        if "PostingLayer" in info.properties:
            parts.append(self._layer_filter())
        elif self.options.posting_layers != ["Current"]:
            raise DynamicsRouteUnavailable(
                f"{disc.gl_entity_set}: PostingLayer is not published; it cannot be filtered"
            )
        if self.options.exclude_budget_entries:
            if "JournalCategory" in info.properties:
                parts.append(F.ne("JournalCategory", F.EnumValue("LedgerTransType", "Budget")))
            if "PostingType" in info.properties:
                parts.append(F.ne("PostingType", F.EnumValue("LedgerPostingType", "Budget")))
        fmt = self.ledger_format()
        named = DIMENSION_JSON in info.properties
        if named:
            select = (*select, DIMENSION_JSON)
        query = Query(disc.gl_entity_set, filter=F.and_(*parts), select=select, cross_company=True)

        def what_of(row: dict[str, Any]) -> str:
            return f"{disc.gl_entity_set} row {row.get('GeneralJournalAccountEntryRecId') or row.get('Voucher') or '?'}"

        for page in self.client.iter_pages(None if resume else query, resume=resume):
            result.pages += 1
            for row, what, account, dims in self._split_lines(page.rows, display_field, named, fmt, what_of):
                company = _text(row, company_field, what).upper()
                if by_ledger:
                    owner = books.company_of_ledger_name(_text(row, "LedgerName", what))
                    if owner is None:
                        continue
                    company = owner
                yield self._entity_line(company, account, dims, row, what, amount_field)
            if page.next_link and self.client.should_stop():
                result.continuation = Continuation(page.next_link, state).encode()
                result.stopped_early = True
                return

    def _bi(
        self, start: date, end: date, resume: str | None, result: GLRead, state: dict[str, Any]
    ) -> Iterator[GLLine]:
        books = self.books()
        parts = [
            F.between("AccountingDate", start, end),
            F.any_of("Ledger", [books.ledger(c).recid for c in self.companies]),
            self._layer_filter(),
        ]
        if self.options.exclude_budget_entries:
            parts.append(F.ne("JournalCategory", F.EnumValue("LedgerTransType", "Budget")))
        query = Query(
            HEADER_SET, filter=F.and_(*parts), select=_HEADER_FIELDS, orderby="SourceKey", cross_company=True
        )
        fmt = self.ledger_format()
        for page in self.client.iter_pages(None if resume else query, resume=resume):
            result.pages += 1
            headers: dict[int, _Header] = {}
            for row in page.rows:
                what = f"{HEADER_SET} row {row.get('SourceKey')!r}"
                key = row.get("SourceKey")
                if not isinstance(key, int) or isinstance(key, bool):
                    raise DynamicsBadResponse(f"{what}: SourceKey is not an integer")
                layer = row.get("PostingLayer")
                if layer is not None and layer not in self.options.posting_layers:
                    continue
                ledger_id = row.get("Ledger")
                company = books.company_of_ledger(ledger_id) if isinstance(ledger_id, int) else None
                if company is None or company not in self.companies:
                    continue
                d = parse_date(row, "AccountingDate", what)
                headers[key] = _Header(
                    company, d, _text(row, "SubledgerVoucher", what, required=False),
                    self._period(company, d, row.get("FiscalCalendarPeriod"), what),
                )  # fmt: skip
            if headers:
                yield from self._bi_lines(headers, fmt)
            if page.next_link and self.client.should_stop():
                result.continuation = Continuation(page.next_link, state).encode()
                result.stopped_early = True
                return

    # -- data-management packages -------------------------------------------------------------------------

    def count_gl_lines(self, start: date, end: date) -> int:
        """``$count`` of the posted lines of the window for the configured companies (to choose the transport).

        On the BI route lines carry no date: the lines of the window's header key range are counted (an
        upper bound when other companies' entries interleave)."""
        if end <= start:
            return 0
        disc = self.discover()
        books = self.books()
        window = F.between("AccountingDate", start, end)
        if disc.route is GLRoute.PUBLISHED:
            info = disc.metadata.entity_sets[disc.gl_entity_set]
            if "LedgerName" in info.properties:
                who = F.any_of("LedgerName", [books.ledger(c).name for c in self.companies])
            else:
                field = next((f for f in _PUBLISHED_COMPANY_FIELDS if f in info.properties), "dataAreaId")
                who = self._company_filter(field)
            return self._count(disc.gl_entity_set, F.and_(window, who))
        flt = F.and_(window, F.any_of("Ledger", [books.ledger(c).recid for c in self.companies]))
        keys = []
        for order in ("SourceKey", "SourceKey desc"):
            rows = list(
                self.client.iter_rows(
                    Query(HEADER_SET, filter=flt, select=("SourceKey",), orderby=order, top=1)
                )
            )
            if not rows:
                return 0
            keys.append(rows[0].get("SourceKey"))
        lo, hi = keys
        if not isinstance(lo, int) or not isinstance(hi, int):
            raise DynamicsBadResponse(f"{HEADER_SET}: SourceKey is not an integer")
        return self._count(LINE_SET, F.and_(F.ge("GeneralJournalEntry", lo), F.le("GeneralJournalEntry", hi)))

    def _count(self, entity_set: str, flt: str) -> int:
        what = f"GET {entity_set}/$count"
        value = self.client.get_json(
            f"{entity_set}/$count", what=what, params=Query(entity_set, filter=flt).params()
        )
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise DynamicsBadResponse(f"{what}: not a count ({str(value)[:40]!r})")
        return value

    def package_lines(
        self, rows: Iterable[dict[str, Any]], columns: frozenset[str], start: date, end: date, what: str
    ) -> Iterator[GLLine]:
        """The posted lines of a "General journal account entry" package (rows from
        :func:`~d365_anaplan.dynamics.package.entity_rows`) for ``start <= AccountingDate < end``, filtered
        and attributed as the OData routes do (companies, posting layers, budget entries left out)."""
        opts = self.options
        books = self.books()
        self._forget_splits()
        amount_field = AMOUNT_FIELDS[opts.currency]
        display_field = next((f for f in _PUBLISHED_DISPLAY_FIELDS if f in columns), None)
        company_field = next((f for f in ("DataArea", "LedgerName") if f in columns), None)
        missing = [
            name
            for name, present in (
                ("AccountingDate", "AccountingDate" in columns),
                (amount_field, amount_field in columns),
                ("AccountDisplayValue or LedgerAccount", display_field is not None),
                ("DataArea or LedgerName", company_field is not None),
            )
            if not present
        ]
        if "PostingLayer" not in columns and opts.posting_layers != ["Current"]:
            missing.append("PostingLayer")
        if missing:
            raise DynamicsRouteUnavailable(
                f"{what}: the package lacks {', '.join(missing)}; add them to the data project's mapping"
            )
        assert display_field is not None and company_field is not None
        named = DIMENSION_JSON in columns
        fmt = self.ledger_format()
        lo, hi = start.isoformat(), end.isoformat()

        def wanted(source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            for row in source:
                day = str(row.get("AccountingDate", ""))[:10]
                if not lo <= day < hi:
                    continue
                if "PostingLayer" in row and row["PostingLayer"] not in opts.posting_layers:
                    continue
                if opts.exclude_budget_entries and "Budget" in (
                    row.get("JournalCategory"),
                    row.get("PostingType"),
                ):
                    continue
                recid = row.get("FiscalCalendarPeriod")
                if isinstance(recid, str):
                    row["FiscalCalendarPeriod"] = int(recid) if recid.isdigit() else None
                yield row

        def what_of(row: dict[str, Any]) -> str:
            return f"{what} line {row.get('_line')}"

        for row, w, account, dims in self._split_lines(wanted(rows), display_field, named, fmt, what_of):
            if company_field == "LedgerName":
                owner = books.company_of_ledger_name(_text(row, "LedgerName", w))
                if owner is None:
                    continue
                company = owner
            else:
                company = _text(row, "DataArea", w).upper()
            if company not in self.companies:
                continue
            yield self._entity_line(company, account, dims, row, w, amount_field)

    def _entity_line(
        self,
        company: str,
        account: str,
        dims: dict[str, str],
        row: dict[str, Any],
        what: str,
        amount_field: str,
    ) -> GLLine:
        """A line of the general journal account entry entity (published on OData, or in a package)."""
        ledger = self.books().ledger(company)
        d = parse_date(row, "AccountingDate", what)
        period = self._period(company, d, row.get("FiscalCalendarPeriod"), what)
        return _make_line(
            self, company, account, dims, d, parse_amount(row, amount_field, what),
            self._amount_currency(ledger, row, what), row, what, period,
            voucher=_text(row, "Voucher", what, required=False),
            description=_text(row, "Description", what, required=False),
            source_id=_text(row, "GeneralJournalAccountEntryRecId", what, required=False),
        )  # fmt: skip

    def _bi_lines(self, headers: dict[int, _Header], fmt: DimensionFormat) -> Iterator[GLLine]:
        keys = sorted(headers)
        lo, hi = keys[0], keys[-1]
        if hi - lo + 1 <= 4 * len(keys):
            # Dense keys: one range query; lines of headers outside this page's set are skipped below.
            filters = [F.and_(F.ge("GeneralJournalEntry", lo), F.le("GeneralJournalEntry", hi))]
        else:
            filters = F.split_any_of("GeneralJournalEntry", keys, budget=self.filter_budget)
        meta = self.discover().metadata
        amount_field = AMOUNT_FIELDS[self.options.currency]
        select = [*_LINE_FIELDS, amount_field]
        named = meta.has_property(LINE_SET, DIMENSION_JSON)
        if named:
            select.append(DIMENSION_JSON)
        budget = self.options.exclude_budget_entries and meta.has_property(LINE_SET, "PostingType")
        if budget:
            select.append("PostingType")
        books = self.books()

        def wanted(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            for row in rows:
                if row.get("GeneralJournalEntry") not in headers:
                    continue
                if budget and row.get("PostingType") == "Budget":
                    continue
                yield row

        def what_of(row: dict[str, Any]) -> str:
            return f"{LINE_SET} row {row.get('SourceKey')!r}"

        for flt in filters:
            query = Query(LINE_SET, filter=flt, select=tuple(select), cross_company=True)
            rows = wanted(self.client.iter_rows(query, prefetch=True))
            for row, what, account, dims in self._split_lines(rows, "LedgerAccount", named, fmt, what_of):
                header = headers[row["GeneralJournalEntry"]]
                ledger = books.ledger(header.company)
                yield _make_line(
                    self, header.company, account, dims, header.accounting_date,
                    parse_amount(row, amount_field, what), self._amount_currency(ledger, row, what), row, what,
                    header.period, voucher=header.voucher, description=_text(row, "Text", what, required=False),
                    source_id=_text(row, "SourceKey", what, required=False),
                )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Header:
    company: str
    accounting_date: date
    voucher: str
    period: FiscalPeriodInfo | None


_SEEN_LIMIT = 50_000  # split results kept per reader (memory stays flat however many lines are read)


def _remember(seen: dict[str, Any], key: str, value: Any) -> None:
    if len(seen) >= _SEEN_LIMIT:
        seen.clear()
    seen[key] = value


def _has_named(row: dict[str, Any], named: bool) -> bool:
    raw = row.get(DIMENSION_JSON) if named else None
    return isinstance(raw, str) and bool(raw.strip())


def _split_key(row: dict[str, Any]) -> str:
    return _text(row, "SourceKey", "", required=False) or _text(
        row, "GeneralJournalAccountEntryRecId", "", required=False
    )


def _named_dimensions(raw: str, display: str, what: str) -> tuple[str, dict[str, str]]:
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


def _make_line(
    reader: DynamicsReader,
    company: str,
    account: str,
    dims: dict[str, str],
    d: date,
    amount: Decimal,
    currency: str,
    row: dict[str, Any],
    what: str,
    period: FiscalPeriodInfo | None,
    *,
    voucher: str,
    description: str,
    source_id: str,
) -> GLLine:
    if period is None:  # the route does not name the period: the operating period of the date
        period = reader.books().operating_period(company, d, what)
        period_type = ""
    else:
        period_type = period.type
    monthly = reader.period_monthly(company)
    return GLLine.checked(
        company=company,
        account=account,
        dimensions=dims,
        accounting_date=d,
        amount=amount,
        currency=_text(row, "TransactionCurrencyCode", what, required=False),
        voucher=voucher,
        description=description,
        source_id=source_id,
        amount_currency=currency,
        period_type=period_type,
        fiscal_year=period.fiscal_year,
        fiscal_period=period.number,
        period_name=period.name,
        period_end=period.end,
        period_monthly=monthly,
        balance_sheet=reader.options.balance_sheet == "balances"
        and account in reader.balance_sheet_accounts(),
    )
