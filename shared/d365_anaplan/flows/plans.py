"""Plans (Anaplan -> D365): parse an Anaplan export file into :class:`~d365_anaplan.flows.records.PlanRow`.

The export arrives as bytes (the concatenated chunks of ``GET .../files/{exportId}/chunks/{n}``): pass any
iterable of byte chunks (a binary file, ``StreamingBody.iter_chunks()``, a list) to
:func:`parse_plan_export`. Chunks may split lines anywhere; lines are re-assembled, decoded one at a time as
strict UTF-8 (a UTF-8 BOM is ignored) and fed to the CSV parser, so the file never sits whole in memory.

Rules (every error is BadInputData naming the export, the file line and the field):

* The first line is the header. It must hold ``company/account/period/version/amount_column`` of
  :class:`~d365_anaplan.config.PlansMapping` (no version column when ``version_column`` is None: every row
  is then the export's configured version), ``approval_column`` when set, and every
  ``DimensionMapping.column``; other columns are ignored; a column named twice is an error.
* Line numbers are file lines (the header is line 1); a record with a quoted line break is named by the
  line it starts on. A record must have as many fields as the header. Blank lines are skipped and counted.
* Rows whose version is not the export's ``version`` are skipped and counted per version; rows whose
  approval column is not ``approved_value`` are skipped and counted. Only the remaining rows are validated.
  The cells of a row skipped as not approved are kept in ``not_approved`` (a reopened row keeps its budget).
* Value maps (``maps``): company, account and dimension members are reversed to F&O codes first (an
  ambiguous reverse is refused naming the line; a dimension's blank member becomes a blank segment).
* Company: must be one of the configured companies (compared upper case; the row carries the upper-case id).
* Account and dimension values: codes (see :mod:`d365_anaplan.flows.textsafe`); account required, a blank
  dimension value is allowed (blank segment). Surrounding spaces are removed.
* Period: parsed with :func:`~d365_anaplan.flows.periods.parse_period_label` and checked with
  :func:`~d365_anaplan.flows.calendar.check_in_fiscal_calendar` (``latest`` = the plans horizon). With
  ``periods`` given, rows of other periods are skipped and counted.
* Amount: a plain number, see :func:`~d365_anaplan.flows.money.parse_amount`: ``1234.50``, ``-12``, ``0``.
  Refused: empty, ``1,234.50``, ``1.234,50``, ``12e3``, ``NaN``, ``+5``, and accounting negatives ``(12.00)``
  (an unformatted export writes ``-12``; parentheses mean the export uses display formatting, which also
  risks rounding). More decimals than the currency allows is refused too: the connector never rounds.
* Duplicate keys (company, account, dimension values, period, version) are an error naming both lines.
* A file with no accepted rows is an error (``export 'X' returned no rows``) unless ``allow_empty``.

Memory: besides the current record, the reader keeps a 16-byte digest and a line number per accepted row
(for the duplicate check), about 100 bytes per row.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from d365_anaplan.config import CloseCalendar, DimensionMapping, PlanExport, PlansMapping
from d365_anaplan.errors import BadInputData
from d365_anaplan.flows.calendar import check_in_fiscal_calendar
from d365_anaplan.flows.money import parse_amount
from d365_anaplan.flows.periods import parse_period_label, validate_period_format
from d365_anaplan.flows.plan_deltas import CellKey, cell_key
from d365_anaplan.flows.records import PlanRow
from d365_anaplan.flows.sign import NATURAL_CREDIT_TYPES as NATURAL_CREDIT_TYPES  # re-exported
from d365_anaplan.flows.sign import NATURAL_DEBIT_TYPES as NATURAL_DEBIT_TYPES  # re-exported
from d365_anaplan.flows.sign import flip_sign
from d365_anaplan.flows.textsafe import check_code

if TYPE_CHECKING:  # mapping imports the actuals flow, which this module must not need
    from d365_anaplan.flows.mapping import ValueMaps

_BOM = "\ufeff"


@dataclass
class PlanCounters:
    """What the parser saw; complete once the rows iterator is exhausted.

    Amounts are totalled per company (``by_company``): plan rows carry no currency, and each company's plan is
    in that company's currency; :meth:`by_currency` groups them by currency, never adding two currencies."""

    export: str
    version: str
    lines: int = 0
    data_rows: int = 0
    accepted: int = 0
    skipped_blank: int = 0
    skipped_unapproved: int = 0
    skipped_out_of_range: int = 0
    skipped_version: dict[str, int] = field(default_factory=dict)
    by_company: dict[str, Decimal] = field(default_factory=dict)  # company -> total of its accepted rows

    @property
    def skipped(self) -> int:
        return self.skipped_unapproved + self.skipped_out_of_range + sum(self.skipped_version.values())

    def by_currency(self, currency_for: Callable[[str], str]) -> dict[str, Decimal]:
        """Currency code -> total of the accepted rows of the companies in it (``currency_for(company)``: the
        currency the company's plan lines are written in), sorted by code."""
        out: dict[str, Decimal] = {}
        for company, amount in sorted(self.by_company.items()):
            cur = currency_for(company)
            out[cur] = out.get(cur, Decimal(0)) + amount
        return dict(sorted(out.items()))

    def to_json(self, currency_for: Callable[[str], str]) -> dict[str, Any]:
        """For the ledger (ValidatePlan): counts and the totals per currency, amounts as strings."""
        return {
            "export": self.export,
            "version": self.version,
            "lines": self.lines,
            "data_rows": self.data_rows,
            "accepted": self.accepted,
            "skipped_blank": self.skipped_blank,
            "skipped_unapproved": self.skipped_unapproved,
            "skipped_out_of_range": self.skipped_out_of_range,
            "skipped_version": dict(sorted(self.skipped_version.items())),
            "by_currency": {c: str(v) for c, v in self.by_currency(currency_for).items()},
        }


