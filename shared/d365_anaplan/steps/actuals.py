"""Dynamics → Anaplan steps: master data to list files, posted GL to staged parts, the actuals file with
its alignment check, and the reconciliation of what Anaplan holds against what F&O posted.

Every output has a deterministic S3 key under the run, so a retried or redriven step overwrites its own
output and never adds a second copy.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import date
from decimal import Decimal
from typing import Any

from d365_anaplan.config import ListImport
from d365_anaplan.dynamics.reader import DynamicsReader
from d365_anaplan.errors import BadInputData, ConfigError, ReconciliationFailed
from d365_anaplan.flows.actuals import (
    ActualsRow,
    ActualsTotals,
    aggregate_actuals,
    balance_rows,
    in_run,
    line_rows,
    run_month,
    validate_gl_line,
    write_actuals_csv,
)
from d365_anaplan.flows.alignment import (
    ACCOUNT,
    check_alignment,
    collect_references,
    resolve_actuals_alignment,
)
from d365_anaplan.flows.calendar import add_months, parse_period, period_key
from d365_anaplan.flows.mapping import map_actuals_rows
from d365_anaplan.flows.money import parse_amount
from d365_anaplan.flows.periods import parse_period_label
from d365_anaplan.flows.reconcile import reconcile
from d365_anaplan.flows.records import GLLine
from d365_anaplan.flows.textsafe import check_code, csv_writer, neutralise_text
from d365_anaplan.staging import S3StreamWriter, StagedFile, iter_lines
from d365_anaplan.steps.context import StepContext
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


class _Text:
    """Text adapter over a byte writer (csv writes ``str``)."""

    def __init__(self, out: S3StreamWriter) -> None:
        self.out = out

    def write(self, s: str) -> int:
        return self.out.write_text(s)


def _record(ctx: StepContext, step: str, staged: StagedFile | None) -> StagedFile:
    assert staged is not None
    ctx.ledger.record_file(
        ctx.run_id, step, staged.bucket, staged.key, staged.bytes, staged.rows, staged.sha256
    )
    return staged


# --- master data -------------------------------------------------------------------------------------------


def _stage_list(
    ctx: StepContext,
    name: str,
    spec: ListImport,
    rows: Iterable[tuple[str, ...]],
    what: str,
    properties: list[str] | None = None,
) -> dict[str, Any]:
    """A list file: code, name and optional property columns (``properties``: their headers, values follow
    code and name in each row)."""
    key = ctx.key("master", name)
    count = 0
    seen: set[str] = set()
    with S3StreamWriter(ctx.s3, ctx.env.staging_bucket, key) as out:
        w = csv_writer(_Text(out))
        w.writerow([spec.code_column, spec.name_column, *(properties or [])])
        for code, label, *extra in rows:
            check_code(code, where=f"{what} {code!r}", field="code")
            if code in seen:
                continue
            seen.add(code)
            w.writerow([code, neutralise_text(label), *(neutralise_text(x) for x in extra)])
            count += 1
    _record(ctx, "ExtractMasterData", out.result)
    return {"action": spec.import_action, "key": key, "rows": count}


def extract_master_data(ctx: StepContext) -> dict[str, Any]:
    """Main accounts (those in the actuals scope), legal entities and the configured dimensions' values, one
    list file per import, in Anaplan codes (value maps applied; codes merged by a map are written once)."""
    m = ctx.cfg.mapping
    reader = ctx.dynamics.reader
    maps = step_value_maps(ctx)
    accounts = list(reader.main_accounts())
    scope = actuals_scope(ctx.cfg, {a.account.upper(): a.account_type for a in accounts})
    opts = ctx.cfg.ledger
    attributes = [
        (col, attr)
        for col, attr in (
            (opts.account_type_column, "account_type"),
            (opts.account_category_column, "category"),
            (opts.account_parent_column, "parent"),
        )
        if col
    ]
    imports = [
        _stage_list(
            ctx,
            "accounts.csv",
            m.accounts,
            (
                (
                    maps.account.apply(a.account, where=f"MainAccounts {a.account!r}"),
                    a.name,
                    *(str(getattr(a, attr)) for _, attr in attributes),
                )
                for a in accounts
                if a.account in scope
            ),
            "MainAccounts",
            [col for col, _ in attributes if col],
        )
    ]
    if m.companies is not None:
        wanted = set(ctx.cfg.dynamics.companies)
        entities = (
            (maps.company.apply(e.company, where=f"LegalEntities {e.company!r}"), e.name)
            for e in reader.legal_entities()
            if e.company.upper() in wanted
        )
        imports.append(_stage_list(ctx, "companies.csv", m.companies, entities, "LegalEntities"))
    caveats: list[str] = []
    for dim in m.dimensions:
        if dim.list_import is None:
            continue
        values = reader.dimension_values(dim.name)
        if not values.complete:
            caveats.append(f"{dim.name}: {values.caveat}")
        spec = ListImport(
            import_action=dim.list_import,
            code_column=m.accounts.code_column,
            name_column=m.accounts.name_column,
        )
        imports.append(
            _stage_list(
                ctx,
                f"{dim.name}.csv",
                spec,
                (
                    (maps.get(dim.name).apply(v.value, where=f"{dim.name} value {v.value!r}"), v.description)
                    for v in values.values
                ),
                f"{dim.name} value",
            )
        )
    ctx.ledger.record_step(
        ctx.run_id, "ExtractMasterData", "SUCCEEDED", {"imports": imports, "caveats": caveats}
    )
    return {"imports": imports, "caveats": caveats}


# --- posted GL ---------------------------------------------------------------------------------------------


def window_dates(periods: list[str]) -> tuple[date, date]:
    """[first day of the first period, first day after the last period)."""
    if not periods:
        raise BadInputData("periods: the run covers no period")
    first = parse_period(periods[0], field="periods[0]")
    last = parse_period(periods[-1], field=f"periods[{len(periods) - 1}]")
    return first, add_months(last, 1)


def extract_gl(
    ctx: StepContext, company: str, periods: list[str], part: int, continuation: str | None
) -> dict[str, Any]:
    """One resumable slice of a company's posted GL for the run's periods, as a staged JSON-lines part.

    Stops at a page boundary before the Lambda's time runs out and returns ``continuation``; the state
    machine calls again with ``part + 1`` until ``more`` is false.
    """
    company = company.upper()
    if company not in ctx.cfg.dynamics.companies:
        raise BadInputData(
            f"company {company!r} is not one of dynamics.companies {ctx.cfg.dynamics.companies}"
        )
    start, end = window_dates(periods)
    reader = _reader(ctx, [company])
    if ctx.cfg.ledger.balance_sheet == "balances":  # from the fiscal year's opening period on
        lo, hi = reader.balances_window(company, start, end)
    else:
        lo, hi = reader.window(company, start, end)  # whole fiscal periods for fiscal-period companies
    read = reader.gl_lines(lo, hi, continuation=continuation) if hi > lo else None
    key = ctx.key("gl", f"{company}-{part:05d}.jsonl")
    by_currency: dict[str, Decimal] = {}
    with S3StreamWriter(ctx.s3, ctx.env.staging_bucket, key, content_type="application/x-ndjson") as out:
        for line in read or ():
            cur = line.amount_currency or line.currency
            by_currency[cur] = by_currency.get(cur, Decimal(0)) + line.amount
            out.write_text(line.model_dump_json() + "\n")
    staged = _record(ctx, f"ExtractGL:{company}", out.result)
    token = read.continuation if read is not None else None
    more = token is not None
    total = (
        str(next(iter(by_currency.values()))) if len(by_currency) == 1 else ("0" if not by_currency else None)
    )
    ctx.ledger.record_step(
        ctx.run_id, f"ExtractGL:{company}", "SUCCEEDED" if not more else "PARTIAL",
        {"part": part, "lines": staged.rows, "total": total, "by_currency": {c: str(v) for c, v in by_currency.items()},
         "more": more, "window": [lo.isoformat(), hi.isoformat()]}, attempt=part + 1,
    )  # fmt: skip
    return {"company": company, "part": part + 1, "continuation": token, "more": more,
            "lines": staged.rows, "key": key}  # fmt: skip


def _reader(ctx: StepContext, companies: list[str], gl_route: str | None = None) -> DynamicsReader:
    route = gl_route or ctx.cfg.dynamics.gl_route
    assert route in ("auto", "published", "bi")
    return DynamicsReader(
        ctx.dynamics.client,
        companies=companies,
        gl_route=route,  # type: ignore[arg-type]
        published_gl_entity_set=ctx.cfg.dynamics.published_gl_entity_set,
        options=ctx.cfg.ledger,
    )


def _staged_keys(ctx: StepContext, step: str) -> list[str]:
    prefix = ctx.key(step, "x")[:-1]
    keys: list[str] = []
    paginator = ctx.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=ctx.env.staging_bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith(".manifest.json")]
    return sorted(keys)


def _gl_lines(ctx: StepContext) -> Iterator[GLLine]:
    """The staged GL of the run, in F&O codes (blank dimension values become the configured blank members
    with the value maps, see :class:`~d365_anaplan.flows.mapping.ValueMaps`)."""
    for key in _staged_keys(ctx, "gl"):
        for raw in iter_lines(ctx.s3, ctx.env.staging_bucket, key):
            if raw.strip():
                yield GLLine.model_validate_json(raw)


# --- the actuals file --------------------------------------------------------------------------------------


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
        movements = (g for g in _movement_lines(ctx, months) if not g.balance_sheet)
        fo_rows: list[ActualsRow] = aggregate_actuals(movements, **common).rows()
        if balances:
            fo_rows += balance_rows(_gl_lines(ctx), dimensions=m.dimensions, periods=months,
                                    companies=cfg.dynamics.companies, ledger=cfg.ledger)  # fmt: skip
        rows: list[Any] = list(mapped(fo_rows, True))
        refs = collect_references(rows, m.dimensions)
    else:
        refs = collect_references(mapped(line_rows(_gl_lines(ctx), **common), False), m.dimensions)
    ctx.ledger.record_step(
        ctx.run_id, "TransformActuals", "SUCCEEDED", {"grain": m.actuals.grain, "periods": periods}
    )
    controls = _control_totals(ctx, periods, common)
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
        rows_iter: Iterable[Any] = mapped(line_rows(_gl_lines(ctx), **common), False)
    else:
        # A cell loaded by an earlier run that F&O no longer has (a line reclassified to another account or
        # dimension value, a reversal) must be set to zero, or Anaplan keeps the old amount.
        written = [remap.apply_row(r, m.dimensions) if remap else r for r in rows]
        loaded = {_cell_of(r, with_currency): r.label for r in written}
        currency_of = {r.company: r.currency for r in written}
        held = _held_cells(ctx, periods)
        stale = [
            ActualsRow(
                c, a, d, p, Decimal(0), line_count=0, currency=cur or currency_of.get(c, ""), label=label
            )
            for (c, a, d, p, cur), label in sorted(held.items())
            if (c, a, d, p, cur) not in loaded
        ]
        _put_cells(ctx, ctx.key("actuals", "cells.json"), loaded)
        rows_iter = [*rows, *stale]
    key = ctx.key("actuals", "actuals.csv")
    order = import_headers(
        ctx.anaplan, m.actuals.import_action
    )  # columns matched by name, in the import's order
    with S3StreamWriter(ctx.s3, bucket, key) as out:
        totals = write_actuals_csv(
            rows_iter, _Text(out), mapping=m.actuals, dimensions=m.dimensions,
            fiscal_year_start_month=cfg.close_calendar.fiscal_year_start_month, remap=remap or None,
            ledger=cfg.ledger, order=order,
        )  # fmt: skip
    staged = _record(ctx, "PrepareActuals", out.result)
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


# --- control totals ----------------------------------------------------------------------------------------
# Independent of the load: (a) the extracted GL nets to zero per company x period x currency (every voucher
# balances in its ledger); (b) a second path through F&O (the other GL route) gives the same totals per
# company x account x period x currency. Both run before anything is written to Anaplan.

CurrencyItem = tuple[str, str, str, date, Decimal]  # currency, company, account, period, amount


def _movement_lines(ctx: StepContext, months: set[date]) -> Iterator[GLLine]:
    """The staged GL of the run's periods: with balance-sheet balances the extract starts at the fiscal year's
    first day, and the lines before the run's periods only feed the balances."""
    if ctx.cfg.ledger.balance_sheet != "balances":
        yield from _gl_lines(ctx)
        return
    yield from (g for g in _gl_lines(ctx) if in_run(g, months))


