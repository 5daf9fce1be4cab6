"""Plans (Anaplan -> D365): build F&O journal lines from parsed plan rows, with idempotency keys.

:func:`build_journals` groups :class:`~d365_anaplan.flows.records.PlanRow` into one journal per company
(F&O journal headers belong to one legal entity), one voucher per company x period (split into numbered
vouchers of at most ``max_lines_per_voucher`` lines), and returns :class:`JournalPlan`. The lines of one
export are held in memory (OData journal writes are not the route for more than a few hundred thousand
lines anyway, see the F&O notes §2.2).

Keys (all deterministic, so a retried or redriven step finds what it already wrote):

* journal key ``AP-`` + 20 base32 characters: hash of connection, export name, version, company, period
  range and the content hash of the journal's lines. It starts the header ``Description`` (≤ 60 characters);
  look it up before creating a journal.
* line key ``<journal key>-<10 characters>``: hash of the journal key and the row's natural key (company,
  account, dimension values, period, version); 34 characters, written to the line's ``Text`` (≤ 60).
  Offset lines use ``<journal key>-O<yyyymm><nnn>``.
* voucher ``AP-<yyyymm>-<nnn>``: a grouping key inside the journal (F&O renumbers at posting when the journal
  name uses "number allocation at posting").

Amounts: positive -> ``debit``, negative -> ``credit`` (both non-negative); zero rows are skipped and counted.
With ``target == "ledger_journal"`` and ``JournalSettings.offset_account`` set, each voucher gets one
balancing line on the offset account; budget register entries are single-sided (no offset).

Account display values are built by position from the active ledger dimension format's segment order by
:func:`account_display_value`; F&O silently drops surplus segments, so a value with a dimension that is not
a segment of the format, or containing the segment delimiter, is refused.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from d365_anaplan.config import JournalSettings, PlanExport
from d365_anaplan.errors import BadInputData, ConfigError
from d365_anaplan.flows.calendar import month_end, month_start, period_key
from d365_anaplan.flows.money import check_amount, currency_decimals
from d365_anaplan.flows.records import PlanRow

MAIN_ACCOUNT = "MainAccount"
TEXT_MAX = 60
DESCRIPTION_MAX = 60


def _b32(data: bytes, length: int) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=")[:length]


# --- display values ----------------------------------------------------------------------------------------


def account_display_value(
    account: str,
    dims: Mapping[str, str],
    segment_order: Sequence[str],
    delimiter: str = "-",
    *,
    where: str = "record",
) -> str:
    """The ``AccountDisplayValue`` of a ledger account: segments by position in ``segment_order``.

    ``segment_order`` is the active dimension format, e.g. ``["MainAccount", "BusinessUnit", "CostCenter",
    "Department"]``; segments without a value stay blank (``601500--CC01-``). Raises BadInputData naming
    ``where`` when the account is empty, a value contains ``delimiter``, or ``dims`` has a non-blank value
    for a dimension that is not a segment (more segments than the format: F&O would drop it silently).
    ConfigError when the format has no ``MainAccount`` segment or names a segment twice.
    """
    if not delimiter:
        raise ConfigError(["dimension segment delimiter: must not be empty"])
    if MAIN_ACCOUNT not in segment_order:
        raise ConfigError([f"ledger dimension format {list(segment_order)!r}: has no {MAIN_ACCOUNT} segment"])
    if len(set(segment_order)) != len(segment_order):
        raise ConfigError([f"ledger dimension format {list(segment_order)!r}: names a segment twice"])
    if not account:
        raise BadInputData(f"{where}: field 'account' is empty")
    extra = sorted(k for k, v in dims.items() if v and k not in segment_order)
    if extra:
        raise BadInputData(
            f"{where}: has value(s) for {', '.join(f'{k}={dims[k]!r}' for k in extra)}, which the ledger "
            f"dimension format {delimiter.join(segment_order)} has no segment for (more segments than the "
            "format; F&O would drop them silently)"
        )
    values = {MAIN_ACCOUNT: account, **{k: v for k, v in dims.items() if k != MAIN_ACCOUNT}}
    for name, value in values.items():
        if delimiter in value:
            field_name = "account" if name == MAIN_ACCOUNT else f"dimensions.{name}"
            raise BadInputData(
                f"{where}: field {field_name!r} value {value!r} contains the segment delimiter {delimiter!r}"
            )
    return delimiter.join(values.get(s, "") for s in segment_order)


def split_display_value(
    display: str, segment_order: Sequence[str], delimiter: str = "-", *, where: str = "record"
) -> dict[str, str]:
    """Segments of a display value by position; BadInputData when it has more segments than the format."""
    parts = display.split(delimiter)
    if len(parts) > len(segment_order):
        raise BadInputData(
            f"{where}: display value {display!r} has {len(parts)} segments; the dimension format "
            f"{delimiter.join(segment_order)} has {len(segment_order)}"
        )
    return {s: (parts[i] if i < len(parts) else "") for i, s in enumerate(segment_order)}


# --- keys --------------------------------------------------------------------------------------------------


def _row_text(company: str, account: str, dims: Mapping[str, str], period: date, version: str) -> str:
    dim_text = "\x1e".join(f"{k}={v}" for k, v in sorted(dims.items()))
    return "\x1f".join([company, account, dim_text, period.isoformat(), version])


def _amount_text(amount: Decimal) -> str:
    return f"{amount.normalize():f}" if amount != 0 else "0"


def content_hash(rows: Iterable[PlanRow]) -> str:
    """SHA-256 (hex) of the rows' natural keys and amounts, independent of row order and line numbers."""
    texts = sorted(
        _row_text(r.company, r.account, r.dimensions, r.period, r.version) + "\x1d" + _amount_text(r.amount)
        for r in rows
    )
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def journal_key(
    connection: str,
    export_name: str,
    version: str,
    period_from: date,
    period_to: date,
    content: str,
    company: str = "",
) -> str:
    """``AP-`` + 20 base32 characters identifying one journal's content."""
    text = "\x1f".join(
        [connection, export_name, version, company, period_key(period_from), period_key(period_to), content]
    )
    return "AP-" + _b32(hashlib.sha256(text.encode("utf-8")).digest(), 20)


