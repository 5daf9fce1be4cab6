"""The reconciliation of what Anaplan holds against what F&O posted, to the cent."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import date
from decimal import Decimal
from typing import Any

from d365_anaplan.errors import BadInputData, ReconciliationFailed
from d365_anaplan.flows.actuals import run_month
from d365_anaplan.flows.calendar import parse_period
from d365_anaplan.flows.money import parse_amount
from d365_anaplan.flows.periods import parse_period_label
from d365_anaplan.flows.reconcile import NOT_RECONCILED, SideTotals, reconcile
from d365_anaplan.flows.textsafe import neutralise_text
from d365_anaplan.staging import iter_lines
from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.control_totals import tolerance_for
from d365_anaplan.steps.held_cells import remember_loaded_cells
from d365_anaplan.steps.mapping import step_value_maps
from d365_anaplan.steps.staged_io import load_json

LEFT_OUT = ("failed", "ignored", "invalid")  # import row counts that mean a row is not in Anaplan as sent
DUMP_ROWS = 5  # failure-dump rows quoted in the problem
DUMP_ROW_CHARS = 200


def _left_out_text(ctx: StepContext, counts: dict[str, int], dump_key: str | None) -> str:
    """The problem of an import that did not load every row: the counts, and the first rows of its dump."""
    named = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    text = f"the actuals import did not load every row ({named}): Anaplan does not hold what F&O posted"
    if not dump_key:
        return text + "; no failure dump is available"
    lines = (raw.decode("utf-8", "replace") for raw in iter_lines(ctx.s3, ctx.env.staging_bucket, dump_key))
    reader = csv.reader(lines)
    header = next(reader, [])
    quoted: list[str] = []
    for rec in reader:
        if len(quoted) == DUMP_ROWS:
            break
        cells = dict(zip(header, rec, strict=False))
        errors = "; ".join(v for k, v in cells.items() if k.startswith("_Error") and v)
        values = ",".join(v for k, v in cells.items() if not (k.startswith("_") and k.endswith("_")))
        row = f"line {cells.get('_Line_', '?')}: {values} ({errors or 'no message'})"
        quoted.append(
            neutralise_text(row)[:DUMP_ROW_CHARS]
        )  # Anaplan's text: one line, no control characters
    where = f"failure dump s3://{ctx.env.staging_bucket}/{dump_key}"
    return f"{text}; first rows of the {where}: " + (" | ".join(quoted) if quoted else "(empty)")


def _cell_label(account: str, dims: Iterable[str]) -> str:
    """The account plus dimension values, as the key reconciliation compares (``|`` joined)."""
    return "|".join([account, *dims])


def _readback_header(ctx: StepContext, key: str) -> list[str]:
    lines = (raw.decode("utf-8") for raw in iter_lines(ctx.s3, ctx.env.staging_bucket, key))
    return next(csv.reader(lines), [])


def _anaplan_items(
    ctx: StepContext,
    key: str,
    places: dict[tuple[str, str], date],
    currencies: dict[str, str],
    with_dims: bool,
) -> Iterator[tuple[str, str, str, date, Decimal]]:
    """(currency, company, account[|dimension values], period, amount) of an export of the actuals module.

    ``places`` maps (company, label) to the period of labels the run wrote; other labels are read with the
    month format. ``currencies`` is each company's currency when the file has no currency column."""
    cfg = ctx.cfg
    a = cfg.mapping.actuals
    dim_cols = [d.column for d in cfg.mapping.dimensions]
    cur_col = cfg.ledger.currency_column
    fiscal = cfg.close_calendar.fiscal_year_start_month
    lines = (raw.decode("utf-8") for raw in iter_lines(ctx.s3, ctx.env.staging_bucket, key))
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise BadInputData(f"actuals read-back {a.verify_export!r}: the export is empty")
    missing = [
        c for c in (a.company_column, a.account_column, a.period_column, a.amount_column) if c not in header
    ]
    if missing:
        raise BadInputData(
            f"actuals read-back {a.verify_export!r}: columns {missing} are missing from {header}"
        )
    idx = {c: header.index(c) for c in header}
    for n, rec in enumerate(reader, start=2):
        where = f"actuals read-back {a.verify_export!r} line {n}"
        if a.version_column in idx and rec[idx[a.version_column]] != a.version:
            continue
        company, text = rec[idx[a.company_column]], rec[idx[a.period_column]]
        period = places.get((company, text))
        if period is None:
            try:
                period = parse_period_label(text, a.period_format, fiscal)
            except BadInputData:
                continue  # a label of another calendar or period the run does not cover
        amount = parse_amount(rec[idx[a.amount_column]], decimals=6, where=where)
        cur = rec[idx[cur_col]] if cur_col and cur_col in idx else currencies.get(company, "")
        account = rec[idx[a.account_column]]
        if with_dims:
            account = _cell_label(account, (rec[idx[c]] for c in dim_cols))
        yield cur, company, account, period, amount


