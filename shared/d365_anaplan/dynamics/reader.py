"""Reading posted GL lines from F&O (dynamics-fo.md §2.3, §3; dynamics-budget-fiscal.md).

Posted GL lines are not on OData by default. :meth:`DynamicsReader.discover` (in
:mod:`~d365_anaplan.dynamics.master_data`) reads ``$metadata`` once per run and picks a route: a published
general-journal-account-entry entity set if the customer has one, else the BI entities
(``GeneralJournalEntryBiEntities`` headers give AccountingDate and the company,
``GeneralJournalAccountEntryBiEntities`` lines give the ledger account display value and amounts). Each line's
ledger account is split into main account and named dimension values by
:mod:`~d365_anaplan.dynamics.display_split`; row fields are checked by :mod:`~d365_anaplan.dynamics.gl_rows`.
With neither route, :class:`~d365_anaplan.errors.DynamicsRouteUnavailable` says what to publish.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from d365_anaplan.dynamics import filters as F
from d365_anaplan.dynamics.ahead import ahead
from d365_anaplan.dynamics.dimensions import DimensionFormat
from d365_anaplan.dynamics.gl_lines import GLLineMaker, make_line
from d365_anaplan.dynamics.gl_rows import (
    AMOUNT_FIELDS,
    DIMENSION_JSON,
    HEADER_FIELDS,
    HEADER_SET,
    LINE_FIELDS,
    LINE_SET,
    PUBLISHED_COMPANY_FIELDS,
    PUBLISHED_DISPLAY_FIELDS,
    Header,
    parse_date,
    parse_row_amount,
    row_text,
)
from d365_anaplan.dynamics.master_data import Discovery, GLRoute
from d365_anaplan.dynamics.odata_shapes import Continuation, Page, Query
from d365_anaplan.errors import BadInputData, DynamicsBadResponse, DynamicsRouteUnavailable
from d365_anaplan.flows.records import GLLine

_RECID = re.compile(r"[0-9]{1,19}")  # an Int64 RecId as F&O's package text writes it (ASCII digits)


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


class DynamicsReader(GLLineMaker):
    """Reads one environment's posted GL lines (and, inherited, its master data); ``companies`` are F&O legal
    entities (dataAreaId)."""

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
        books = self.books()
        company_field = next((f for f in PUBLISHED_COMPANY_FIELDS if f in info.properties), None)
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
        display_field = next(f for f in PUBLISHED_DISPLAY_FIELDS if f in info.properties)
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
        parts += self._published_filters(disc, start, end)
        fmt = self.ledger_format()
        named = DIMENSION_JSON in info.properties
        if named:
            select = (*select, DIMENSION_JSON)
        query = Query(disc.gl_entity_set, filter=F.and_(*parts), select=select, cross_company=True)

        def what_of(row: dict[str, Any]) -> str:
            return f"{disc.gl_entity_set} row {row.get('GeneralJournalAccountEntryRecId') or row.get('Voucher') or '?'}"

        for page in self.client.iter_pages(None if resume else query, resume=resume, prefetch=True):
            result.pages += 1
            for row, what, account, dims in self._split_lines(page.rows, display_field, named, fmt, what_of):
                company = row_text(row, company_field, what).upper()
                if by_ledger:
                    owner = books.company_of_ledger_name(row_text(row, "LedgerName", what))
                    if owner is None:
                        continue
                    company = owner
                yield self._entity_line(company, account, dims, row, what, amount_field)
            if page.next_link and self.client.should_stop():
                result.continuation = Continuation(page.next_link, state).encode()
                result.stopped_early = True
                return

    def _published_filters(self, disc: Discovery, start: date, end: date) -> list[str]:
        """The posting-layer and budget-entry filters of the published entity; refused when it lacks a column
        they need, or cannot tell year-end entries of the window from operating ones."""
        info = disc.metadata.entity_sets[disc.gl_entity_set]
        if "PostingLayer" not in info.properties:
            raise DynamicsRouteUnavailable(
                f"{disc.gl_entity_set}: PostingLayer is not published, so lines of other posting layers cannot "
                "be left out; publish PostingLayer or use dynamics.gl_route: bi"
            )
        parts = [self.layer_filter()]
        if self.options.exclude_budget_entries:
            markers = [f for f in ("JournalCategory", "PostingType") if f in info.properties]
            if not markers:
                raise DynamicsRouteUnavailable(
                    f"{disc.gl_entity_set}: neither JournalCategory nor PostingType is published, so budget "
                    "appropriation entries cannot be left out; publish one, use dynamics.gl_route: bi, or set "
                    "ledger.exclude_budget_entries: false"
                )
            if "JournalCategory" in markers:
                parts.append(F.ne("JournalCategory", F.EnumValue("LedgerTransType", "Budget")))
            if "PostingType" in markers:
                parts.append(F.ne("PostingType", F.EnumValue("LedgerPostingType", "Budget")))
        self._require_period_types(
            start, end, field_present="FiscalCalendarPeriod" in info.properties, what=disc.gl_entity_set
        )
        return parts

    def check_window(self, start: date, end: date) -> str:
        """What a read of ``start <= AccountingDate < end`` would refuse before its first line, with the run's
        message (``check`` calls it with the run's months); else what the route will do."""
        disc = self.discover()
        layers = ", ".join(self.options.posting_layers)
        if disc.route is GLRoute.PUBLISHED:
            self._published_filters(disc, start, end)
            return f"{disc.gl_entity_set} filters posting layers ({layers}) and tells year-end entries apart"
        how = (
            "names each entry's fiscal period"
            if self.books().by_recid
            else "dates each entry's fiscal period"
        )
        return f"{HEADER_SET} filters posting layers ({layers}) and {how}"

    def _bi(
        self, start: date, end: date, resume: str | None, result: GLRead, state: dict[str, Any]
    ) -> Iterator[GLLine]:
        books = self.books()
        parts = [
            F.between("AccountingDate", start, end),
            F.any_of("Ledger", [books.ledger(c).recid for c in self.companies]),
            self.layer_filter(),
        ]
        if self.options.exclude_budget_entries:
            parts.append(F.ne("JournalCategory", F.EnumValue("LedgerTransType", "Budget")))
        query = Query(
            HEADER_SET, filter=F.and_(*parts), select=HEADER_FIELDS, orderby="SourceKey", cross_company=True
        )
        fmt = self.ledger_format()
        meta = self.discover().metadata
        amount_field = AMOUNT_FIELDS[self.options.currency]
        named = meta.has_property(LINE_SET, DIMENSION_JSON)
        budget = self.options.exclude_budget_entries and meta.has_property(LINE_SET, "PostingType")
        select = (
            *LINE_FIELDS,
            amount_field,
            *([DIMENSION_JSON] if named else []),
            *(["PostingType"] if budget else []),
        )
        chain = self._bi_chain(None if resume else query, resume, select)
        # The chain of header and line pages is fetched one page ahead of the work on them (ahead.py).
        for headers, rows, boundary in ahead(chain, name="gl-prefetch"):
            if rows:
                yield from self._bi_lines(headers, rows, fmt, amount_field, named, budget)
            if boundary is None:
                continue
            result.pages += 1
            if boundary.next_link and self.client.should_stop():
                result.continuation = Continuation(boundary.next_link, state).encode()
                result.stopped_early = True
                return

    def _bi_chain(
        self, query: Query | None, resume: str | None, select: tuple[str, ...]
    ) -> Iterator[tuple[dict[int, Header], list[dict[str, Any]], Page | None]]:
        """(headers, line rows, None) for each page of lines of each page of headers, then (headers, [], header
        page) at the end of each header page (where a read may stop and resume). Runs in the fetch thread."""
        for page in self.client.iter_pages(query, resume=resume):
            headers = self._headers_of(page.rows)
            for flt in F.key_filters("GeneralJournalEntry", headers, budget=self.filter_budget):
                lines = Query(LINE_SET, filter=flt, select=select, cross_company=True)
                for line_page in self.client.iter_pages(lines):
                    yield headers, line_page.rows, None
            yield headers, [], page

    def _headers_of(self, rows: list[dict[str, Any]]) -> dict[int, Header]:
        """The journal headers of a page that belong to the configured companies and posting layers."""
        books = self.books()
        headers: dict[int, Header] = {}
        for row in rows:
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
            headers[key] = Header(
                company, d, row_text(row, "SubledgerVoucher", what, required=False),
                self._period(company, d, row.get("FiscalCalendarPeriod"), what),
            )  # fmt: skip
        return headers

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
                field = next((f for f in PUBLISHED_COMPANY_FIELDS if f in info.properties), "dataAreaId")
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
        display_field = next((f for f in PUBLISHED_DISPLAY_FIELDS if f in columns), None)
        # The ledger owns the line (an intercompany line's DataArea can be the other company), as on OData.
        company_field = next((f for f in ("LedgerName", "DataArea") if f in columns), None)
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
        if "PostingLayer" not in columns:
            missing.append("PostingLayer")
        if opts.exclude_budget_entries and not {"JournalCategory", "PostingType"} & columns:
            missing.append("JournalCategory or PostingType (ledger.exclude_budget_entries)")
        if missing:
            raise DynamicsRouteUnavailable(
                f"{what}: the package lacks {', '.join(missing)}; add them to the data project's mapping"
            )
        assert display_field is not None and company_field is not None
        self._require_period_types(start, end, field_present="FiscalCalendarPeriod" in columns, what=what)
        named = DIMENSION_JSON in columns
        fmt = self.ledger_format()
        lo, hi = start.isoformat(), end.isoformat()

        def wanted(source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            for row in source:
                day = str(row.get("AccountingDate", ""))[:10]
                if not lo <= day < hi:
                    continue
                if row.get("PostingLayer") not in opts.posting_layers:
                    continue
                if opts.exclude_budget_entries and "Budget" in (
                    row.get("JournalCategory"),
                    row.get("PostingType"),
                ):
                    continue
                recid = row.get("FiscalCalendarPeriod")
                if isinstance(recid, str):
                    row["FiscalCalendarPeriod"] = int(recid) if _RECID.fullmatch(recid) else None
                yield row

        def what_of(row: dict[str, Any]) -> str:
            return f"{what} line {row.get('_line')}"

        for row, w, account, dims in self._split_lines(wanted(rows), display_field, named, fmt, what_of):
            if company_field == "LedgerName":
                owner = books.company_of_ledger_name(row_text(row, "LedgerName", w))
                if owner is None:
                    continue
                company = owner
            else:
                company = row_text(row, "DataArea", w).upper()
            if company not in self.companies:
                continue
            yield self._entity_line(company, account, dims, row, w, amount_field)

    def _bi_lines(
        self,
        headers: dict[int, Header],
        rows: list[dict[str, Any]],
        fmt: DimensionFormat,
        amount_field: str,
        named: bool,
        budget: bool,
    ) -> Iterator[GLLine]:
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

        for row, what, account, dims in self._split_lines(wanted(rows), "LedgerAccount", named, fmt, what_of):
            header = headers[row["GeneralJournalEntry"]]
            ledger = books.ledger(header.company)
            yield make_line(
                self, header.company, account, dims, header.accounting_date,
                parse_row_amount(row, amount_field, what), self._amount_currency(ledger, row, what), row, what,
                header.period, voucher=header.voucher, description=row_text(row, "Text", what, required=False),
                source_id=row_text(row, "SourceKey", what, required=False),
            )  # fmt: skip
