"""Plans (Anaplan -> D365): the differences between the approved plan and what F&O holds from this
connector, as F&O journal / budget register lines.

Revisions replace, never add. :func:`~d365_anaplan.flows.plan_deltas.plan_deltas` compares, per company x account x dimension values x
period of the run's window, the approved plan (an absent or zero cell means zero) with what F&O holds from
this connector (read back from F&O, see :meth:`d365_anaplan.dynamics.journal.JournalWriter.held`): only the
differences are written, so a rerun writes nothing, a cut to zero writes the reversing difference, a new cell
is added and another window never duplicates a month.

:func:`build_entries` groups the differences into entries: budget register entries per company x fiscal year
x budget code (a cell's first load under the export's original-budget code, every later change under its
revision code; the model per export and fiscal year), ledger journals per company (on the configured posting
layer, one voucher per period, with a balancing line when ``offset_account`` is set). Entries never change
once written: a later change is a new entry.

Keys (deterministic, so a retried or redriven step finds what it already wrote):

* export tag ``AP`` + 4 base32 characters: hash of connection and export. Every header description of the
  export starts with ``<tag>-``; that is how the connector finds what F&O holds from it.
* entry key ``<tag>-<8 characters>``: hash of the tag, run, company, fiscal year and code. The header
  description is ``<key> <version> FY<year> <first>..<last> run <run> <export>`` cut to 60 characters.
* line key ``<entry key>-<10 characters>`` (ledger records); F&O line texts are ``L<12 hex> Anaplan
  <version> <yyyy-mm> row <n>`` (the writer's key, then the Anaplan source).
* voucher ``<8 characters of the entry key>-<yyyymm><nn>``: unique per entry.

Account display values are built by position from the active dimension format's segment order by
:func:`account_display_value`; F&O silently drops surplus segments, so a value with a dimension that is not
a segment of the format, or containing the segment delimiter, is refused.

Display values are in :mod:`~d365_anaplan.flows.display_values`, keys in :mod:`~d365_anaplan.flows.journal_keys`,
the differences in :mod:`~d365_anaplan.flows.plan_deltas`; this module builds the entries.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from d365_anaplan.config import JournalSettings, PlanExport
from d365_anaplan.errors import BadInputData, ConfigError
from d365_anaplan.flows.calendar import fiscal_year, month_end, period_key
from d365_anaplan.flows.display_values import MAIN_ACCOUNT, account_display_value, split_display_value
from d365_anaplan.flows.journal_keys import entry_description, entry_key, export_tag, line_key
from d365_anaplan.flows.plan_deltas import Delta

OFFSET_MEMO = "Anaplan offset"  # same text as d365_anaplan.dynamics.journal.OFFSET_MEMO
TEXT_MAX = 60
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
    line_key: str  # our key in the ledger
    source_line: int | None  # export file line; None for an offset line or a cell that left the plan
    is_offset: bool = False
    memo: str = ""  # F&O line text after the writer's key: the Anaplan source

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
            "memo": self.memo,
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
    """One journal or budget register entry to create."""

    company: str
    key: str
    description: str
    journal_name: str
    period_from: date
    period_to: date
    budget_model: str | None = None
    budget_code: str | None = None
    revision: bool = False
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
            "budget_model": self.budget_model,
            "budget_code": self.budget_code,
            "revision": self.revision,
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
    offset_lines: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "offset_lines": self.offset_lines,
            "journals": [j.to_json() for j in self.journals],
        }


def budget_target(
    settings: JournalSettings, export: PlanExport, fiscal_year: int
) -> tuple[str, str, str | None]:
    """(budget model, original-budget code, revision code) of an export in a fiscal year."""
    model = export.budget_models.get(fiscal_year) or export.budget_model or settings.budget_model
    code = export.budget_code or settings.budget_code
    revision = export.revision_budget_code or settings.revision_budget_code
    if not model or not code:
        raise ConfigError(
            [
                f"export {export.export_action!r}: target 'budget_register' needs a budget model and a budget code "
                f"(dynamics.journal.budget_model/budget_code or the export's own; fiscal year {fiscal_year})"
            ]
        )
    return model, code, revision


def build_entries(
    deltas: Sequence[Delta],
    *,
    connection: str,
    run_id: str,
    export: PlanExport,
    settings: JournalSettings,
    currencies: Mapping[str, str],
    segment_order: Sequence[str],
    delimiter: str = "-",
    fiscal_year_start_month: int = 1,
    max_lines_per_voucher: int | None = None,
    transaction_day: Literal["first", "last"] = "first",
) -> JournalPlan:
    """Group the differences of one export (every company) into entries (see the module docstring).

    ``currencies``: company -> the currency of its lines (:func:`~d365_anaplan.flows.plan_currency.plan_currencies`,
    resolved by the step against the company's ledger)."""
    limit = max_lines_per_voucher or settings.lines_per_batch
    ledger = settings.target == "ledger_journal"
    offset = settings.offset_account if ledger else None
    per_voucher = limit - (1 if offset else 0)
    if per_voucher < 1:
        raise ConfigError([f"lines per voucher: {limit} leaves no room for lines next to the offset line"])
    tag = export_tag(connection, export.export_action)
    journal_name = export.journal_name or settings.journal_name
    plan = JournalPlan(journals=[], rows=len(deltas))
    groups: dict[tuple[str, int, str, bool], list[Delta]] = {}
    targets: dict[tuple[str, int, str, bool], tuple[str | None, str | None]] = {}
    for d in deltas:
        fy = fiscal_year(d.period, fiscal_year_start_month)
        if ledger:
            gkey = (d.company, 0, journal_name, False)
            targets[gkey] = (None, None)
        else:
            model, code, revision_code = budget_target(settings, export, fy)
            if d.revision and not revision_code:
                raise ConfigError(
                    [
                        f"export {export.export_action!r}: {d.company} {d.account} {period_key(d.period)} changes after "
                        "its first load; set dynamics.journal.revision_budget_code (a budget code of type Revision) "
                        "or the export's revision_budget_code"
                    ]
                )
            use = revision_code if d.revision and revision_code else code
            gkey = (d.company, fy, use, d.revision)
            targets[gkey] = (model, use)
        groups.setdefault(gkey, []).append(d)
    for gkey in sorted(groups):
        company, fy, group_code, revision = gkey
        items = groups[gkey]
        first, last = min(d.period for d in items), max(d.period for d in items)
        year = fy or fiscal_year(first, fiscal_year_start_month)
        key = entry_key(tag, run_id, company, fy, group_code)
        entry_model, budget_code = targets[gkey]
        journal = Journal(
            company=company,
            key=key,
            description=entry_description(
                key, export.version, year, first, last, run_id, export.export_action
            ),
            journal_name=journal_name,
            period_from=first,
            period_to=last,
            budget_model=entry_model,
            budget_code=budget_code,
            revision=revision,
        )
        currency = currencies[company]
        by_period: dict[date, list[JournalLine]] = {}
        for d in items:
            where = f"plan cell {company} {d.account} {period_key(d.period)}" + (
                f" (export line {d.source_line})" if d.source_line else ""
            )
            display = account_display_value(d.account, d.dimensions, segment_order, delimiter, where=where)
            amount = d.amount
            day = d.period if transaction_day == "first" else month_end(d.period)
            source = f"row {d.source_line}" if d.source_line else "removed"
            by_period.setdefault(d.period, []).append(
                JournalLine(
                    company=company,
                    voucher="",
                    trans_date=day,
                    account=d.account,
                    dimensions=dict(d.dimensions),
                    account_display_value=display,
                    debit=amount if amount > 0 else Decimal(0),
                    credit=-amount if amount < 0 else Decimal(0),
                    currency=currency,
                    line_key=line_key(key, company, d.account, d.dimensions, d.period, amount),
                    source_line=d.source_line,
                    memo=f"Anaplan {export.version} {period_key(d.period)} {source}",
                )
            )
        stem = key.split("-", 1)[1]
        for period in sorted(by_period):
            lines = sorted(by_period[period], key=lambda x: (x.account_display_value, x.line_key))
            for seq, start in enumerate(range(0, len(lines), per_voucher), start=1):
                voucher_id = f"{stem}-{period:%Y%m}{seq:02d}"
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
        memo=f"{OFFSET_MEMO} {period_key(voucher.period)}",
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
