"""The actuals file: mapped, aggregated and alignment-checked rows, held cells zeroed, control totals first."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from d365_anaplan.errors import ConfigError
from d365_anaplan.flows.actuals import ActualsRow, aggregate_actuals, line_rows
from d365_anaplan.flows.actuals_file import write_actuals_csv
from d365_anaplan.flows.actuals_totals import ActualsTotals
from d365_anaplan.flows.alignment import (
    ACCOUNT,
    check_alignment,
    collect_references,
    resolve_actuals_alignment,
)
from d365_anaplan.flows.balances import balance_rows
from d365_anaplan.flows.calendar import parse_period, period_key
from d365_anaplan.flows.mapping import map_actuals_rows
from d365_anaplan.staging import S3StreamWriter
from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.control_totals import check_control_totals, movement_lines
from d365_anaplan.steps.gl_extract import staged_gl_lines
from d365_anaplan.steps.held_cells import cell_key_of, held_cells_of, hold_cells, put_cells
from d365_anaplan.steps.lease import LeaseRef, hold_lease
from d365_anaplan.steps.mapping import (
    account_types,
    actuals_scope,
    coverage_fo_codes,
    needs_account_types,
    require_coverage,
    step_value_maps,
)
from d365_anaplan.steps.preflight import import_headers
from d365_anaplan.steps.staged_io import TextAdapter, record_staged


def _members(ctx: StepContext) -> tuple[dict[str, set[str]], list[str]]:
    """Member codes of the Anaplan lists the configuration names (dimension -> codes), and what was not checked."""
    m = ctx.cfg.mapping
    members: dict[str, set[str]] = {}
    unchecked: list[str] = []
    lists = [(ACCOUNT, m.accounts.list_name)] + [(d.name, d.list_name) for d in m.dimensions]
    for dimension, list_name in lists:
        if list_name is None:
            unchecked.append(dimension)
            continue
        members[dimension] = {item.code or item.name for item in ctx.anaplan.list_items(list_name)}
    return members, unchecked


def prepare_actuals(
    ctx: StepContext, periods: list[str], *, lease: LeaseRef, dry_run: bool = False
) -> dict[str, Any]:
    """Transform the staged GL to the actuals import's columns, check alignment and the control totals, write
    the file.

    Monthly grain aggregates (the aggregate is small); line grain streams the staged GL twice (references,
    then rows). Writes ``actuals/actuals.csv``, ``actuals/fo_totals.json`` (per company/account/dimensions/
    period/currency, for reconciliation) and ``actuals/alignment.json``. Control totals before anything is
    loaded: every company x period x currency nets to zero (``ledger.require_balanced``), and with
    ``ledger.second_path`` the totals per company x account x period x currency read through the other GL
    route equal the extracted ones. Unless ``dry_run``, the file's cells join the held-cell state before the
    import can write them (see :func:`hold_cells`). The model lease is renewed and verified before the
    Anaplan lists are read (the held-cell state is kept under it).
    """
    cfg = ctx.cfg
    m = cfg.mapping
    months = {parse_period(p, field="periods") for p in periods}
    common: dict[str, Any] = {
        "dimensions": m.dimensions,
        "companies": cfg.dynamics.companies,
        "periods": months,
        "ledger": cfg.ledger,
    }
    balances = cfg.ledger.balance_sheet == "balances"
    if balances and m.actuals.grain != "monthly":
        raise ConfigError(["ledger.balance_sheet: balances need mapping.actuals.grain: monthly"])
    maps = step_value_maps(ctx)
    types = account_types(ctx.dynamics.reader) if needs_account_types(cfg) else {}
    # Out-of-scope accounts leave before alignment; natural sign by the F&O account; then the value maps.
    scope = actuals_scope(cfg, types) if not m.scopes.actuals.unrestricted else None
    natural = types if m.actuals.sign == "natural" else None

    def mapped(source: Iterable[ActualsRow], aggregate: bool) -> Iterator[ActualsRow]:
        return map_actuals_rows(source, maps, m.dimensions, scope=scope, account_types=natural,
                                aggregate=aggregate)  # fmt: skip

    if m.actuals.grain == "monthly":
        movements = (g for g in movement_lines(ctx, months) if not g.balance_sheet)
        fo_rows: list[ActualsRow] = aggregate_actuals(movements, **common).rows()
        if balances:
            fo_rows += balance_rows(staged_gl_lines(ctx), dimensions=m.dimensions, periods=months,
                                    companies=cfg.dynamics.companies, ledger=cfg.ledger)  # fmt: skip
        rows: list[Any] = list(mapped(fo_rows, True))
        refs = collect_references(rows, m.dimensions)
    else:
        refs = collect_references(mapped(line_rows(staged_gl_lines(ctx), **common), False), m.dimensions)
    ctx.ledger.record_step(
        ctx.run_id, "TransformActuals", "SUCCEEDED", {"grain": m.actuals.grain, "periods": periods}
    )
    controls = check_control_totals(ctx, periods, common)
    hold_lease(ctx, lease, "PrepareActuals: read the Anaplan lists")
    members, unchecked = _members(ctx)
    require_coverage(cfg, maps, members, coverage_fo_codes(cfg, ctx.dynamics.reader))  # as `check` does
    for dimension in unchecked:
        refs.values.pop(dimension, None)
    report = check_alignment(refs, members, target="Anaplan")
    bucket = ctx.env.staging_bucket
    report_json = {**report.to_json(), "not_checked": unchecked}
    report_key = ctx.key("actuals", "alignment.json")
    ctx.s3.put_object(Bucket=bucket, Key=report_key, Body=json.dumps(report_json).encode("utf-8"))
    ctx.ledger.record_step(ctx.run_id, "AlignActuals", "SUCCEEDED" if report.ok else "UNMATCHED", report_json)
    remap = resolve_actuals_alignment(report, m, members)  # raises AlignmentFailed under policy "fail"
    stale: list[ActualsRow] = []
    with_currency = cfg.ledger.currency_column is not None
    if m.actuals.grain == "line":
        rows_iter: Iterable[Any] = mapped(line_rows(staged_gl_lines(ctx), **common), False)
    else:
        # A cell loaded by an earlier run that F&O no longer has (a line reclassified to another account or
        # dimension value, a reversal) must be set to zero, or Anaplan keeps the old amount.
        written = [remap.apply_row(r, m.dimensions) if remap else r for r in rows]
        loaded = {cell_key_of(r, with_currency): r.label for r in written}
        currency_of = {r.company: r.currency for r in written}
        held = held_cells_of(ctx, periods)
        stale = [
            ActualsRow(
                c, a, d, p, Decimal(0), line_count=0, currency=cur or currency_of.get(c, ""), label=label
            )
            for (c, a, d, p, cur), label in sorted(held.items())
            if (c, a, d, p, cur) not in loaded
        ]
        put_cells(ctx, ctx.key("actuals", "cells.json"), loaded)
        rows_iter = [*rows, *stale]
    key = ctx.key("actuals", "actuals.csv")
    order = import_headers(
        ctx.anaplan, m.actuals.import_action
    )  # columns matched by name, in the import's order
    with S3StreamWriter(ctx.s3, bucket, key) as out:
        totals = write_actuals_csv(
            rows_iter, TextAdapter(out), mapping=m.actuals, dimensions=m.dimensions,
            fiscal_year_start_month=cfg.close_calendar.fiscal_year_start_month, remap=remap or None,
            ledger=cfg.ledger, order=order,
        )  # fmt: skip
    staged = record_staged(ctx, "PrepareActuals", out.result)
    if m.actuals.grain == "monthly" and not dry_run:
        hold_cells(ctx, periods, loaded)
    totals_key = ctx.key("actuals", "fo_totals.json")
    ctx.s3.put_object(Bucket=bucket, Key=totals_key, Body=json.dumps(_totals_json(totals)).encode("utf-8"))
    summary = totals.summary()
    ctx.ledger.record_step(ctx.run_id, "PrepareActuals", "SUCCEEDED",
                           {"key": key, "rows": totals.row_count, "lines": totals.line_count, "total": summary["total"],
                            "by_currency": summary["by_currency"], "by_period": summary["by_period"],
                            "zeroed_cells": len(stale), "remapped": remap.to_json() if remap else {},
                            "controls": controls})  # fmt: skip
    return {"action": m.actuals.import_action, "key": key, "rows": totals.row_count, "lines": totals.line_count,
            "total": summary["total"], "by_currency": summary["by_currency"], "totals_key": totals_key,
            "alignment_key": report_key, "bytes": staged.bytes}  # fmt: skip


def _totals_json(totals: ActualsTotals) -> dict[str, Any]:
    single = len(totals.by_currency) <= 1
    return {
        "total": str(totals.total) if single else None,
        "by_currency": {c: str(v) for c, v in sorted(totals.by_currency.items())},
        "lines": totals.line_count,
        "rows": totals.row_count,
        "by_account": [[c, a, period_key(p), str(v)] for c, a, p, v in totals.items()] if single else [],
        "cells": [
            [cur, c, a, list(d), p.isoformat(), totals.labels.get((c, p), ""), str(v)]
            for cur, c, a, d, p, v in totals.cell_items()
        ],
    }
