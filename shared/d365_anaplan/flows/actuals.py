"""Actuals (D365 -> Anaplan): posted GL lines to the rows of the Anaplan actuals import file.

Three steps, all without I/O; the handler streams GL lines from staging and a text writer to staging:

1. :func:`aggregate_actuals` (grain ``monthly``, the default) sums lines per company x account x dimension
   values x period into a dict (the aggregate is small: a few thousand keys per month). With grain ``line``
   use :func:`line_rows` instead, which yields one row per GL line while streaming; the handler then reads
   the staged GL lines twice (once for the references of step 2, once to write in step 3).
2. :func:`~d365_anaplan.flows.alignment.collect_references` over the rows, then the alignment check, which
   may return a :class:`~d365_anaplan.flows.alignment.Remap` (policy ``map``).
3. :func:`write_actuals_csv` writes the header and rows to a text writer (after the remap; monthly rows that
   collapse onto the same key after remapping are summed again) and returns :class:`ActualsTotals` for
   reconciliation.

Columns: ``company_column``, ``account_column``, one column per ``DimensionMapping.column``
(configuration order), ``period_column``, ``version_column`` (unless None), ``amount_column``; with grain
``line`` also ``line_id_column``, ``voucher_column``, ``description_column``; then ``constant_columns``.
They are written in the order of the import's ``headerNames`` when those name exactly these columns
(matched by name), else in this order. Monthly rows are sorted by company, account,
dimension values, period; line rows keep input order. Amounts are plain decimals with exactly ``decimals``
places. Every code is checked (see :mod:`d365_anaplan.flows.textsafe`); descriptions are neutralised.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from d365_anaplan.config import ActualsMapping, DimensionMapping, LedgerOptions
from d365_anaplan.errors import BadInputData
from d365_anaplan.flows.calendar import month_start, period_key
from d365_anaplan.flows.money import check_amount, format_amount
from d365_anaplan.flows.periods import format_period, validate_period_format
from d365_anaplan.flows.records import GLLine
from d365_anaplan.flows.textsafe import TextWriter, check_code, csv_writer, neutralise_text

if TYPE_CHECKING:  # alignment imports this module
    from d365_anaplan.flows.alignment import Remap

Key = tuple[str, str, tuple[str, ...], date, str]  # company, account, dimension values, period, currency

_FISCAL_TOKEN = re.compile(r"\{(fyname|fpp|fp|pname)\}")


def fiscal_label(fmt: str, fiscal_year: str, number: int, name: str) -> str:
    """The label of a fiscal period: ``{fyname}`` fiscal year name, ``{fp}`` period number, ``{fpp}`` the
    number on two digits, ``{pname}`` the period name (``LedgerOptions.fiscal_period_format``)."""
    values = {"fyname": fiscal_year, "fp": str(number), "fpp": f"{number:02d}", "pname": name}
    return _FISCAL_TOKEN.sub(lambda m: values[m.group(1)], fmt)


def line_period(line: GLLine) -> date:
    """The period key of a line: the month of its accounting date, or for companies loaded by fiscal period
    the last day of its fiscal period (a fiscal period belongs to the month it ends in)."""
    if not line.period_monthly and line.period_end is not None:
        return line.period_end
    return month_start(line.accounting_date)


def run_month(period: date) -> date:
    """The run month (YYYY-MM of the gate) a period key belongs to."""
    return month_start(period)


@dataclass(slots=True)
class ActualsRow:
    """One row of the actuals file before formatting (``dims`` follow the DimensionMapping order)."""

    company: str
    account: str
    dims: tuple[str, ...]
    period: date
    amount: Decimal
    line_count: int = 1
    line_id: str = ""
    voucher: str = ""
    description: str = ""
    currency: str = ""  # currency of ``amount``
    label: str = ""  # the period label when it is not the month's (fiscal periods)

    @property
    def key(self) -> Key:
        return (self.company, self.account, self.dims, self.period, self.currency)

    def dimension_map(self, dimensions: Sequence[DimensionMapping]) -> dict[str, str]:
        """Dimension values keyed by F&O attribute name."""
        return {d.name: v for d, v in zip(dimensions, self.dims, strict=True)}


def _line_where(line: GLLine, index: int) -> str:
    ident = line.source_id or line.voucher or "?"
    return f"GL line {index} (company {line.company}, id {ident})"


def validate_gl_line(
    line: GLLine,
    index: int,
    *,
    dimensions: Sequence[DimensionMapping],
    decimals: int = 2,
    companies: Collection[str] | None = None,
    periods: Collection[date] | None = None,
    ledger: LedgerOptions | None = None,
) -> ActualsRow | None:
    """Check one GL line and turn it into a one-line row; BadInputData names the line and the field.

    None for a line of a fiscal period type the connection leaves out (``ledger.period_types``: opening and
    closing periods by default)."""
    where = _line_where(line, index)
    opts = ledger or LedgerOptions()
    if line.period_type and line.period_type not in opts.period_types:
        return None
    company = check_code(line.company, where=where, field="company")
    if companies is not None and company not in companies:
        raise BadInputData(f"{where}: field 'company' value {company!r} is not one of {sorted(companies)}")
    account = check_code(line.account, where=where, field="account")
    dims = tuple(
        check_code(
            line.dimensions.get(d.name, ""), where=where, field=f"dimensions.{d.name}", allow_empty=True
        )
        for d in dimensions
    )
    period = line_period(line)
    label = ""
    if not line.period_monthly and line.period_end is not None:
        if line.period_type == "Closing":
            raise BadInputData(
                f"{where}: a closing-period line cannot be loaded by fiscal period label (it shares the dates of "
                "the last period); leave Closing out of ledger.period_types or set ledger.period_basis: month"
            )
        label = fiscal_label(
            opts.fiscal_period_format, line.fiscal_year, line.fiscal_period, line.period_name
        )
    if periods is not None and run_month(period) not in periods:
        wanted = ", ".join(period_key(p) for p in sorted(periods))
        raise BadInputData(
            f"{where}: field 'accounting_date' {line.accounting_date.isoformat()} is outside the requested "
            f"period(s) {wanted}"
        )
    amount = check_amount(line.amount, decimals=decimals, where=where)
    return ActualsRow(
        company=company,
        account=account,
        dims=dims,
        period=period,
        amount=amount,
        line_count=1,
        line_id=line.source_id,
        voucher=line.voucher,
        description=line.description,
        currency=line.amount_currency or line.currency,
        label=label,
    )


@dataclass(slots=True)
class _Cell:
    amount: Decimal
    lines: int


@dataclass
class ActualsAggregate:
    """Monthly balances: key -> amount and number of source lines."""

    dimensions: tuple[DimensionMapping, ...]
    cells: dict[Key, _Cell] = field(default_factory=dict)
    lines: int = 0
    labels: dict[tuple[str, date], str] = field(default_factory=dict)

    def add(self, row: ActualsRow) -> None:
        if row.label:
            self.labels[(row.company, row.period)] = row.label
        cell = self.cells.get(row.key)
        if cell is None:
            self.cells[row.key] = _Cell(row.amount, row.line_count)
        else:
            cell.amount += row.amount
            cell.lines += row.line_count
        self.lines += row.line_count

    def rows(self) -> list[ActualsRow]:
        """Rows in deterministic order (company, account, dimension values, period)."""
        return [
            ActualsRow(
                company=k[0],
                account=k[1],
                dims=k[2],
                period=k[3],
                amount=v.amount,
                line_count=v.lines,
                currency=k[4],
                label=self.labels.get((k[0], k[3]), ""),
            )
            for k, v in sorted(self.cells.items(), key=lambda kv: kv[0])
        ]

    def __len__(self) -> int:
        return len(self.cells)


def aggregate_actuals(
    lines: Iterable[GLLine],
    *,
    dimensions: Sequence[DimensionMapping],
    decimals: int = 2,
    companies: Collection[str] | None = None,
    periods: Collection[date] | None = None,
    ledger: LedgerOptions | None = None,
) -> ActualsAggregate:
    """Sum GL lines per company x account x dimension values x period x currency (streaming over ``lines``)."""
    agg = ActualsAggregate(dimensions=tuple(dimensions))
    for index, line in enumerate(lines, start=1):
        row = validate_gl_line(
            line, index, dimensions=dimensions, decimals=decimals, companies=companies, periods=periods,
            ledger=ledger,
        )  # fmt: skip
        if row is not None:
            agg.add(row)
    return agg


def line_rows(
    lines: Iterable[GLLine],
    *,
    dimensions: Sequence[DimensionMapping],
    decimals: int = 2,
    companies: Collection[str] | None = None,
    periods: Collection[date] | None = None,
    ledger: LedgerOptions | None = None,
) -> Iterator[ActualsRow]:
    """Grain ``line``: one validated row per GL line, streaming, in input order."""
    for index, line in enumerate(lines, start=1):
        row = validate_gl_line(
            line, index, dimensions=dimensions, decimals=decimals, companies=companies, periods=periods,
            ledger=ledger,
        )  # fmt: skip
        if row is not None:
            yield row


# --- totals ------------------------------------------------------------------------------------------------


@dataclass
class ActualsTotals:
    """What was written: per (company, account, period, currency), for reconciliation and the ledger.

    Amounts of different currencies are never added: ``by_currency`` holds one net total per currency;
    ``total`` is kept for callers of a single-currency connection (it is the only currency's total)."""

    by_account: dict[tuple[str, str, date, str], Decimal] = field(default_factory=dict)
    lines_by_account: dict[tuple[str, str, date, str], int] = field(default_factory=dict)
    by_currency: dict[str, Decimal] = field(default_factory=dict)
    labels: dict[tuple[str, date], str] = field(default_factory=dict)
    by_cell: dict[tuple[str, str, tuple[str, ...], date, str], Decimal] = field(default_factory=dict)
    line_count: int = 0
    row_count: int = 0

    @property
    def total(self) -> Decimal:
        if len(self.by_currency) > 1:
            raise BadInputData(
                f"actuals total: amounts are in several currencies {sorted(self.by_currency)}; use by_currency"
            )
        return next(iter(self.by_currency.values()), Decimal(0))

    def add(self, row: ActualsRow, label: str = "") -> None:
        key = (row.company, row.account, row.period, row.currency)
        self.by_account[key] = self.by_account.get(key, Decimal(0)) + row.amount
        self.lines_by_account[key] = self.lines_by_account.get(key, 0) + row.line_count
        cell = (row.company, row.account, row.dims, row.period, row.currency)
        self.by_cell[cell] = self.by_cell.get(cell, Decimal(0)) + row.amount
        if row.currency or row.amount:
            self.by_currency[row.currency] = self.by_currency.get(row.currency, Decimal(0)) + row.amount
        if label:
            self.labels[(row.company, row.period)] = label
        self.line_count += row.line_count
        self.row_count += 1

    def by_period(self) -> dict[tuple[str, date, str], Decimal]:
        """Totals per (company, period, currency)."""
        out: dict[tuple[str, date, str], Decimal] = {}
        for (company, _account, period, currency), amount in self.by_account.items():
            out[(company, period, currency)] = out.get((company, period, currency), Decimal(0)) + amount
        return out

    def items(self) -> Iterator[tuple[str, str, date, Decimal]]:
        """(company, account, period, amount) in sorted order, for a single-currency reconciliation."""
        for (company, account, period, _currency), amount in sorted(self.by_account.items()):
            yield company, account, period, amount

    def cell_items(self) -> Iterator[tuple[str, str, str, tuple[str, ...], date, Decimal]]:
        """(currency, company, account, dimension values, period, amount) in sorted order: the level the
        import writes."""
        for (company, account, dims, period, currency), amount in sorted(self.by_cell.items()):
            yield currency, company, account, dims, period, amount

    def summary(self) -> dict[str, Any]:
        """Small JSON for the run ledger: overall figures per currency and per (company, period, currency)."""
        by_currency = {c: str(v) for c, v in sorted(self.by_currency.items())}
        return {
            "total": str(self.total) if len(self.by_currency) <= 1 else None,
            "by_currency": by_currency,
            "lines": self.line_count,
            "rows": self.row_count,
            "by_period": [
                {
                    "company": c,
                    "period": period_key(p),
                    "currency": cur,
                    "amount": str(a),
                    "label": self.labels.get((c, p), ""),
                }
                for (c, p, cur), a in sorted(self.by_period().items())
            ],
        }


# --- writing -----------------------------------------------------------------------------------------------


def actuals_header(
    mapping: ActualsMapping,
    dimensions: Sequence[DimensionMapping],
    grain: str | None = None,
    currency_column: str | None = None,
    order: Sequence[str] | None = None,
) -> list[str]:
    """The column names of the actuals file (BadInputData if two columns share a name).

    ``order``: the import's ``headerNames``; when they name exactly the file's columns the file is written
    in their order (matched by name), else in the configured order (the upload then names the difference).
    """
    cols = [mapping.company_column, mapping.account_column]
    cols += [d.column for d in dimensions]
    cols += [mapping.period_column]
    if mapping.version_column:
        cols.append(mapping.version_column)
    cols.append(mapping.amount_column)
    if currency_column:
        cols.append(currency_column)
    if (grain or mapping.grain) == "line":
        cols += [mapping.line_id_column, mapping.voucher_column, mapping.description_column]
    cols += list(mapping.constant_columns)
    seen: set[str] = set()
    for col in cols:
        check_code(col, where="actuals file header", field="column")
        if col in seen:
            raise BadInputData(f"actuals file header: column {col!r} is configured twice")
        seen.add(col)
    if order is not None and len(order) == len(cols) and set(order) == seen:
        return list(order)
    return cols


def write_actuals_csv(
    rows: Iterable[ActualsRow],
    writer: TextWriter,
    *,
    mapping: ActualsMapping,
    dimensions: Sequence[DimensionMapping],
    fiscal_year_start_month: int = 1,
    decimals: int = 2,
    remap: Remap | None = None,
    grain: str | None = None,
    ledger: LedgerOptions | None = None,
    order: Sequence[str] | None = None,
) -> ActualsTotals:
    """Write the header and ``rows`` as CSV to ``writer``; return the totals of what was written.

    ``grain`` defaults to ``mapping.grain``. With grain ``monthly`` the rows are (re)aggregated after the
    remap, so two unknown accounts mapped to the same unmapped member become one row with the summed amount
    and line count; totals are unchanged by a remap except for the keys.
    """
    grain = grain or mapping.grain
    validate_period_format(mapping.period_format)
    version = check_code(mapping.version, where="mapping.actuals", field="version")
    currency_column = ledger.currency_column if ledger else None
    written = actuals_header(mapping, dimensions, grain, currency_column)
    header = actuals_header(mapping, dimensions, grain, currency_column, order)
    place = [written.index(col) for col in header]  # file position -> field of the configured record
    constants = [check_code(v, where="mapping.actuals.constant_columns", field=k)
                 for k, v in mapping.constant_columns.items()]  # fmt: skip
    out = csv_writer(writer)
    out.writerow(header)
    totals = ActualsTotals()
    labels: dict[date, str] = {}

    source: Iterable[ActualsRow] = rows
    if remap is not None:
        source = (remap.apply_row(r, dimensions) for r in rows)
    if grain == "monthly":
        agg = ActualsAggregate(dimensions=tuple(dimensions))
        for r in source:
            agg.add(r)
        source = agg.rows()

    for r in source:
        if r.label:
            label = check_code(r.label, where="ledger.fiscal_period_format", field="period label")
        else:
            cached = labels.get(r.period)
            if cached is None:
                cached = format_period(r.period, mapping.period_format, fiscal_year_start_month)
                labels[r.period] = check_code(
                    cached, where="mapping.actuals.period_format", field="period label"
                )
            label = cached
        record = [r.company, r.account, *r.dims, label]
        if mapping.version_column:
            record.append(version)
        record.append(format_amount(r.amount, decimals))
        if currency_column:
            record.append(check_code(r.currency, where=f"{r.company} {r.account}", field="currency"))
        if grain == "line":
            where = f"GL line {r.line_id or r.voucher or '?'}"
            line_id = check_code(r.line_id, where=where, field="source_id", allow_empty=True)
            voucher = check_code(r.voucher, where=where, field="voucher", allow_empty=True)
            record += [line_id, voucher, neutralise_text(r.description)]
        record += constants
        out.writerow([record[i] for i in place])
        totals.add(r, label)
    return totals


# --- balance-sheet accounts as period-end balances ---------------------------------------------------------


def in_run(line: GLLine, periods: Collection[date]) -> bool:
    """True when the line's period belongs to one of the run's months."""
    return run_month(line_period(line)) in periods


def balance_rows(
    lines: Iterable[GLLine],
    *,
    dimensions: Sequence[DimensionMapping],
    periods: Collection[date],
    decimals: int = 2,
    companies: Collection[str] | None = None,
    ledger: LedgerOptions | None = None,
) -> list[ActualsRow]:
    """Period-end balances of the balance-sheet lines (``GLLine.balance_sheet``) for the run's periods.

    ``lines`` start at the fiscal year's first day: the balance of a cell at a period is the opening-period
    entries plus every operating movement up to the period's end (closing-period entries left out, as for
    movements). Balances are emitted for each period the company has lines in during the run, and for every
    run month of companies on calendar months."""
    opts = ledger or LedgerOptions()
    sums: dict[tuple[str, str, tuple[str, ...], str], list[tuple[date, Decimal]]] = {}
    keys: dict[str, set[date]] = {}
    labels: dict[tuple[str, date], str] = {}
    monthly: dict[str, bool] = {}
    for index, line in enumerate(lines, start=1):
        where = _line_where(line, index)
        company = check_code(line.company, where=where, field="company")
        if companies is not None and company not in companies:
            raise BadInputData(
                f"{where}: field 'company' value {company!r} is not one of {sorted(companies)}"
            )
        monthly[company] = monthly.get(company, True) and line.period_monthly
        period = line_period(line)
        if run_month(period) in periods and line.period_type in ("", "Operating"):
            keys.setdefault(company, set()).add(period)
            if not line.period_monthly and line.period_end is not None:
                labels[(company, period)] = fiscal_label(
                    opts.fiscal_period_format, line.fiscal_year, line.fiscal_period, line.period_name
                )
        if not line.balance_sheet or line.period_type == "Closing":
            continue
        account = check_code(line.account, where=where, field="account")
        dims = tuple(
            check_code(
                line.dimensions.get(d.name, ""), where=where, field=f"dimensions.{d.name}", allow_empty=True
            )
            for d in dimensions
        )
        amount = check_amount(line.amount, decimals=decimals, where=where)
        key = (company, account, dims, line.amount_currency or line.currency)
        sums.setdefault(key, []).append((period, amount))
    for company, is_monthly in monthly.items():
        if is_monthly:
            keys.setdefault(company, set()).update(periods)
    out: list[ActualsRow] = []
    for (company, account, dims, currency), moves in sorted(sums.items()):
        for period in sorted(keys.get(company, ())):
            balance = sum((a for p, a in moves if p <= period), Decimal(0))
            out.append(
                ActualsRow(
                    company,
                    account,
                    dims,
                    period,
                    balance,
                    line_count=0,
                    currency=currency,
                    label=labels.get((company, period), ""),
                )
            )
    return out
