"""Reading F&O master data and ledger facts: route discovery from ``$metadata``, the segment delimiter and
dimension formats, main accounts, dimensions, legal entities, journal names, ledgers and fiscal calendars
(dynamics-fo.md §0, §3, §8; dynamics-budget-fiscal.md)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Any, Literal

from d365_anaplan.config import LedgerOptions
from d365_anaplan.dynamics import filters as F
from d365_anaplan.dynamics.dimensions import DimensionFormat, delimiter_from_enum
from d365_anaplan.dynamics.gl_rows import (
    FORMAT_SET,
    HEADER_SET,
    LINE_SET,
    PARAMETERS_SET,
    PUBLISHED_CANDIDATES,
    PUBLISHED_COMPANY_FIELDS,
    PUBLISHED_DISPLAY_FIELDS,
    row_text,
)
from d365_anaplan.dynamics.ledgers import LedgerBooks, LedgerInfo
from d365_anaplan.dynamics.metadata import ServiceMetadata, parse_metadata
from d365_anaplan.dynamics.odata import ODataClient
from d365_anaplan.dynamics.odata_shapes import Query
from d365_anaplan.errors import BadInputData, ConfigError, DynamicsBadResponse, DynamicsRouteUnavailable
from d365_anaplan.flows.records import DimensionValue, MainAccount

log = logging.getLogger(__name__)

FINANCIAL_DIMENSION_VALUES_CAVEAT = (
    "F&O's FinancialDimensionValues returns only dimension values that have been used in transactions or "
    "have had a property overridden; unused values are missing, so a value absent here may still exist in F&O."
)


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


class MasterDataReader:
    """Reads one environment's master data; ``companies`` are F&O legal entities (dataAreaId)."""

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
                f in info.properties for f in PUBLISHED_DISPLAY_FIELDS
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
            row_text(row, "DimensionFormatName", what),
            row_text(row, "FinancialDimensionFormat", what),
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
                account=row_text(row, "MainAccountId", what),
                name=row_text(row, "Name", what, required=False),
                account_type=row_text(row, "MainAccountType", what, required=False),
                chart_of_accounts=row_text(row, "ChartOfAccounts", what, required=False),
                category=row_text(row, "MainAccountCategory", what, required=False),
                parent=row_text(row, "ParentMainAccountId", what, required=False),
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
                row_text(r, "DimensionName", "DimensionAttributes row"),
                row_text(r, "ReportColumnName", "DimensionAttributes row", required=False),
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
            value = row_text(row, "DimensionValue", what)
            seen.setdefault(
                value,
                DimensionValue(
                    dimension=dimension,
                    value=value,
                    description=row_text(row, "Description", what, required=False),
                ),
            )
        return DimensionValueList(sorted(seen.values(), key=lambda d: d.value))

    def legal_entities(self) -> list[LegalEntity]:
        q = Query("LegalEntities", select=("LegalEntityId", "Name"), cross_company=False)
        return [
            LegalEntity(
                row_text(r, "LegalEntityId", "LegalEntities row").upper(),
                row_text(r, "Name", "LegalEntities row", required=False),
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
                row_text(r, "dataAreaId", "JournalNames row").upper(),
                row_text(r, "Name", "JournalNames row"),
                row_text(r, "Description", "JournalNames row", required=False),
                row_text(r, "JournalType", "JournalNames row", required=False),
            )
            for r in self.client.iter_rows(q)
        ]

    # -- ledgers and fiscal calendars ------------------------------------------------------------------------

    def layer_filter(self) -> str:
        """``$filter`` on the configured posting layers (``ledger.posting_layers``), as every GL read uses it."""
        return F.any_of(
            "PostingLayer", [F.EnumValue("CurrentOperationsTax", x) for x in self.options.posting_layers]
        )

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
        """:meth:`window`, starting at the first day of the earliest fiscal year the balances need (opening
        period included): the fiscal year of the window's start, or the year before it while that year's
        opening entries are not posted (year-end close not run: its closing balance is carried forward)."""
        lo, hi = self.window(company, start, end)
        if hi <= lo:
            return lo, hi
        books = self.books()
        periods = books.periods[books.ledger(company).calendar]
        firsts: dict[str, date] = {}
        for p in periods:
            firsts[p.fiscal_year] = min(p.start, firsts.get(p.fiscal_year, p.start))
        year = books.operating_period(company, lo, f"fiscal year of {lo}").fiscal_year
        earlier = [y for y, d in firsts.items() if d < firsts[year]]
        if earlier and self.opening_posted(company, year) is False:
            year = max(earlier, key=lambda y: firsts[y])
        return min(firsts[year], lo), hi

    def opening_posted(self, company: str, year: str) -> bool | None:
        """Whether any GL entry of the company is posted in the opening period of fiscal ``year`` (its
        opening entries, made by the year-end close of the year before): one ``$top=1`` read. None when
        the route does not name an entry's fiscal period, so opening entries cannot be told apart."""
        books = self.books()
        ledger = books.ledger(company)
        opening = {
            (p.name, p.start, p.end)
            for p in books.periods[ledger.calendar]
            if p.fiscal_year == year and p.type == "Opening"
        }
        if not opening:
            return False  # no opening period: nothing can be posted to one
        recids = [
            k for k, (n, kind, a, b) in books.by_recid.items() if kind == "Opening" and (n, a, b) in opening
        ]
        disc = self.discover()
        entity_set = disc.gl_entity_set if disc.route is GLRoute.PUBLISHED else HEADER_SET
        info = disc.metadata.entity_sets[entity_set]
        if not recids or "FiscalCalendarPeriod" not in info.properties:
            return None
        parts = [F.any_of("FiscalCalendarPeriod", recids)]
        if disc.route is GLRoute.BI:
            parts.append(F.eq("Ledger", ledger.recid))
        elif "LedgerName" in info.properties:
            parts.append(F.eq("LedgerName", ledger.name))
        else:
            field = next((f for f in PUBLISHED_COMPANY_FIELDS if f in info.properties), "dataAreaId")
            parts.append(F.eq(field, company.lower()))
        if "PostingLayer" in info.properties:
            parts.append(self.layer_filter())
        query = Query(
            entity_set, filter=F.and_(*parts), select=("FiscalCalendarPeriod",), top=1, cross_company=True
        )
        return any(True for _ in self.client.iter_rows(query))

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
        return row_text(row, "TransactionCurrencyCode", what).upper()

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
