"""The F&O sandbox's ledgers, fiscal calendars and special vouchers (dynamics-budget-fiscal.md §B, §C, §D).

Built from the reference, not from our client:

* ``Ledgers`` (one per legal entity): ``LedgerRecId`` (the ``Ledger`` of every GL header), accounting and
  reporting currency, fiscal calendar (§D1, §D4).
* Fiscal calendars (§C1): ``FiscalCalendarsEntity``, ``FiscalCalendarYears``, ``FiscalPeriods`` and
  ``FiscalCalendarPeriodBiEntities`` (``SourceKey`` = the RecId a GL header's ``FiscalCalendarPeriod`` holds).
  Every year has an *Opening* period on its first day, its operating periods and a *Closing* period sharing
  the dates of the last one (§C1, §C3). A calendar is monthly (12 operating periods) or 4-4-5 (12 periods of
  4, 4 and 5 weeks; the last one absorbs the remaining day(s), built by hand).
* Special vouchers, when ``SandboxConfig.books`` is on, appended after the generated GL (their RecIds follow
  the generator's): an opening entry in each year's opening period, the year-end closing entry in the closing
  period (zeroing each P&L account of the year into retained earnings, §C3), an intercompany voucher (each
  side posted in its own ledger; the destination side keeps the originating company in
  ``SubledgerVoucherDataAreaId``, §D2/§D3), a voucher on a non-Current posting layer (§B), a budget
  appropriation entry (``JournalCategory`` Budget, lines with ``PostingType`` Budget, §A3 #8), and
  :meth:`Books.post_late` for a posting into an already closed month.

Reporting-currency amounts are translated per voucher with the last line balancing the voucher, so every
voucher balances in each of its currencies (§D6: reporting amounts are kept separately, never derived later).
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Literal

from devkit.sandbox.dynamics import seed

if TYPE_CHECKING:
    from devkit.sandbox.dynamics.seed import GLGenerator

Row = dict[str, Any]
PeriodType = Literal["Opening", "Operating", "Closing"]

LEDGER_NAMES = {"USMF": "USMF", "DEMF": "DEMF"}
REPORTING_CURRENCY = "USD"
MONTHLY = "Fiscal"
FOUR_FOUR_FIVE = "Fiscal445"
PERIOD_RECID_BASE = 5637160000
YEAR_RECID_BASE = 5637150000
RETAINED_EARNINGS = "290100"
OPENING_BANK = "110110"
IC_RECEIVABLE = "130130"  # "Accounts receivable - intercompany"
IC_PAYABLE = "200140"  # "Accounts payable - intercompany"


def reporting_rate(company: str) -> tuple[int, int]:
    """Reporting-currency rate as a fraction (numerator, denominator): EUR -> USD at 1.10."""
    return (1, 1) if seed.ACCOUNTING_CURRENCY[company] == REPORTING_CURRENCY else (11, 10)


def reporting_cents(company: str, cents: list[int]) -> list[int]:
    """Reporting amounts of one voucher's lines: each translated (half away from zero), the last balancing."""
    num, den = reporting_rate(company)
    out = []
    for c in cents[:-1]:
        q, r = divmod(abs(c) * num, den)
        v = q + (1 if 2 * r >= den else 0)
        out.append(v if c >= 0 else -v)
    if cents:
        out.append(-sum(out) if sum(cents) == 0 else cents[-1] * num // den)
    return out


# Account structures (General ledger > Chart of accounts > Structures), each with its own segment order: the
# balance sheet accounts' structure and the P&L accounts' one. No entity publishes the order (dynamics-fo.md §2.3).
BALANCE_SHEET_STRUCTURE = "Manufacturing B/S"
PROFIT_AND_LOSS_STRUCTURE = "Manufacturing P&L"
ACCOUNT_STRUCTURES: dict[str, tuple[str, ...]] = {
    BALANCE_SHEET_STRUCTURE: ("MainAccount", "BusinessUnit"),
    PROFIT_AND_LOSS_STRUCTURE: ("MainAccount", "CostCenter", "Department", "BusinessUnit"),
}
COMBINATION_RECID_BASE = 5637170000


def account_structure(account: str) -> str:
    """The structure a main account belongs to (its account range): balance sheet or P&L."""
    a = seed.main_account(account)
    return BALANCE_SHEET_STRUCTURE if a is not None and a.is_balance_sheet else PROFIT_AND_LOSS_STRUCTURE


def structure_display(account: str, bu: str, cc: str, dep: str, delimiter: str = "-") -> str:
    """A ledger account's display value in its own structure's segment order."""
    values = {"MainAccount": account, "BusinessUnit": bu, "CostCenter": cc, "Department": dep}
    return delimiter.join(values[s] for s in ACCOUNT_STRUCTURES[account_structure(account)])


def combination_rows(
    combinations: Iterable[tuple[str, str, str, str]], display: Callable[..., str]
) -> list[Row]:
    """``DimensionCombinations`` rows (dynamics-fo.md §2.3) of the ledger dimension combinations used: the
    display value as the GL lines show it, the main account and the account structure that applies to it."""
    rows = []
    for i, (acc, bu, cc, dep) in enumerate(sorted(set(combinations))):
        shown = display(acc, bu, cc, dep)
        rows.append({"RecordId": COMBINATION_RECID_BASE + i, "DisplayValue": shown, "MainAccount": acc,
                     "AccountStructure": account_structure(acc), "AccountValue": shown})  # fmt: skip
    return rows


@dataclass(frozen=True)
class FiscalPeriod:
    calendar: str
    year: str  # FiscalYear / YearName, e.g. "2025"
    name: str  # PeriodName, e.g. "Period 3", "P03", "Opening", "Closing"
    short_name: str
    start: date
    end: date
    type: PeriodType
    recid: int
    year_recid: int
    month: int
    quarter: int


def _year_periods(calendar: str, year: int, kind: str, recid: int, year_recid: int) -> list[FiscalPeriod]:
    first, last = date(year, 1, 1), date(year, 12, 31)
    out = [
        FiscalPeriod(calendar, str(year), "Opening", "OP", first, first, "Opening", recid, year_recid, 1, 1)
    ]
    bounds: list[tuple[date, date]] = []
    if kind == "monthly":
        for m in range(1, 13):
            start = date(year, m, 1)
            end = (date(year + 1, 1, 1) if m == 12 else date(year, m + 1, 1)) - timedelta(days=1)
            bounds.append((start, end))
    else:  # 4-4-5: weeks per period, the last period absorbs the days after week 52
        start = first
        for i in range(12):
            weeks = 5 if i % 3 == 2 else 4
            end = start + timedelta(days=7 * weeks - 1)
            if i == 11:
                end = last
            bounds.append((start, end))
            start = end + timedelta(days=1)
    for i, (start, end) in enumerate(bounds, start=1):
        name = f"Period {i}" if kind == "monthly" else f"P{i:02d}"
        out.append(
            FiscalPeriod(
                calendar,
                str(year),
                name,
                f"P{i}",
                start,
                end,
                "Operating",
                recid + i,
                year_recid,
                start.month,
                (i - 1) // 3 + 1,
            )
        )
    out.append(
        FiscalPeriod(
            calendar,
            str(year),
            "Closing",
            "CL",
            bounds[-1][0],
            last,
            "Closing",
            recid + 13,
            year_recid,
            12,
            4,
        )
    )
    return out


@dataclass(slots=True)
class SpecialLine:
    account: str
    business_unit: str
    cost_center: str
    department: str
    cents: int
    text: str
    posting_type: str = "LedgerJournal"


@dataclass
class SpecialVoucher:
    company: str  # the ledger's legal entity
    accounting_date: date
    voucher: str
    lines: list[SpecialLine]
    period_type: PeriodType = "Operating"
    posting_layer: str = "Current"
    journal_category: str = "GeneralJournal"
    origin_company: str = ""  # SubledgerVoucherDataAreaId (the originating company on intercompany sides)
    index: int = 0  # global voucher index (after the generated ones)
    line_start: int = 0  # global line position

    @property
    def subledger_company(self) -> str:
        return self.origin_company or self.company


@dataclass
class Books:
    """Ledgers, calendars and the special vouchers of one sandbox."""

    gl: GLGenerator
    calendars: dict[str, str] = field(default_factory=dict)  # company -> "monthly" | "445"
    extras: bool = False
    periods: dict[str, list[FiscalPeriod]] = field(default_factory=dict)  # calendar id -> periods
    vouchers: list[SpecialVoucher] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        kinds = {c: self.calendars.get(c, "monthly") for c in seed.COMPANIES}
        self.calendars = kinds
        years = range(self.gl.start.year - 1, self.gl.end.year + 2)
        for kind in sorted(set(kinds.values())):
            cal = self.calendar_id(kind)
            offset = 0 if kind == "monthly" else 500
            self.periods[cal] = [
                p
                for y in years
                for p in _year_periods(
                    cal, y, kind, PERIOD_RECID_BASE + offset + y * 14, YEAR_RECID_BASE + offset + y
                )
            ]
        self._operating = {
            cal: sorted((p.start, p) for p in ps if p.type == "Operating") for cal, ps in self.periods.items()
        }
        self._starts = {cal: [s for s, _ in ops] for cal, ops in self._operating.items()}
        if self.extras:
            self._build_extras()

    # -- calendars --------------------------------------------------------------------------------------

    @staticmethod
    def calendar_id(kind: str) -> str:
        return MONTHLY if kind == "monthly" else FOUR_FOUR_FIVE

    def company_calendar(self, company: str) -> str:
        return self.calendar_id(self.calendars[company])

    def operating_period(self, company: str, d: date) -> FiscalPeriod:
        cal = self.company_calendar(company)
        i = bisect_right(self._starts[cal], d) - 1
        return self._operating[cal][i][1]

    def period_of(self, company: str, d: date, kind: PeriodType) -> FiscalPeriod:
        if kind == "Operating":
            return self.operating_period(company, d)
        cal = self.company_calendar(company)
        return next(p for p in self.periods[cal] if p.type == kind and p.start <= d <= p.end)

    def period_by_recid(self, recid: int) -> FiscalPeriod | None:
        for ps in self.periods.values():
            for p in ps:
                if p.recid == recid:
                    return p
        return None

    # -- special vouchers ---------------------------------------------------------------------------------

    def _add(self, v: SpecialVoucher) -> SpecialVoucher:
        with self.lock:
            v.index = self.gl.voucher_count + len(self.vouchers)
            last = self.vouchers[-1] if self.vouchers else None
            v.line_start = (last.line_start + len(last.lines)) if last else self.gl.line_count
            self.vouchers.append(v)
        return v

    def _build_extras(self) -> None:
        gl = self.gl
        first_year, last_day = gl.start.year, gl.end - timedelta(days=1)
        for company in seed.COMPANIES:
            scale = 1 if company == "USMF" else 2
            self._add(SpecialVoucher(company, date(first_year, 1, 1), f"OPEN{first_year}{company}", [
                SpecialLine(OPENING_BANK, "001", "", "", 250_000_00 * scale, "Opening balance"),
                SpecialLine(RETAINED_EARNINGS, "001", "", "", -250_000_00 * scale, "Opening balance"),
            ], period_type="Opening"))  # fmt: skip
        if last_day.month == 12 and last_day.day == 31:
            self._closing_entries(last_day)
        mid = gl.start + (last_day - gl.start) // 2
        ic = 12_345_67
        self._add(SpecialVoucher("USMF", mid, "ICV0000001", [
            SpecialLine(IC_RECEIVABLE, "002", "", "", ic, "Intercompany charge to DEMF"),
            SpecialLine(OPENING_BANK, "002", "", "", -ic, "Intercompany charge to DEMF"),
        ]))  # fmt: skip
        self._add(SpecialVoucher("DEMF", mid, "ICV0000001", [
            SpecialLine("605110", "002", "OU_3566", "022", ic, "Intercompany charge from USMF"),
            SpecialLine(IC_PAYABLE, "002", "", "", -ic, "Intercompany charge from USMF"),
        ], origin_company="usmf"))  # fmt: skip
        self._add(SpecialVoucher("USMF", mid, "TAXADJ0001", [
            SpecialLine("601100", "001", "OU_3566", "022", 77_000_00, "Tax layer adjustment"),
            SpecialLine("220100", "001", "", "", -77_000_00, "Tax layer adjustment"),
        ], posting_layer="Tax"))  # fmt: skip
        self._add(SpecialVoucher("USMF", mid, "BUDAPP0001", [
            SpecialLine("603100", "003", "OU_3569", "025", 55_555_00, "Budget appropriation", "Budget"),
            SpecialLine("290110", "003", "", "", -55_555_00, "Budget appropriation", "Budget"),
        ], journal_category="Budget"))  # fmt: skip

    def _closing_entries(self, last_day: date) -> None:
        """The year-end closing entry of the generated year, per company: every P&L balance to retained earnings."""
        gl = self.gl
        year = last_day.year
        sums: dict[str, dict[tuple[str, str, str, str], int]] = defaultdict(lambda: defaultdict(int))
        for v in range(gl.voucher_count):
            head = gl.voucher(v)
            if head.accounting_date.year != year:
                continue
            for line in gl.voucher_lines(v):
                if not line.account.is_balance_sheet:
                    key = (line.account.account, line.business_unit, line.cost_center, line.department)
                    sums[head.company][key] += line.cents
        for company, balances in sorted(sums.items()):
            lines = [
                SpecialLine(a, bu, cc, dep, -c, "Year-end close")
                for (a, bu, cc, dep), c in sorted(balances.items())
                if c
            ]
            total = sum(line.cents for line in lines)
            lines.append(SpecialLine(RETAINED_EARNINGS, "001", "", "", -total, "Year-end close"))
            self._add(SpecialVoucher(company, last_day, f"CLOSE{year}", lines, period_type="Closing"))

    def post_late(self, company: str, d: date, lines: list[SpecialLine], voucher: str) -> SpecialVoucher:
        """A posting into an already closed (and loaded) month."""
        if sum(line.cents for line in lines) != 0:
            raise ValueError("a voucher must balance")
        return self._add(SpecialVoucher(company, d, voucher, lines))

    def snapshot(self) -> list[SpecialVoucher]:
        with self.lock:
            return list(self.vouchers)

    # -- rows --------------------------------------------------------------------------------------------

    def ledger_rows(self) -> list[Row]:
        return [
            {
                "LegalEntityId": c,
                "Name": LEDGER_NAMES[c],
                "Description": seed.COMPANY_NAMES[c],
                "LedgerRecId": seed.LEDGER_RECIDS[c],
                "ChartOfAccounts": seed.CHART_OF_ACCOUNTS,
                "FiscalCalendar": self.company_calendar(c),
                "AccountingCurrency": seed.ACCOUNTING_CURRENCY[c],
                "ReportingCurrency": REPORTING_CURRENCY,
                "ExchangeRateType": "Default",
                "ReportingCurrencyExchangeRateType": "Default",
                "BudgetExchangeRateType": "Budget",
                "IsBudgetControlEnabled": "No",
            }
            for c in seed.COMPANIES
        ]

    def calendar_tables(self) -> dict[str, list[Row]]:
        def dto(d: date) -> str:
            return f"{d.isoformat()}T00:00:00Z"

        cal_rows = [
            {"CalendarId": cal, "Description": "Monthly" if cal == MONTHLY else "4-4-5"}
            for cal in self.periods
        ]
        years: dict[tuple[str, str], list[FiscalPeriod]] = defaultdict(list)
        for cal, ps in self.periods.items():
            for p in ps:
                years[(cal, p.year)].append(p)
        year_rows = [
            {
                "Calendar": cal,
                "FiscalYear": y,
                "StartDate": dto(min(p.start for p in ps)),
                "EndDate": dto(max(p.end for p in ps)),
            }
            for (cal, y), ps in sorted(years.items())
        ]
        period_rows = [
            {"Calendar": p.calendar, "FiscalYear": p.year, "StartDate": dto(p.start), "EndDate": dto(p.end),
             "PeriodName": p.name, "Type": p.type, "ShortName": p.short_name, "Month": p.month,
             "Quarter": p.quarter, "Days": (p.end - p.start).days + 1}
            for ps in self.periods.values() for p in ps
        ]  # fmt: skip
        bi_rows = [
            {"Name": p.name, "SourceKey": p.recid, "FiscalCalendarYear": p.year_recid,
             "FiscalCalendar": 5637140000 + (0 if p.calendar == MONTHLY else 1), "Type": p.type,
             "StartDate": dto(p.start), "EndDate": dto(p.end)}
            for ps in self.periods.values() for p in ps
        ]  # fmt: skip
        return {
            "FiscalCalendarsEntity": cal_rows,
            "FiscalCalendarYears": year_rows,
            "FiscalPeriods": period_rows,
            "FiscalCalendarPeriodBiEntities": bi_rows,
            "Ledgers": self.ledger_rows(),
        }

    def header_row(self, v: SpecialVoucher) -> Row:
        d = v.accounting_date
        p = self.period_of(v.company, d, v.period_type)
        text = f"{d.isoformat()}T00:00:00Z"
        return {
            "JournalNumber": f"S{v.index:07d}",
            "FiscalCalendarYear": p.year_recid,
            "Ledger": seed.LEDGER_RECIDS[v.company],
            "AccountingDate": text,
            "DocumentDate": text,
            "DocumentNumber": "",
            "JournalCategory": v.journal_category,
            "PostingLayer": v.posting_layer,
            "SubledgerVoucher": v.voucher,
            "SubledgerVoucherDataAreaId": v.subledger_company.lower(),
            "LedgerPostingJournal": f"S{v.index:07d}",
            "LedgerPostingJournalDataAreaId": v.company.lower(),
            "FiscalCalendarPeriod": p.recid,
            "SourceKey": seed.HEADER_RECID_BASE + v.index,
            "CreatedOn": f"{d.isoformat()}T08:00:00Z",
            "AcknowledgementDate": text,
        }

    def line_rows(self, v: SpecialVoucher) -> Iterator[tuple[SpecialLine, int, int]]:
        """(line, position, reporting cents) of a special voucher."""
        rep = reporting_cents(v.company, [line.cents for line in v.lines])
        for j, line in enumerate(v.lines):
            yield line, v.line_start + j, rep[j]