def line_key(journal: str, row: PlanRow) -> str:
    """Per-line key: ``<journal key>-<10 base32 characters>`` (34 characters, fits F&O's Text field)."""
    text = journal + "\x1f" + _row_text(row.company, row.account, row.dimensions, row.period, row.version)
    key = f"{journal}-{_b32(hashlib.sha256(text.encode('utf-8')).digest(), 10)}"
    assert len(key) <= TEXT_MAX
    return key


# --- journal model -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JournalLine:
    company: str
    voucher: str
    trans_date: date
    account: str  # main account (offset account text for offset lines)
    dimensions: Mapping[str, str]
    account_display_value: str
    debit: Decimal
    credit: Decimal
    currency: str
    line_key: str  # also the line's Text
    source_line: int | None  # export file line; None for an offset line
    is_offset: bool = False

    @property
    def amount(self) -> Decimal:
        """Signed amount: debit positive, credit negative."""
        return self.debit - self.credit

    def to_json(self) -> dict[str, Any]:
        return {
            "company": self.company,
            "voucher": self.voucher,
            "trans_date": self.trans_date.isoformat(),
            "account_display_value": self.account_display_value,
            "debit": str(self.debit),
            "credit": str(self.credit),
            "currency": self.currency,
            "text": self.line_key,
            "source_line": self.source_line,
            "offset": self.is_offset,
        }


@dataclass
class Voucher:
    voucher: str
    company: str
    period: date
    lines: list[JournalLine] = field(default_factory=list)

    @property
    def balance(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))