def iter_text_lines(chunks: Iterable[bytes], *, source: str) -> Iterator[str]:
    """Re-split byte chunks into lines and decode each as strict UTF-8 (line endings kept).

    A UTF-8 line break byte never occurs inside a multi-byte character, so per-line decoding is exact.
    BadInputData names the line and the byte offset within it when a line is not UTF-8.
    """
    buffer = b""
    number = 0

    def decode(raw: bytes) -> str:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = raw[exc.start : exc.start + 1].hex()
            raise BadInputData(
                f"{source} line {number}: not valid UTF-8 (byte 0x{bad} at position {exc.start + 1}); "
                "export the file as UTF-8"
            ) from None
        if number == 1 and text.startswith(_BOM):
            text = text[1:]
        return text

    for chunk in chunks:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError(
                f"{source}: expected bytes chunks (open the file in binary mode), got {type(chunk).__name__}"
            )
        if not chunk:
            continue
        buffer += chunk
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            number += 1
            yield decode(buffer[start : end + 1])
            start = end + 1
        buffer = buffer[start:]
    if buffer:
        number += 1
        yield decode(buffer)


def _key_digest(company: str, account: str, dims: Sequence[str], period: date, version: str) -> bytes:
    text = "\x1f".join([company, account, *dims, period.isoformat(), version])
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class PlanExportReader:
    """Iterate once to get the rows; ``counters`` are complete when iteration ends."""

    def __init__(
        self,
        data: Iterable[bytes],
        *,
        export: PlanExport,
        plans: PlansMapping,
        dimensions: Sequence[DimensionMapping],
        companies: Collection[str],
        calendar: CloseCalendar,
        period_format: str,
        latest: date | None = None,
        periods: Collection[date] | None = None,
        decimals: int = 2,
        allow_empty: bool = False,
        maps: ValueMaps | None = None,
    ) -> None:
        validate_period_format(period_format)
        self.maps = maps
        self._data = data
        self.export = export
        self.plans = plans
        self.dimensions = tuple(dimensions)
        self.companies = frozenset(c.upper() for c in companies)
        self.calendar = calendar
        self.period_format = period_format
        self.latest = latest
        self.periods = frozenset(periods) if periods is not None else None
        self.decimals = decimals
        self.allow_empty = allow_empty
        self.source = f"export {export.export_action!r}"
        self.counters = PlanCounters(export=export.export_action, version=export.version)
        # the cells of rows skipped as not approved (complete once the rows are read): F&O keeps what it holds
        self.not_approved: set[CellKey] = set()
        self._started = False
        self._period_columns: list[tuple[str, int]] = []  # layout time_in_columns: (label, position)

    def __iter__(self) -> Iterator[PlanRow]:
        if self._started:
            raise RuntimeError(f"{self.source}: the rows can be read only once")
        self._started = True
        return self._rows()

    def _required(self) -> list[str]:
        p = self.plans
        cols = [p.company_column, p.account_column]
        if p.layout == "long":
            cols += [p.period_column, p.amount_column]
        if p.version_column:
            cols.append(p.version_column)
        if p.approval_column:
            cols.append(p.approval_column)
        cols += [d.column for d in self.dimensions]
        return cols

    def _header(self, record: list[str]) -> dict[str, int]:
        names = [c.strip() for c in record]
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in seen:
                raise BadInputData(f"{self.source} header (line 1): column {name!r} appears twice")
            seen[name] = i
        missing = [c for c in self._required() if c not in seen]
        if missing:
            raise BadInputData(
                f"{self.source} header (line 1): missing column(s) {', '.join(repr(c) for c in missing)}; "
                f"found {', '.join(repr(n) for n in names)}"
            )
        if self.plans.layout == "time_in_columns":
            named = set(self._required())
            fiscal_start = self.calendar.fiscal_year_start_month
            for i, name in enumerate(names):
                if name in named:
                    continue
                try:  # a month label in the period format; totals (Q1 FY25, FY25) and other columns are ignored
                    parse_period_label(name, self.period_format, fiscal_start)
                except BadInputData:
                    continue
                self._period_columns.append((name, i))
            if not self._period_columns:
                raise BadInputData(
                    f"{self.source} header (line 1): layout time_in_columns but no column is a period label in "
                    f"the format {self.period_format!r}; found {', '.join(repr(n) for n in names)}"
                )
        return seen

    def _cell(
        self,
        where: str,
        line: int,
        seen: dict[bytes, int],
        company: str,
        account: str,
        dims: dict[str, str],
        version: str,
        label: str,
        period_field: str,
        text: str,
        amount_field: str,
        fiscal_start: int,
    ) -> PlanRow | None:
        """One plan cell of a data line (long: the line; time in columns: one period column of it)."""
        c = self.counters
        try:
            period = parse_period_label(label, self.period_format, fiscal_start)
            check_in_fiscal_calendar(
                period, self.calendar, latest=self.latest, what="period label", value=label
            )
        except BadInputData as exc:
            raise BadInputData(f"{where}: field {period_field!r}: {exc}") from None
        if self.periods is not None and period not in self.periods:
            c.skipped_out_of_range += 1
            return None
        amount = parse_amount(text, decimals=self.decimals, where=where, field=amount_field)
        digest = _key_digest(company, account, [dims[d.name] for d in self.dimensions], period, version)
        first = seen.get(digest)
        if first is not None:
            raise BadInputData(
                f"{where}: duplicate row: company {company}, account {account}, "
                f"{', '.join(f'{k} {v!r}' for k, v in dims.items())}{', ' if dims else ''}"
                f"period {label!r}, version {version!r} already on line {first}"
            )
        seen[digest] = line
        c.accepted += 1
        c.by_company[company] = c.by_company.get(company, Decimal(0)) + amount
        return PlanRow(
            line_number=line,
            company=company,
            account=account,
            dimensions=dims,
            period=period,
            version=version,
            amount=amount,
        )

    def _codes(self, record: list[str], col: dict[str, int], where: str) -> tuple[str, str, dict[str, str]]:
        """A data line's company, account and dimension values (F&O codes; the company upper case)."""
        p = self.plans
        company = check_code(record[col[p.company_column]].strip(), where=where, field=p.company_column)
        account = check_code(record[col[p.account_column]].strip(), where=where, field=p.account_column)
        dims = {
            d.name: check_code(record[col[d.column]].strip(), where=where, field=d.column, allow_empty=True)
            for d in self.dimensions
        }
        if self.maps is not None:  # Anaplan members -> F&O codes (value maps reversed)
            company, account, dims = self.maps.reverse_codes(company, account, dims, where=where)
        company = company.upper()
        if company not in self.companies:
            raise BadInputData(
                f"{where}: field {p.company_column!r} value {company!r} is not a configured company "
                f"({', '.join(sorted(self.companies))})"
            )
        return company, account, dims

    def _row_cells(
        self, record: list[str], col: dict[str, int], *, blanks: bool
    ) -> list[tuple[str, str, str, str]]:
        """(period label, its field, amount text, its field) per cell of a data line."""
        p = self.plans
        if p.layout == "long":
            return [
                (record[col[p.period_column]], p.period_column, record[col[p.amount_column]], p.amount_column)
            ]
        # one cell per period column; a blank cell holds nothing
        return [
            (name, name, record[i], name) for name, i in self._period_columns if blanks or record[i].strip()
        ]

    def _hold_back(self, record: list[str], col: dict[str, int], where: str, fiscal_start: int) -> None:
        """Remember the cells of a row that is not approved (any more): F&O keeps what it holds for them.
        A row whose codes or period do not read names no cell and is only counted."""
        try:
            company, account, dims = self._codes(record, col, where)
            for label, _f, _t, _a in self._row_cells(record, col, blanks=True):
                period = parse_period_label(label, self.period_format, fiscal_start)
                if self.periods is None or period in self.periods:
                    self.not_approved.add(cell_key(company, account, dims, period))
        except BadInputData:
            return

    def _rows(self) -> Iterator[PlanRow]:
        c = self.counters
        p = self.plans
        fiscal_start = self.calendar.fiscal_year_start_month
        reader = csv.reader(iter_text_lines(self._data, source=self.source), strict=True)
        seen: dict[bytes, int] = {}
        col: dict[str, int] | None = None
        width = 0
        last_line = 0
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise BadInputData(f"{self.source} line {reader.line_num}: not valid CSV ({exc})") from None
            line = last_line + 1
            last_line = reader.line_num
            c.lines = reader.line_num
            if col is None:
                if not record or all(not f.strip() for f in record):
                    raise BadInputData(f"{self.source} line {line}: the header line is empty")
                col = self._header(record)
                width = len(record)
                continue
            if not record or all(not f.strip() for f in record):
                c.skipped_blank += 1
                continue
            c.data_rows += 1
            where = f"{self.source} line {line}"
            if len(record) != width:
                raise BadInputData(f"{where}: has {len(record)} field(s), the header has {width}")

            # Without a version column every row is the export's configured version.
            version = record[col[p.version_column]].strip() if p.version_column else self.export.version
            if version != self.export.version:
                c.skipped_version[version] = c.skipped_version.get(version, 0) + 1
                continue
            if p.approval_column and record[col[p.approval_column]].strip() != p.approved_value:
                c.skipped_unapproved += 1
                self._hold_back(record, col, where, fiscal_start)
                continue

            company, account, dims = self._codes(record, col, where)
            cells = self._row_cells(record, col, blanks=False)
            for label, period_field, text, amount_field in cells:
                row = self._cell(
                    where,
                    line,
                    seen,
                    company,
                    account,
                    dims,
                    version,
                    label,
                    period_field,
                    text,
                    amount_field,
                    fiscal_start,
                )
                if row is not None:
                    yield row

        if col is None:
            if not self.allow_empty:
                raise BadInputData(f"{self.source} returned no rows (the file is empty, not even a header)")
            return
        if c.accepted == 0 and not self.allow_empty:
            if c.data_rows == 0:
                raise BadInputData(f"{self.source} returned no rows")
            skipped = ", ".join(f"version {v!r}: {n}" for v, n in sorted(c.skipped_version.items()))
            parts = [s for s in (skipped,) if s]
            if c.skipped_unapproved:
                parts.append(f"not approved: {c.skipped_unapproved}")
            if c.skipped_out_of_range:
                parts.append(f"outside the requested periods: {c.skipped_out_of_range}")
            raise BadInputData(
                f"{self.source} returned no rows of version {self.export.version!r} to load "
                f"({c.data_rows} data row(s) skipped: {'; '.join(parts)})"
            )


