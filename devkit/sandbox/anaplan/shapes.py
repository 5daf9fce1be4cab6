"""Other model shapes the Anaplan sandbox serves (issue 12, item 7): time-in-columns exports.

A tabular multi-column export with Time on columns (anaplan-shapes.md §1): one row per combination of the
row dimensions the export's ``headerNames`` list, one column per month of the model's time range that holds
a value, then a year total per fiscal year label (``FY25``) as Anaplan interleaves totals. The value is the
module's approved amount (the export is made from a saved view whose line item shows approved values only);
a cell without one is blank.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from devkit.sandbox.anaplan.seed import ExportDef, ModelSeed

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _month_order(label: str) -> tuple[int, int]:
    mon, yy = label.split(" ")
    return int(yy), _MONTHS.index(mon)


def time_in_columns_export(
    seed: ModelSeed, exp: ExportDef, cells: list[tuple[tuple[str, ...], dict[str, object]]]
) -> bytes:
    """The export file: ``exp.header_names`` are the row-label columns (module dimension columns)."""
    module = seed.modules[exp.module]
    columns = [column for column, _ in module.dimensions]
    rows: dict[tuple[str, ...], dict[str, Decimal]] = {}
    labels: set[str] = set()
    for key, values in cells:
        named = dict(zip(columns, key, strict=True))
        if named.get("Version", exp.version) != exp.version:
            continue
        period = named["Period"]
        labels.add(period)
        row = rows.setdefault(tuple(named.get(h, "") for h in exp.header_names), {})
        amount = values.get("Amount")
        if isinstance(amount, Decimal) and values.get("Approval", "Approved") == "Approved":
            row[period] = amount
    months = sorted(labels, key=_month_order)
    years = sorted({f"FY{label.split(' ')[1]}" for label in months})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*exp.header_names, *months, *years])
    for head, cells_of in sorted(rows.items()):
        totals = {
            y: sum((v for m, v in cells_of.items() if f"FY{m.split(' ')[1]}" == y), Decimal(0)) for y in years
        }
        writer.writerow([*head, *(f"{cells_of[m]:.2f}" if m in cells_of else "" for m in months),
                         *(f"{totals[y]:.2f}" for y in years)])  # fmt: skip
    return out.getvalue().encode("utf-8")


def time_in_columns_header(
    seed: ModelSeed, exp: ExportDef, cells: list[tuple[tuple[str, ...], dict[str, object]]]
) -> list[str]:
    """``exportMetadata.headerNames`` of the export: its file's first line."""
    first = time_in_columns_export(seed, exp, cells).split(b"\n", 1)[0].decode("utf-8")
    return next(csv.reader([first]))