def _first_path(ctx: StepContext, common: dict[str, Any]) -> dict[tuple[str, str, str, date], Decimal]:
    out: dict[tuple[str, str, str, date], Decimal] = {}
    for index, line in enumerate(_movement_lines(ctx, set(common["periods"])), start=1):
        row = validate_gl_line(line, index, **common)
        if row is None:
            continue
        k = (row.currency, row.company, row.account, row.period)
        out[k] = out.get(k, Decimal(0)) + row.amount
    return out


def _second_path(
    ctx: StepContext, periods: list[str], common: dict[str, Any]
) -> tuple[str, dict[tuple[str, str, str, date], Decimal]]:
    """Totals read again through the GL route the run did not use (both must be published)."""
    start, end = window_dates(periods)
    used = _reader(ctx, list(ctx.cfg.dynamics.companies)).discover().route.value
    other = "bi" if used == "published" else "published"
    out: dict[tuple[str, str, str, date], Decimal] = {}
    index = 0
    for company in ctx.cfg.dynamics.companies:
        reader = _reader(ctx, [company], other)
        lo, hi = reader.window(company, start, end)
        if hi <= lo:
            continue
        for line in reader.gl_lines(lo, hi):
            index += 1
            row = validate_gl_line(line, index, **common)
            if row is None:
                continue
            k = (row.currency, row.company, row.account, row.period)
            out[k] = out.get(k, Decimal(0)) + row.amount
    return other, out


