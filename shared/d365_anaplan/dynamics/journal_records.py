"""What the F&O plan writer takes and answers: journal lines, entry headers, line errors, held lines, entry
statuses; the deterministic idempotency key of a journal and the amount check (dynamics-fo.md §2.5-§2.7).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from d365_anaplan.errors import (
    BadInputData,
    DynamicsValidationError,
)

HEADERS = "LedgerJournalHeaders"
LINES = "LedgerJournalLines"
BUDGET_HEADERS = "BudgetRegisterEntryHeaders"
BUDGET_LINES = "BudgetRegisterEntryLines"
TEXT_MAX = 60
VOUCHER_MAX = 20
MAX_DECIMALS = 6  # amount EDTs can be extended to at most 6 decimals (§7)
CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")
_KEY_PREFIX = "AP"
HELD_NUMBERS_IN_FILTER = 40  # read-back filters name our entries up to this many, else the window only
OFFSET_MEMO = "Anaplan offset"  # line texts of balancing lines start with it (left out of read-backs)


@dataclass(frozen=True)
class JournalLineInput:
    """One line to write; ``amount`` is signed (debit positive, credit negative)."""

    account: str
    dimensions: Mapping[str, str]
    trans_date: date
    amount: Decimal
    voucher: str
    currency: str | None = None
    text: str = ""
    offset_account: str | None = None
    offset_dimensions: Mapping[str, str] = field(default_factory=dict)
    source: str = ""  # where the line came from (e.g. "plan.csv line 12"), for error messages


@dataclass(frozen=True)
class LineError:
    line_key: str
    voucher: str
    message: str
    source: str = ""


@dataclass(frozen=True)
class EntryHeader:
    """What identifies and describes one journal or budget register entry."""

    key: str  # idempotency key; the description starts with it
    description: str  # readable header text (<= 60), e.g. "APK3QZ-7F2M9XAB Budget FY2025 2025-01..03 run ..."
    journal_name: str | None = None  # ledger journals
    budget_model: str | None = None  # budget register
    budget_code: str | None = None


@dataclass(frozen=True)
class HeldLine:
    """A line this connector holds in F&O, in ledger sign (debit/expense positive, credit/revenue negative)."""

    company: str
    number: str  # JournalBatchNumber or EntryNumber
    account: str
    dimensions: Mapping[str, str]
    period: date  # first day of the line's month
    amount: Decimal
    memo: str


@dataclass(frozen=True)
class EntryStatus:
    company: str
    number: str
    description: str
    status: str  # budget register: Draft/Completed; ledger journal: Posted/Unposted
    workflow_status: str = ""

    @property
    def pending(self) -> bool:
        return self.status in ("Draft", "Unposted")


@dataclass
class JournalWriteResult:
    company: str
    idempotency_key: str
    journal_batch_number: str
    resumed: bool = False
    already_posted: bool = False
    lines_written: int = 0
    lines_skipped: int = 0  # already present from an earlier attempt
    lines_planned: int = 0  # dry run: lines validated and built, not sent
    vouchers_written: int = 0
    vouchers_failed: int = 0
    batches: int = 0
    errors: list[LineError] = field(default_factory=list)
    status: str = ""  # budget register: the entry's Status (Draft until completed in F&O)

    def raise_for_errors(self) -> None:
        if self.errors:
            first = self.errors[0]
            raise DynamicsValidationError(
                f"{self.journal_batch_number or 'journal'} ({self.company}): {len(self.errors)} line(s) rejected by F&O; "
                f"first: line {first.line_key} voucher {first.voucher}{' (' + first.source + ')' if first.source else ''}: {first.message}"
            )


def idempotency_key(*parts: str) -> str:
    """A deterministic key (``AP`` + 18 hex digits) for a journal: e.g. (connection, run id, company, journal name)."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:18].upper()
    return _KEY_PREFIX + digest


def check_amount(value: object, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise BadInputData(
            f"{what}: amount {value!r} must be a Decimal (got {type(value).__name__}); floats and text are refused"
        )
    amount = Decimal(value)
    if not amount.is_finite():
        raise BadInputData(f"{what}: amount {value!r} is not a finite number")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_DECIMALS:
        raise BadInputData(f"{what}: amount {amount} has more than {MAX_DECIMALS} decimals")
    if amount == 0:
        raise BadInputData(f"{what}: amount is zero; F&O journal lines need a debit or a credit")
    return amount