@dataclass
class Journal:
    company: str
    key: str
    description: str
    journal_name: str
    period_from: date
    period_to: date
    content_hash: str
    vouchers: list[Voucher] = field(default_factory=list)

    def lines(self) -> Iterator[JournalLine]:
        for v in self.vouchers:
            yield from v.lines

    @property
    def line_count(self) -> int:
        return sum(len(v.lines) for v in self.vouchers)

    @property
    def total_debit(self) -> Decimal:
        return sum((line.debit for line in self.lines()), Decimal(0))

    @property
    def total_credit(self) -> Decimal:
        return sum((line.credit for line in self.lines()), Decimal(0))

    def to_json(self) -> dict[str, Any]:
        return {
            "company": self.company,
            "key": self.key,
            "description": self.description,
            "journal_name": self.journal_name,
            "period_from": period_key(self.period_from),
            "period_to": period_key(self.period_to),
            "vouchers": len(self.vouchers),
            "lines": self.line_count,
            "total_debit": str(self.total_debit),
            "total_credit": str(self.total_credit),
        }


@dataclass
class JournalPlan:
    journals: list[Journal]
    rows: int = 0
    zero_skipped: int = 0
    offset_lines: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "zero_skipped": self.zero_skipped,
            "offset_lines": self.offset_lines,
            "journals": [j.to_json() for j in self.journals],
        }

    def items(self) -> Iterator[tuple[str, str, date, Decimal]]:
        """(company, account, period, signed amount) of every non-offset line, for reconciliation."""
        for j in self.journals:
            for v in j.vouchers:
                for line in v.lines:
                    if not line.is_offset:
                        yield line.company, line.account, v.period, line.amount


def journal_description(key: str, version: str, period_from: date, period_to: date, export_name: str) -> str:
    """Header description starting with the journal key, cut to 60 characters (the key is never cut)."""
    text = f"{key} {version} {period_key(period_from)}..{period_key(period_to)} {export_name}"
    return text[:DESCRIPTION_MAX].rstrip()


def build_journals(
    rows: Iterable[PlanRow],
    *,
    connection: str,
    export: PlanExport,
    settings: JournalSettings,
    segment_order: Sequence[str],
    delimiter: str = "-",
    period_from: date | None = None,
    period_to: date | None = None,
    max_lines_per_voucher: int | None = None,
    transaction_day: Literal["first", "last"] = "first",
) -> JournalPlan:
    """Group plan rows into journals, vouchers and lines (see the module docstring for the rules).

    ``period_from``/``period_to`` are the run's range (default: the rows' first and last period); they are
    part of the journal key. ``max_lines_per_voucher`` defaults to ``settings.lines_per_batch`` (a voucher,
    offset line included, must fit in one batch).
    """
    if settings.offset_account and settings.target != "ledger_journal":
        raise ConfigError(["dynamics.journal.offset_account: only used with target 'ledger_journal'"])
    limit = max_lines_per_voucher or settings.lines_per_batch
    offset = settings.offset_account if settings.target == "ledger_journal" else None
    per_voucher = limit - (1 if offset else 0)
    if per_voucher < 1:
        raise ConfigError([f"lines per voucher: {limit} leaves no room for lines next to the offset line"])
    currency = settings.currency_code
    decimals = currency_decimals(currency)
    journal_name = export.journal_name or settings.journal_name

    plan = JournalPlan(journals=[])
    by_company: dict[str, list[PlanRow]] = {}
    seen: dict[str, int] = {}
    for r in rows:
        plan.rows += 1
        where = f"plan row from line {r.line_number}"
        amount = check_amount(r.amount, decimals=decimals, where=where)
        natural = _row_text(r.company, r.account, r.dimensions, r.period, r.version)
        if natural in seen:
            raise BadInputData(
                f"{where}: same company, account, dimensions, period and version as line {seen[natural]}"
            )
        seen[natural] = r.line_number
        if amount == 0:
            plan.zero_skipped += 1
            continue
        by_company.setdefault(r.company, []).append(r)

    for company in sorted(by_company):
        company_rows = by_company[company]
        first = month_start(period_from) if period_from else min(r.period for r in company_rows)
        last = month_start(period_to) if period_to else max(r.period for r in company_rows)
        digest = content_hash(company_rows)
        key = journal_key(connection, export.export_action, export.version, first, last, digest, company)
        journal = Journal(
            company=company,
            key=key,
            description=journal_description(key, export.version, first, last, export.export_action),
            journal_name=journal_name,
            period_from=first,
            period_to=last,
            content_hash=digest,
        )
        by_period: dict[date, list[JournalLine]] = {}
        for r in company_rows:
            where = f"plan row from line {r.line_number} (company {company}, account {r.account})"
            period = month_start(r.period)
            if not first <= period <= last:
                raise BadInputData(
                    f"{where}: period {period_key(period)} is outside the run's range "
                    f"{period_key(first)}..{period_key(last)}"
                )
            display = account_display_value(r.account, r.dimensions, segment_order, delimiter, where=where)
            day = period if transaction_day == "first" else month_end(period)
            by_period.setdefault(period, []).append(
                JournalLine(
                    company=company,
                    voucher="",
                    trans_date=day,
                    account=r.account,
                    dimensions=dict(r.dimensions),
                    account_display_value=display,
                    debit=r.amount if r.amount > 0 else Decimal(0),
                    credit=-r.amount if r.amount < 0 else Decimal(0),
                    currency=currency,
                    line_key=line_key(key, r),
                    source_line=r.line_number,
                )
            )
        for period in sorted(by_period):
            lines = sorted(
                by_period[period],
                key=lambda x: (x.account_display_value, x.account, sorted(x.dimensions.items()), x.line_key),
            )
            for seq, start in enumerate(range(0, len(lines), per_voucher), start=1):
                voucher_id = f"AP-{period:%Y%m}-{seq:03d}"
                voucher = Voucher(voucher=voucher_id, company=company, period=period)
                for line in lines[start : start + per_voucher]:
                    voucher.lines.append(replace(line, voucher=voucher_id))
                if offset:
                    balancing = _offset_line(voucher, offset, key, segment_order, delimiter, currency, seq)
                    if balancing is not None:
                        voucher.lines.append(balancing)
                        plan.offset_lines += 1
                journal.vouchers.append(voucher)
        plan.journals.append(journal)
    return plan