parse_plan_export = PlanExportReader
"""Build a streaming reader: ``for row in reader: ...`` then ``reader.counters``. Nothing is read yet."""


# Anaplan holds doubles (about 15-16 significant digits, anaplan-shapes.md §4): spread values arrive as e.g.
# 62.25000000000001. With mapping.plans.rounding "largest_remainder" they are read with up to this many
# decimals and rounded by :func:`round_largest_remainder`.
SPREAD_DECIMALS = 20


def round_largest_remainder(rows: Sequence[PlanRow], decimals: int = 2) -> list[PlanRow]:
    """Round plan amounts to ``decimals`` places so that totals tie (largest-remainder method).

    Per company x version x account (all periods and dimension values of the rows): the group's exact total is
    rounded half away from zero; every cell is rounded down (toward minus infinity) and the cells with the
    largest remainders get one more unit each until the cells add up to that rounded total. Ties go to the
    earlier export line, then the earlier period. Every cell moves by less than one unit; row order is kept.
    """
    unit = Decimal(1).scaleb(-decimals)
    groups: dict[tuple[str, str, str], list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault((r.company, r.version, r.account), []).append(i)
    out = list(rows)
    for idx in groups.values():
        target = sum((rows[i].amount for i in idx), Decimal(0)).quantize(unit, rounding=ROUND_HALF_UP)
        floors = {i: rows[i].amount.quantize(unit, rounding=ROUND_FLOOR) for i in idx}
        extra = int((target - sum(floors.values(), Decimal(0))) / unit)
        ranked = sorted(idx, key=lambda i: (floors[i] - rows[i].amount, rows[i].line_number, rows[i].period))
        up = set(ranked[:extra])
        for i in idx:
            amount = floors[i] + (unit if i in up else Decimal(0))
            out[i] = rows[i].model_copy(update={"amount": amount if amount != 0 else Decimal(0)})
    return out


def to_ledger_sign(rows: Sequence[PlanRow], account_types: dict[str, str], *, source: str) -> list[PlanRow]:
    """Plan amounts in natural sign (revenue, liability and equity positive) turned into ledger sign (debit
    positive, credit negative) by the F&O main account type (``account_types``: account -> MainAccountType,
    keys upper case); see :func:`~d365_anaplan.flows.sign.flip_sign`."""
    out = []
    for r in rows:
        kind = account_types.get(r.account.upper())
        amount = flip_sign(r.amount, r.account, kind, where=f"{source} line {r.line_number}",
                           setting="mapping.plans.sign")  # fmt: skip
        out.append(r if amount is r.amount else r.model_copy(update={"amount": amount}))
    return out
