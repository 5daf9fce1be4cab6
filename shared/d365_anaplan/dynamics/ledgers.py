"""Ledgers and fiscal calendars of F&O (dynamics-budget-fiscal.md §C, §D).

* ``Ledgers`` (key ``LegalEntityId``): ``LedgerRecId`` is what a GL header's ``Ledger`` holds, so a line
  belongs to the legal entity that owns its ledger (§D1), also on the destination side of intercompany
  vouchers whose ``SubledgerVoucherDataAreaId`` names the originating company (§D3). Currencies and the
  fiscal calendar come from the same row (§D4).
* ``FiscalPeriods`` of the ledger's calendar give fiscal year, name, dates and type (Opening / Operating /
  Closing) of every period; ``FiscalCalendarPeriodBiEntities`` maps the RecId in a header's
  ``FiscalCalendarPeriod`` (its ``SourceKey``) to a period, matched within the ledger's calendar by name and
  dates (§C2). A closing period shares the dates of the last operating period, so only the RecId tells them
  apart (§C1, §C3).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from d365_anaplan.dynamics import filters as F
from d365_anaplan.dynamics.odata import ODataClient
from d365_anaplan.dynamics.odata_shapes import Query
from d365_anaplan.errors import DynamicsBadResponse, DynamicsRouteUnavailable

LEDGERS_SET = "Ledgers"
PERIODS_SET = "FiscalPeriods"
PERIOD_KEYS_SET = "FiscalCalendarPeriodBiEntities"
PERIOD_TYPES = ("Opening", "Operating", "Closing")


@dataclass(frozen=True)
class LedgerInfo:
    company: str  # legal entity, upper case
    name: str
    recid: int
    calendar: str
    accounting_currency: str
    reporting_currency: str


@dataclass(frozen=True)
class FiscalPeriodInfo:
    calendar: str
    fiscal_year: str
    name: str
    type: str  # Opening | Operating | Closing
    start: date
    end: date
    number: int  # 1.. for operating periods in date order; 0 opening; last operating + 1 for closing

    @property
    def is_calendar_month(self) -> bool:
        return (
            self.start.day == 1
            and (self.end + timedelta(days=1)).day == 1
            and self.start.month == self.end.month
        )


def _date(row: dict[str, Any], name: str, what: str) -> date:
    from d365_anaplan.dynamics.gl_rows import parse_date

    return parse_date(row, name, what)


def _str(row: dict[str, Any], name: str, what: str) -> str:
    value = row.get(name)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DynamicsBadResponse(f"{what}: field {name} has an unexpected type ({type(value).__name__})")
    return str(value)


@dataclass
class LedgerBooks:
    """The ledgers of the configured companies and their fiscal calendars, read once per run."""

    ledgers: dict[str, LedgerInfo]
    periods: dict[str, list[FiscalPeriodInfo]]  # calendar -> periods
    by_recid: dict[int, tuple[str, str, date, date]] = field(
        default_factory=dict
    )  # RecId -> (name, type, start, end)
    _index: dict[str, tuple[list[date], list[FiscalPeriodInfo]]] = field(default_factory=dict)
    _monthly: dict[str, bool] = field(default_factory=dict)
    _by_company_recid: dict[tuple[str, int], FiscalPeriodInfo] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for cal, ps in self.periods.items():
            ops = sorted((p for p in ps if p.type == "Operating"), key=lambda p: p.start)
            self._index[cal] = ([p.start for p in ops], ops)

    @classmethod
    def read(cls, client: ODataClient, companies: Iterable[str], *, period_keys: bool = True) -> LedgerBooks:
        wanted = [c.upper() for c in companies]
        rows = list(
            client.iter_rows(
                Query(
                    LEDGERS_SET,
                    filter=F.any_of("LegalEntityId", wanted),
                    select=(
                        "LegalEntityId",
                        "Name",
                        "LedgerRecId",
                        "FiscalCalendar",
                        "AccountingCurrency",
                        "ReportingCurrency",
                    ),
                    cross_company=False,
                )
            )
        )
        ledgers: dict[str, LedgerInfo] = {}
        for row in rows:
            what = f"{LEDGERS_SET} row {row.get('LegalEntityId')!r}"
            recid = row.get("LedgerRecId")
            if not isinstance(recid, int) or isinstance(recid, bool):
                raise DynamicsBadResponse(f"{what}: LedgerRecId is not an integer ({recid!r})")
            company = _str(row, "LegalEntityId", what).upper()
            ledgers[company] = LedgerInfo(
                company,
                _str(row, "Name", what),
                recid,
                _str(row, "FiscalCalendar", what),
                _str(row, "AccountingCurrency", what).upper(),
                _str(row, "ReportingCurrency", what).upper(),
            )
        missing = [c for c in wanted if c not in ledgers]
        if missing:
            raise DynamicsRouteUnavailable(
                f"{LEDGERS_SET}: no ledger for legal entit{'y' if len(missing) == 1 else 'ies'} {missing}; "
                "set up the ledger (General ledger > Ledger setup > Ledger) or fix dynamics.companies"
            )
        periods: dict[str, list[FiscalPeriodInfo]] = {}
        for cal in sorted({lg.calendar for lg in ledgers.values()}):
            periods[cal] = _read_periods(client, cal)
        by_recid: dict[int, tuple[str, str, date, date]] = {}
        if period_keys:
            for row in client.iter_rows(
                Query(
                    PERIOD_KEYS_SET,
                    select=("SourceKey", "Name", "Type", "StartDate", "EndDate"),
                    cross_company=False,
                )
            ):
                what = f"{PERIOD_KEYS_SET} row {row.get('SourceKey')!r}"
                key = row.get("SourceKey")
                if not isinstance(key, int) or isinstance(key, bool):
                    raise DynamicsBadResponse(f"{what}: SourceKey is not an integer")
                by_recid[key] = (
                    _str(row, "Name", what),
                    _str(row, "Type", what),
                    _date(row, "StartDate", what),
                    _date(row, "EndDate", what),
                )
        return cls(ledgers, periods, by_recid)

    # -- look-ups -------------------------------------------------------------------------------------------

    def ledger(self, company: str) -> LedgerInfo:
        return self.ledgers[company.upper()]

    def company_of_ledger(self, recid: int) -> str | None:
        for lg in self.ledgers.values():
            if lg.recid == recid:
                return lg.company
        return None

    def company_of_ledger_name(self, name: str) -> str | None:
        for lg in self.ledgers.values():
            if lg.name.upper() == name.upper() or lg.company == name.upper():
                return lg.company
        return None

    def is_monthly(self, company: str) -> bool:
        """True when every operating period of the company's calendar is a calendar month."""
        _, ops = self._index[self.ledger(company).calendar]
        return all(p.is_calendar_month for p in ops)

    def is_monthly_cached(self, company: str) -> bool:
        cached = self._monthly.get(company)
        if cached is None:
            cached = self._monthly[company] = self.is_monthly(company)
        return cached

    def operating_period(self, company: str, d: date, what: str) -> FiscalPeriodInfo:
        starts, ops = self._index[self.ledger(company).calendar]
        i = bisect_right(starts, d) - 1
        if i < 0 or not ops[i].start <= d <= ops[i].end:
            raise DynamicsBadResponse(
                f"{what}: accounting date {d.isoformat()} is in no fiscal period of calendar "
                f"{self.ledger(company).calendar!r} (ledger {company})"
            )
        return ops[i]

    def period_of_recid(self, company: str, recid: int, d: date, what: str) -> FiscalPeriodInfo:
        """The period a header's ``FiscalCalendarPeriod`` names, within the company's calendar."""
        cached = self._by_company_recid.get((company, recid))
        if cached is not None:
            return cached
        found = self.by_recid.get(recid)
        if found is None:
            raise DynamicsBadResponse(f"{what}: FiscalCalendarPeriod {recid} is not in {PERIOD_KEYS_SET}")
        name, kind, start, end = found
        for p in self.periods[self.ledger(company).calendar]:
            if p.name == name and p.start == start and p.end == end and p.type == kind:
                self._by_company_recid[(company, recid)] = p
                return p
        raise DynamicsBadResponse(
            f"{what}: FiscalCalendarPeriod {recid} ({name} {start}..{end}) is not a period of calendar "
            f"{self.ledger(company).calendar!r} (ledger {company})"
        )

    def periods_ending_in(self, company: str, first: date, end: date) -> list[FiscalPeriodInfo]:
        """Operating periods of the company whose end date is in [first, end)."""
        _, ops = self._index[self.ledger(company).calendar]
        return [p for p in ops if first <= p.end < end]

    def period_ending(self, company: str, end: date) -> FiscalPeriodInfo | None:
        _, ops = self._index[self.ledger(company).calendar]
        return next((p for p in ops if p.end == end), None)