def _tolerance(ctx: StepContext, currency: str) -> Decimal:
    return ctx.cfg.ledger.tolerance(currency, ctx.cfg.reconciliation_tolerance)


def _control_totals(ctx: StepContext, periods: list[str], common: dict[str, Any]) -> dict[str, Any]:
    opts = ctx.cfg.ledger
    if not opts.require_balanced and opts.second_path == "none":
        return {}
    first = _first_path(ctx, common)
    problems: list[str] = []
    detail: dict[str, Any] = {}
    if (
        opts.require_balanced and opts.currency != "transaction"
    ):  # a voucher balances in the ledger's currencies
        nets: dict[tuple[str, str, date], Decimal] = {}
        for (cur, company, _account, period), amount in first.items():
            nets[(company, cur, period)] = nets.get((company, cur, period), Decimal(0)) + amount
        off = [(k, v) for k, v in sorted(nets.items()) if abs(v) > _tolerance(ctx, k[1])]
        detail["balanced"] = {
            "checked": len(nets),
            "unbalanced": [[c, cur, p.isoformat(), str(v)] for (c, cur, p), v in off[:20]],
        }
        for (company, cur, period), v in off[:10]:
            problems.append(
                f"control total: the extracted GL of {company} for period {period.isoformat()} in {cur} nets to {v}, "
                "not zero (lines are missing or counted twice)"
            )
    if opts.second_path == "other_route":
        route, second = _second_path(ctx, periods, common)
        for cur in sorted({k[0] for k in first} | {k[0] for k in second}):
            left = ((c, a, p, v) for (cu, c, a, p), v in first.items() if cu == cur)
            right = ((c, a, p, v) for (cu, c, a, p), v in second.items() if cu == cur)
            result = reconcile(left, right, tolerance=_tolerance(ctx, cur), left_name="extracted GL",
                               right_name=f"F&O via the {route} route", exact_periods=True)  # fmt: skip
            detail.setdefault("second_path", {})[cur] = result.to_json()
            if not result.ok:
                problems.append(f"[{cur}] " + result.to_text())
    ctx.ledger.record_step(
        ctx.run_id, "ControlTotals", "FAILED" if problems else "SUCCEEDED", {**detail, "problems": problems}
    )
    if problems:
        raise ReconciliationFailed("; ".join(problems))
    return {k: (v if k != "second_path" else {c: r["ok"] for c, r in v.items()}) for k, v in detail.items()}


