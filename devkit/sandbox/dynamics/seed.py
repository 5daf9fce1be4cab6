"""Deterministic seed of the F&O sandbox: a mid-size manufacturer with two legal entities.

Everything here is a pure function of the constants and a seed number, so the demo can seed the Anaplan
sandbox with the same account and dimension lists (:func:`main_account_codes`, :func:`dimension_values`).

Posted GL lines are produced by :class:`GLGenerator`, indexed by position: line ``n`` and voucher ``v``
are computed on demand, so paging through a million lines never materialises them. Vouchers are balanced
(debits = credits); amounts are integer cents rendered with two decimals (never float).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

COMPANIES = ("USMF", "DEMF")
COMPANY_NAMES = {"USMF": "Contoso Manufacturing USA", "DEMF": "Contoso Manufacturing Germany"}
ACCOUNTING_CURRENCY = {"USMF": "USD", "DEMF": "EUR"}
CURRENCIES = ("USD", "EUR", "GBP", "CAD", "JPY", "CHF")
DEFAULT_COMPANY = "USMF"  # the service user's default company (reads without cross-company see only it)
CHART_OF_ACCOUNTS = "Shared"
CHART_OF_ACCOUNTS_RECID = 5637144576

DIMENSIONS = ("BusinessUnit", "CostCenter", "Department")
DIMENSION_DESCRIPTIONS = {
    "BusinessUnit": "Business unit",
    "CostCenter": "Cost center",
    "Department": "Department",
}
LEDGER_FORMAT_NAME = "LedgerFormat"
BUDGET_FORMAT_NAME = "BudgetFormat"
DEFAULT_FORMAT_NAME = "DefaultFormat"
LEDGER_FORMAT = ("MainAccount", *DIMENSIONS)
DELIMITER = "-"
DELIMITER_ENUM = "Hyphen"

BUSINESS_UNITS: tuple[tuple[str, str], ...] = (
    ("001", "Home"),
    ("002", "Car audio"),
    ("003", "Speakers"),
    ("004", "Projectors"),
    ("005", "Services"),
    ("006", "Discontinued line"),  # never used in GL: not returned by FinancialDimensionValues
)
COST_CENTERS: tuple[tuple[str, str], ...] = (
    ("OU_3566", "Finance"),
    ("OU_3567", "Manufacturing"),
    ("OU_3568", "Sales"),
    ("OU_3569", "Marketing"),
    ("OU_3570", "Research & development"),
    ("OU_3571", "Logistics"),
    ("OU_3572", "Quality"),
    ("OU_3573", "Facilities"),
    ("OU_4801", "Planned (unused)"),  # never used in GL
)
DEPARTMENTS: tuple[tuple[str, str], ...] = (
    ("022", "Accounting"),
    ("023", "Operations"),
    ("024", "Purchasing"),
    ("025", "Sales & marketing"),
    ("026", "Human resources"),
    ("027", "IT"),
    ("028", "Production"),
    ("029", "Legal"),
    ("030", "Warehouse"),
    ("031", "Customer service"),
    ("099", "Reserved (unused)"),  # never used in GL
)
_DIMENSION_TABLE = {"BusinessUnit": BUSINESS_UNITS, "CostCenter": COST_CENTERS, "Department": DEPARTMENTS}
_UNUSED = {"BusinessUnit": 1, "CostCenter": 1, "Department": 1}  # the last N values of each list stay unused

# (first code, how many, name stem, MainAccountType, category). Codes step by 10 within a group.
_ACCOUNT_GROUPS: tuple[tuple[int, int, str, str, str], ...] = (
    (110110, 8, "Bank account", "Asset", "CASH"),
    (110200, 4, "Petty cash", "Asset", "CASH"),
    (130100, 8, "Accounts receivable", "Asset", "AR"),
    (140100, 10, "Inventory", "Asset", "INV"),
    (150100, 4, "Prepaid expenses", "Asset", "PREPAID"),
    (180100, 10, "Fixed assets", "Asset", "FA"),
    (181100, 6, "Accumulated depreciation", "Asset", "FA"),
    (200110, 8, "Accounts payable", "Liability", "AP"),
    (220100, 8, "Accrued liabilities", "Liability", "ACCRUED"),
    (230100, 6, "Sales tax payable", "Liability", "TAX"),
    (250100, 4, "Long-term debt", "Liability", "DEBT"),
    (290100, 4, "Retained earnings", "Equity", "EQUITY"),
    (401100, 10, "Sales revenue", "Revenue", "SALES"),
    (402100, 6, "Service revenue", "Revenue", "SALES"),
    (403100, 4, "Other income", "Revenue", "OTHERINC"),
    (501100, 10, "Cost of goods sold", "Expense", "COGS"),
    (502100, 6, "Production variances", "Expense", "COGS"),
    (601100, 8, "Salaries", "Expense", "PAYROLL"),
    (601500, 6, "Travel", "Expense", "OPEX"),
    (602100, 8, "Rent and facilities", "Expense", "OPEX"),
    (603100, 6, "Marketing", "Expense", "OPEX"),
    (604100, 6, "IT and software", "Expense", "OPEX"),
    (605100, 6, "Professional fees", "Expense", "OPEX"),
    (606100, 4, "Depreciation", "Expense", "DEPR"),
    (801100, 4, "Interest expense", "Expense", "FIN"),
)
_SUFFIXES = (
    "",
    " - domestic",
    " - export",
    " - intercompany",
    " - region A",
    " - region B",
    " - other",
    " - adjustments",
    " - misc",
    " - reserve",
)


@dataclass(frozen=True)
class MainAccountSeed:
    account: str
    name: str
    account_type: str  # DimensionLedgerAccountType member
    category: str
    recid: int

    @property
    def is_balance_sheet(self) -> bool:
        return self.account_type in ("Asset", "Liability", "Equity")


def _build_accounts() -> tuple[MainAccountSeed, ...]:
    out: list[MainAccountSeed] = []
    recid = 22565420000
    for first, count, stem, kind, category in _ACCOUNT_GROUPS:
        for i in range(count):
            recid += 1
            out.append(
                MainAccountSeed(
                    str(first + 10 * i), f"{stem}{_SUFFIXES[i % len(_SUFFIXES)]}", kind, category, recid
                )
            )
    return tuple(out)


MAIN_ACCOUNTS: tuple[MainAccountSeed, ...] = _build_accounts()
_BY_CODE = {a.account: a for a in MAIN_ACCOUNTS}
SUSPENDED_ACCOUNTS = frozenset({"110200"})  # exists but suspended: F&O refuses new lines on it

JOURNAL_NAMES: tuple[tuple[str, str, str], ...] = (
    ("GenJrn", "General journal", "Daily"),
    ("Budget", "Budget journal (plan values)", "Daily"),
    ("Anaplan", "Anaplan plan values", "Daily"),
    ("Alloc", "Allocation journal", "Allocation"),
)
POSTING_BATCH_JOB_ID = 5637145326


def main_account_codes() -> list[str]:
    """Every main account code of the chart (about 150), in chart order."""
    return [a.account for a in MAIN_ACCOUNTS]


def main_account(code: str) -> MainAccountSeed | None:
    return _BY_CODE.get(code)


def dimension_values(dimension: str) -> list[tuple[str, str]]:
    """Every (value, description) of a dimension, used or not."""
    return list(_DIMENSION_TABLE[dimension])


def used_dimension_values(dimension: str) -> list[tuple[str, str]]:
    """The values that appear in posted GL (what FinancialDimensionValues returns)."""
    values = _DIMENSION_TABLE[dimension]
    return list(values[: len(values) - _UNUSED[dimension]])


# --- posted GL -------------------------------------------------------------------------------------------

LINES_PATTERN = (2, 3, 4, 5)  # lines per voucher, cycling
_PREFIX = (0, 2, 5, 9)
_CYCLE_LINES = 14
HEADER_RECID_BASE = 5637144576
LINE_RECID_BASE = 5647144576
LEDGER_RECIDS = {"USMF": 5637144826, "DEMF": 5637145827}
_MASK = (1 << 64) - 1
_PL_ACCOUNTS = tuple(a for a in MAIN_ACCOUNTS if not a.is_balance_sheet)
_BS_ACCOUNTS = tuple(a for a in MAIN_ACCOUNTS if a.is_balance_sheet and a.account not in SUSPENDED_ACCOUNTS)
_TEXTS = (
    "Purchase invoice",
    "Payroll",
    "Customer invoice",
    "Freight",
    "Depreciation run",
    "Accrual",
    "Büromaterial",
    "Reisekosten",
)


_USED_BU = used_dimension_values("BusinessUnit")
_USED_CC = used_dimension_values("CostCenter")
_USED_DEP = used_dimension_values("Department")


def _mix(x: int) -> int:
    """splitmix64: a fast deterministic hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def cents_text(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    c = abs(cents)
    return f"{sign}{c // 100}.{c % 100:02d}"


def cents_decimal(cents: int) -> Decimal:
    return Decimal(cents_text(cents))


@dataclass(slots=True)
class GLLineSeed:
    position: int
    voucher_index: int
    account: MainAccountSeed
    business_unit: str
    cost_center: str
    department: str
    cents: int  # accounting-currency amount, debit positive
    text: str

    @property
    def recid(self) -> int:
        return LINE_RECID_BASE + self.position

    def display_value(self) -> str:
        return DELIMITER.join((self.account.account, self.business_unit, self.cost_center, self.department))


@dataclass(slots=True)
class VoucherSeed:
    index: int
    company: str
    accounting_date: date
    line_start: int
    line_count: int

    @property
    def recid(self) -> int:
        return HEADER_RECID_BASE + self.index

    @property
    def voucher(self) -> str:
        return f"GNJL{self.index + 1:07d}"

    @property
    def journal_number(self) -> str:
        return f"{self.index // 20 + 1:08d}"

    @property
    def currency(self) -> str:
        return ACCOUNTING_CURRENCY[self.company]


class GLGenerator:
    """Posted GL for ``months`` months from ``start`` with about ``total_lines`` lines (at most 1,000,000)."""

    def __init__(
        self, *, total_lines: int = 2_000, months: int = 12, start: date = date(2025, 1, 1), seed: int = 42
    ) -> None:
        if not 0 <= total_lines <= 1_000_000:
            raise ValueError("total_lines must be between 0 and 1,000,000")
        if months < 1:
            raise ValueError("months must be at least 1")
        self.seed = seed
        self.start = start
        self.months = months
        end_year, end_month = divmod(start.month - 1 + months, 12)
        self.end = date(start.year + end_year, end_month + 1, 1)
        self.days = (self.end - start).days
        self.voucher_count = (total_lines * 4) // _CYCLE_LINES
        self.line_count = self.lines_before(self.voucher_count)

    # -- index arithmetic -------------------------------------------------------------------------------

    @staticmethod
    def lines_before(v: int) -> int:
        return (v // 4) * _CYCLE_LINES + _PREFIX[v % 4]

    def voucher_of_line(self, position: int) -> int:
        cycle, rest = divmod(position, _CYCLE_LINES)
        j = 3 if rest >= 9 else 2 if rest >= 5 else 1 if rest >= 2 else 0
        return cycle * 4 + j

    def _day(self, v: int) -> int:
        return (v * self.days) // max(1, self.voucher_count)

    def first_voucher_on_or_after(self, d: date) -> int:
        """Smallest voucher index whose date is >= ``d`` (vouchers are in date order)."""
        k = (d - self.start).days
        if k <= 0:
            return 0
        if k >= self.days:
            return self.voucher_count
        v = -(-k * self.voucher_count // self.days)
        while v > 0 and self._day(v - 1) >= k:
            v -= 1
        while v < self.voucher_count and self._day(v) < k:
            v += 1
        return v

    def voucher(self, v: int) -> VoucherSeed:
        if not 0 <= v < self.voucher_count:
            raise IndexError(v)
        company = COMPANIES[1 % len(COMPANIES)] if v % 5 in (1, 3) else COMPANIES[0]  # demo: DEMF, USMF
        return VoucherSeed(
            v, company, self.start + timedelta(days=self._day(v)), self.lines_before(v), LINES_PATTERN[v % 4]
        )

    def voucher_lines(self, v: int) -> list[GLLineSeed]:
        head = self.voucher(v)
        h = _mix(self.seed * 1_000_003 + v)
        lines: list[GLLineSeed] = []
        total = 0
        n = head.line_count
        bus, ccs, deps = _USED_BU, _USED_CC, _USED_DEP
        for j in range(n):
            h = _mix(h + j)
            if j < n - 1:
                account = _PL_ACCOUNTS[h % len(_PL_ACCOUNTS)]
                cents = 100 + (h >> 16) % 500_000
                # normal balances: revenue is posted as a credit, costs as debits; one line in nine is a
                # correction against the normal side, as real ledgers have (credit notes, reversals)
                if (account.account_type == "Revenue") != ((h >> 40) % 9 == 0):
                    cents = -cents
                total += cents
            else:
                account = _BS_ACCOUNTS[h % len(_BS_ACCOUNTS)]
                if total == 0:  # keep every line non-zero and the voucher balanced
                    first = lines[0]
                    lines[0] = GLLineSeed(
                        first.position,
                        v,
                        first.account,
                        first.business_unit,
                        first.cost_center,
                        first.department,
                        first.cents + 100,
                        first.text,
                    )
                    total += 100
                cents = -total
            bu = bus[(h >> 8) % len(bus)][0]
            if account.is_balance_sheet:
                cc = dep = ""
            else:
                cc = ccs[(h >> 20) % len(ccs)][0]
                dep = deps[(h >> 28) % len(deps)][0]
            text = _TEXTS[(h >> 36) % len(_TEXTS)]
            lines.append(GLLineSeed(head.line_start + j, v, account, bu, cc, dep, cents, text))
        return lines

    def iter_vouchers(self, start: int = 0, stop: int | None = None) -> Iterator[VoucherSeed]:
        end = self.voucher_count if stop is None else min(stop, self.voucher_count)
        for v in range(max(0, start), end):
            yield self.voucher(v)

    def iter_lines(self, start_position: int = 0, stop_position: int | None = None) -> Iterator[GLLineSeed]:
        stop = self.line_count if stop_position is None else min(stop_position, self.line_count)
        if start_position >= stop:
            return
        v = self.voucher_of_line(start_position)
        while v < self.voucher_count:
            for line in self.voucher_lines(v):
                if line.position >= stop:
                    return
                if line.position >= start_position:
                    yield line
            v += 1