def _read_periods(client: ODataClient, calendar: str) -> list[FiscalPeriodInfo]:
    rows = list(
        client.iter_rows(
            Query(
                PERIODS_SET,
                filter=F.eq("Calendar", calendar),
                select=("Calendar", "FiscalYear", "PeriodName", "StartDate", "EndDate", "Type"),
                cross_company=False,
            )
        )
    )
    if not rows:
        raise DynamicsRouteUnavailable(f"{PERIODS_SET}: fiscal calendar {calendar!r} has no periods")
    raw: list[tuple[str, str, str, date, date]] = []
    for row in rows:
        what = f"{PERIODS_SET} row {calendar}/{row.get('FiscalYear')}/{row.get('PeriodName')}"
        kind = _str(row, "Type", what)
        if kind not in PERIOD_TYPES:
            raise DynamicsBadResponse(f"{what}: Type {kind!r} is not one of {list(PERIOD_TYPES)}")
        raw.append(
            (
                _str(row, "FiscalYear", what),
                _str(row, "PeriodName", what),
                kind,
                _date(row, "StartDate", what),
                _date(row, "EndDate", what),
            )
        )
    out: list[FiscalPeriodInfo] = []
    for year in sorted({r[0] for r in raw}):
        in_year = sorted((r for r in raw if r[0] == year), key=lambda r: (r[3], PERIOD_TYPES.index(r[2])))
        number = 0
        for y, name, kind, start, end in in_year:
            if kind == "Operating":
                number += 1
                out.append(FiscalPeriodInfo(calendar, y, name, kind, start, end, number))
        closing = number + 1
        for y, name, kind, start, end in in_year:
            if kind != "Operating":
                out.append(
                    FiscalPeriodInfo(calendar, y, name, kind, start, end, 0 if kind == "Opening" else closing)
                )
    return out