# --- cells held in Anaplan --------------------------------------------------------------------------------
# The (company, account, dimension values, period, currency) cells Anaplan may hold from our loads are kept
# per run month under state/<connection>/actuals/ (outside runs/, so retention does not expire them), with
# their period labels. The next load of the same month writes zero into every kept cell that F&O no longer
# has. A prepared file's cells join the state before its import runs (an import that ran in a run that failed
# afterwards wrote them too); after a successful load the state is exactly what that load wrote (the zeroed
# cells leave it). The currency is part of a cell only when the file has a currency column.

Cell = tuple[str, str, tuple[str, ...], date, str]


def _cell_of(r: ActualsRow, with_currency: bool) -> Cell:
    return (r.company, r.account, r.dims, r.period, r.currency if with_currency else "")


def _state_key(ctx: StepContext, period: str) -> str:
    return f"state/{ctx.connection}/actuals/cells-{period}.json"


def _put_cells(ctx: StepContext, key: str, cells: dict[Cell, str]) -> None:
    body = json.dumps(
        sorted([c, a, list(d), p.isoformat(), cur, label] for (c, a, d, p, cur), label in cells.items())
    )
    ctx.s3.put_object(Bucket=ctx.env.staging_bucket, Key=key, Body=body.encode("utf-8"))