def _fo_sides(
    cells: list[list[Any]], with_dims: bool
) -> tuple[dict[str, SideTotals], dict[tuple[str, str], date], dict[str, str]]:
    """The F&O cells of ``fo_totals.json`` summed per currency (fiscal periods keyed by their day), the period of
    each (company, label) the run wrote, and each company's currency; ``cells`` is emptied as it is read."""
    sides: dict[str, SideTotals] = {}
    places: dict[tuple[str, str], date] = {}
    currencies: dict[str, str] = {}
    days: dict[str, date] = {}
    names: dict[str, str] = {}
    # From the end, so each entry is freed once added; setdefault then keeps what later entries said.
    while cells:
        cur, c, a, d, p, lab, v = cells.pop()
        cur, c = names.setdefault(str(cur), str(cur)), names.setdefault(str(c), str(c))
        period = days.get(p) or days.setdefault(p, date.fromisoformat(p))
        if lab:
            places.setdefault((c, str(lab)), period)
        currencies.setdefault(c, cur)
        side = sides.get(cur) or sides.setdefault(cur, SideTotals(f"F&O [{cur}]"))
        side.add(c, _cell_label(str(a), d) if with_dims else str(a), period, Decimal(v))
    return sides, places, currencies


def reconcile_actuals(
    ctx: StepContext,
    totals_key: str,
    import_counts: dict[str, Any],
    file_rows: int,
    readback_key: str | None,
    periods: list[str],
    dump_key: str | None = None,
) -> dict[str, Any]:
    """Anaplan must hold what F&O posted: the import took every row (none failed, ignored or invalid: the
    problem names the count and the first rows of the import's failure dump ``dump_key`` when there is one);
    with a read-back export, every amount
    per company, account and period of the run matches to the cent, per currency (within the currency's
    tolerance). The read-back covers the whole module, so it is cut to the run's companies and periods first.
    Without a read-back export the step says plainly that Anaplan was not reconciled (:data:`NOT_RECONCILED`)."""
    fo = load_json(ctx, totals_key)
    problems: list[str] = []
    left_out = {k: int(import_counts.get(k) or 0) for k in LEFT_OUT}
    if any(left_out.values()):
        problems.append(_left_out_text(ctx, left_out, dump_key))
    total = int(import_counts.get("total", 0))
    if total and total != file_rows:
        problems.append(f"the actuals import processed {total} row(s), the file has {file_rows}")
    detail: dict[str, Any] = {"rows": file_rows, "fo_total": fo["total"], "by_currency": fo.get("by_currency", {}),
                              "counts": import_counts, "read_back": bool(readback_key)}  # fmt: skip
    if not readback_key:
        detail["note"] = NOT_RECONCILED
    matched = 0
    if readback_key:
        header = _readback_header(ctx, readback_key)
        with_dims = all(d.column in header for d in ctx.cfg.mapping.dimensions)
        detail["readback_level"] = "dimensions" if with_dims else "account"
        # Both sides are summed as they are read, per currency, into one total per cell: the F&O cells are
        # drained from the parsed file as they are added (memory stays near one copy of the cells, not three).
        months = {parse_period(p, field="periods") for p in periods}
        fo_sides, places, currencies = _fo_sides(fo.pop("cells"), with_dims)
        maps = step_value_maps(ctx)  # the file holds Anaplan entity codes
        companies = {maps.company.apply(c, where="dynamics.companies") for c in ctx.cfg.dynamics.companies}
        held: dict[str, SideTotals] = {}
        for cur, c, a, p, v in _anaplan_items(ctx, readback_key, places, currencies, with_dims):
            if run_month(p) in months and c in companies:
                side = held.get(cur) or held.setdefault(cur, SideTotals(f"Anaplan [{cur}]"))
                side.add(c, a, p, v)
        detail["reconciliation"] = {}
        for cur in sorted(fo_sides.keys() | held.keys()):
            result = reconcile(
                fo_sides.get(cur) or SideTotals(f"F&O [{cur}]"), held.get(cur) or SideTotals(f"Anaplan [{cur}]"),
                currency=cur, tolerance=tolerance_for(ctx, cur),
            )  # fmt: skip
            detail["reconciliation"][cur] = result.to_json()
            matched += result.matched_accounts
            if not result.ok:
                problems.append(result.to_text())
    ctx.ledger.record_step(
        ctx.run_id,
        "ReconcileActuals",
        "FAILED" if problems else "SUCCEEDED",
        {**detail, "problems": problems},
    )
    if problems:
        raise ReconciliationFailed("; ".join(problems))
    if ctx.cfg.mapping.actuals.grain == "monthly":
        remember_loaded_cells(ctx, periods)
    return {"ok": True, "fo_total": fo["total"], "by_currency": fo.get("by_currency", {}), "rows": file_rows,
            "compared": matched}  # fmt: skip
