"""Actuals (D365 -> Anaplan): posted GL lines to the rows of the Anaplan actuals import file.

Three steps, all without I/O; the handler streams GL lines from staging and a text writer to staging:

1. :func:`aggregate_actuals` (grain ``monthly``, the default) sums lines per company x account x dimension
   values x period into a dict (the aggregate is small: a few thousand keys per month). With grain ``line``
   use :func:`line_rows` instead, which yields one row per GL line while streaming; the handler then reads
   the staged GL lines twice (once for the references of step 2, once to write in step 3).
2. :func:`~d365_anaplan.flows.alignment.collect_references` over the rows, then the alignment check, which
   may return a :class:`~d365_anaplan.flows.alignment.Remap` (policy ``map``).
3. :func:`~d365_anaplan.flows.actuals_file.write_actuals_csv` writes the header and rows to a text writer (after the remap; monthly rows that
   collapse onto the same key after remapping are summed again) and returns :class:`~d365_anaplan.flows.actuals_totals.ActualsTotals` for
   reconciliation.

Columns: ``company_column``, ``account_column``, one column per ``DimensionMapping.column``
(configuration order), ``period_column``, ``version_column`` (unless None), ``amount_column``; with grain
``line`` also ``line_id_column``, ``voucher_column``, ``description_column``; then ``constant_columns``.
They are written in the order of the import's ``headerNames`` when those name exactly these columns
(matched by name), else in this order. Monthly rows are sorted by company, account,
dimension values, period; line rows keep input order. Amounts are plain decimals with exactly ``decimals``
places, or the minor units of their currency where it has more (KWD 3). Every code is checked (see :mod:`d365_anaplan.flows.textsafe`); descriptions are neutralised.

This module holds step 1 (the rows); totals are in :mod:`~d365_anaplan.flows.actuals_totals`, writing in
:mod:`~d365_anaplan.flows.actuals_file`, balance-sheet accounts in :mod:`~d365_anaplan.flows.balances`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from d365_anaplan.config import DimensionMapping, LedgerOptions
from d365_anaplan.errors import BadInputData
from d365_anaplan.flows.calendar import month_start, period_key
from d365_anaplan.flows.money import amount_decimals, check_amount
from d365_anaplan.flows.records import GLLine
from d365_anaplan.flows.textsafe import check_code

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


def line_where(line: GLLine, index: int) -> str:
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
    where = line_where(line, index)
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
    amount = check_amount(
        line.amount, decimals=amount_decimals(line.amount_currency or line.currency, decimals), where=where
    )
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
    for row in line_rows(
        lines, dimensions=dimensions, decimals=decimals, companies=companies, periods=periods, ledger=ledger
    ):
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