def _read_cells(ctx: StepContext, key: str) -> dict[Cell, str]:
    try:
        raw = _load_json(ctx, key)
    except ctx.s3.exceptions.NoSuchKey:
        return {}
    out: dict[Cell, str] = {}
    for item in raw:
        c, a, d, p = item[:4]
        text = str(p)
        period = parse_period(text) if len(text) == 7 else date.fromisoformat(text)  # YYYY-MM: older state
        cur = str(item[4]) if len(item) > 4 else ""
        label = str(item[5]) if len(item) > 5 else ""
        out[(str(c), str(a), tuple(str(x) for x in d), period, cur)] = label
    return out


def _held_cells(ctx: StepContext, periods: list[str]) -> dict[Cell, str]:
    held: dict[Cell, str] = {}
    for p in periods:
        held.update(_read_cells(ctx, _state_key(ctx, p)))
    return held


def hold_cells(ctx: StepContext, periods: list[str], cells: dict[Cell, str]) -> None:
    """Before the import: add ``cells`` to the held state of their run months (kept even if the run fails)."""
    for p in periods:
        month = parse_period(p, field="periods")
        key = _state_key(ctx, p)
        ours = {c: v for c, v in cells.items() if run_month(c[3]) == month}
        held = _read_cells(ctx, key)
        if not ours.items() <= held.items():
            _put_cells(ctx, key, {**held, **ours})


def remember_loaded_cells(ctx: StepContext, periods: list[str]) -> int:
    """After a successful load: the run's cells become what Anaplan holds for its months."""
    cells = _read_cells(ctx, ctx.key("actuals", "cells.json"))
    for p in periods:
        month = parse_period(p, field="periods")
        _put_cells(ctx, _state_key(ctx, p), {c: v for c, v in cells.items() if run_month(c[3]) == month})
    return len(cells)


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


def _load_json(ctx: StepContext, key: str) -> Any:
    body = ctx.s3.get_object(Bucket=ctx.env.staging_bucket, Key=key)["Body"]
    try:
        return json.loads(body.read())
    finally:
        body.close()


# --- reconciliation ----------------------------------------------------------------------------------------


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


def reconcile_actuals(
    ctx: StepContext,
    totals_key: str,
    import_counts: dict[str, Any],
    file_rows: int,
    readback_key: str | None,
    periods: list[str],
) -> dict[str, Any]:
    """Anaplan must hold what F&O posted: the import took every row; with a read-back export, every amount
    per company, account and period of the run matches to the cent, per currency (within the currency's
    tolerance). The read-back covers the whole module, so it is cut to the run's companies and periods first."""
    fo = _load_json(ctx, totals_key)
    problems: list[str] = []
    failed = int(import_counts.get("failed", 0))
    if failed:
        problems.append(f"the actuals import rejected {failed} row(s)")
    total = int(import_counts.get("total", 0))
    if total and total != file_rows:
        problems.append(f"the actuals import processed {total} row(s), the file has {file_rows}")
    detail: dict[str, Any] = {"rows": file_rows, "fo_total": fo["total"], "by_currency": fo.get("by_currency", {}),
                              "counts": import_counts}  # fmt: skip
    matched = 0
    if readback_key:
        header = _readback_header(ctx, readback_key)
        with_dims = all(d.column in header for d in ctx.cfg.mapping.dimensions)
        detail["readback_level"] = "dimensions" if with_dims else "account"
        cells = [
            (
                str(cur),
                str(c),
                _cell_label(str(a), d) if with_dims else str(a),
                date.fromisoformat(p),
                str(lab),
                Decimal(v),
            )
            for cur, c, a, d, p, lab, v in fo["cells"]
        ]
        places = {(c, lab): p for _cur, c, _a, p, lab, _v in cells if lab}
        currencies = {c: cur for cur, c, _a, _p, _l, _v in cells}
        months = {parse_period(p, field="periods") for p in periods}
        maps = step_value_maps(ctx)  # the file holds Anaplan entity codes
        companies = {maps.company.apply(c, where="dynamics.companies") for c in ctx.cfg.dynamics.companies}
        held = [i for i in _anaplan_items(ctx, readback_key, places, currencies, with_dims)
                if run_month(i[3]) in months and i[1] in companies]  # fmt: skip
        detail["reconciliation"] = {}
        for cur in sorted({c[0] for c in cells} | {h[0] for h in held}):
            result = reconcile(
                ((c, a, p, v) for cu, c, a, p, _l, v in cells if cu == cur),
                ((c, a, p, v) for cu, c, a, p, v in held if cu == cur),
                tolerance=_tolerance(ctx, cur), left_name=f"F&O [{cur}]", right_name=f"Anaplan [{cur}]",
                exact_periods=True,
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