def _offset_line(
    voucher: Voucher,
    offset: str,
    key: str,
    segment_order: Sequence[str],
    delimiter: str,
    currency: str,
    seq: int,
) -> JournalLine | None:
    balance = voucher.balance
    if balance == 0:
        return None
    where = "dynamics.journal.offset_account"
    if delimiter in offset:
        segments = split_display_value(offset, segment_order, delimiter, where=where)
        display = delimiter.join(segments[s] for s in segment_order)
        account = segments[MAIN_ACCOUNT]
    else:
        display = account_display_value(offset, {}, segment_order, delimiter, where=where)
        account = offset
    return JournalLine(
        company=voucher.company,
        voucher=voucher.voucher,
        trans_date=voucher.lines[0].trans_date,
        account=account,
        dimensions={},
        account_display_value=display,
        debit=-balance if balance < 0 else Decimal(0),
        credit=balance if balance > 0 else Decimal(0),
        currency=currency,
        line_key=f"{key}-O{voucher.period:%Y%m}{seq:03d}",
        source_line=None,
        is_offset=True,
    )


def batch_lines(journal: Journal, max_operations: int) -> Iterator[list[JournalLine]]:
    """Groups of at most ``max_operations`` lines (one ``$batch`` each), never splitting a voucher."""
    if max_operations < 1:
        raise ValueError("max_operations must be at least 1")
    batch: list[JournalLine] = []
    for voucher in journal.vouchers:
        if len(voucher.lines) > max_operations:
            raise BadInputData(
                f"journal {journal.key} voucher {voucher.voucher}: {len(voucher.lines)} lines do not fit in a "
                f"batch of {max_operations}; lower max_lines_per_voucher"
            )
        if len(batch) + len(voucher.lines) > max_operations:
            yield batch
            batch = []
        batch.extend(voucher.lines)
    if batch:
        yield batch
