"""Writing the actuals import file: the header in the import's column order, then the rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import TYPE_CHECKING

from d365_anaplan.config import ActualsMapping, DimensionMapping, LedgerOptions
from d365_anaplan.errors import BadInputData
from d365_anaplan.flows.money import amount_decimals, format_amount
from d365_anaplan.flows.periods import format_period, validate_period_format
from d365_anaplan.flows.textsafe import TextWriter, check_code, csv_writer, neutralise_text

if TYPE_CHECKING:  # alignment imports this module
    from d365_anaplan.flows.alignment import Remap
from d365_anaplan.flows.actuals import ActualsAggregate, ActualsRow
from d365_anaplan.flows.actuals_totals import ActualsTotals


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
        record.append(format_amount(r.amount, amount_decimals(r.currency, decimals)))
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
