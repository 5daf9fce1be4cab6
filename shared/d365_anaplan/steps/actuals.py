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
from d365_anaplan.errors import BadInputData, ReconciliationFailed
from d365_anaplan.flows.actuals import (
    ActualsRow,
    ActualsTotals,
    aggregate_actuals,
    line_rows,
    write_actuals_csv,
)
from d365_anaplan.flows.alignment import (
    ACCOUNT,
    check_alignment,
    collect_references,
    resolve_actuals_alignment,
)
from d365_anaplan.flows.calendar import add_months, parse_period, period_key
from d365_anaplan.flows.money import parse_amount
from d365_anaplan.flows.periods import parse_period_label
from d365_anaplan.flows.reconcile import reconcile
from d365_anaplan.flows.records import GLLine
from d365_anaplan.flows.textsafe import check_code, csv_writer, neutralise_text
from d365_anaplan.staging import S3StreamWriter, StagedFile, iter_lines
from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.lease import LeaseRef, hold_lease


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
    ctx: StepContext, name: str, spec: ListImport, rows: Iterable[tuple[str, str]], what: str
) -> dict[str, Any]:
    key = ctx.key("master", name)
    count = 0
    seen: set[str] = set()
    with S3StreamWriter(ctx.s3, ctx.env.staging_bucket, key) as out:
        w = csv_writer(_Text(out))
        w.writerow([spec.code_column, spec.name_column])
        for code, label in rows:
            check_code(code, where=f"{what} {code!r}", field="code")
            if code in seen:
                continue
            seen.add(code)
            w.writerow([code, neutralise_text(label)])
            count += 1
    _record(ctx, "ExtractMasterData", out.result)
    return {"action": spec.import_action, "key": key, "rows": count}


def extract_master_data(ctx: StepContext) -> dict[str, Any]:
    """Main accounts, legal entities and the configured dimensions' values, one list file per import."""
    m = ctx.cfg.mapping
    reader = ctx.dynamics.reader
    imports = [
        _stage_list(
            ctx,
            "accounts.csv",
            m.accounts,
            ((a.account, a.name) for a in reader.main_accounts()),
            "MainAccounts",
        )
    ]
    if m.companies is not None:
        wanted = set(ctx.cfg.dynamics.companies)
        entities = ((e.company, e.name) for e in reader.legal_entities() if e.company.upper() in wanted)
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
                ((v.value, v.description) for v in values.values),
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
    conn = ctx.dynamics
    reader = DynamicsReader(
        conn.client,
        companies=[company],
        gl_route=ctx.cfg.dynamics.gl_route,
        published_gl_entity_set=ctx.cfg.dynamics.published_gl_entity_set,
    )
    read = reader.gl_lines(start, end, continuation=continuation)
    key = ctx.key("gl", f"{company}-{part:05d}.jsonl")
    total = Decimal(0)
    with S3StreamWriter(ctx.s3, ctx.env.staging_bucket, key, content_type="application/x-ndjson") as out:
        for line in read:
            total += line.amount
            out.write_text(line.model_dump_json() + "\n")
    staged = _record(ctx, f"ExtractGL:{company}", out.result)
    more = read.continuation is not None
    ctx.ledger.record_step(
        ctx.run_id, f"ExtractGL:{company}", "SUCCEEDED" if not more else "PARTIAL",
        {"part": part, "lines": staged.rows, "total": str(total), "more": more}, attempt=part + 1,
    )  # fmt: skip
    return {"company": company, "part": part + 1, "continuation": read.continuation, "more": more,
            "lines": staged.rows, "key": key}  # fmt: skip


def _staged_keys(ctx: StepContext, step: str) -> list[str]:
    prefix = ctx.key(step, "x")[:-1]
    keys: list[str] = []
    paginator = ctx.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=ctx.env.staging_bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith(".manifest.json")]
    return sorted(keys)


def _gl_lines(ctx: StepContext) -> Iterator[GLLine]:
    """The staged GL of the run, with blank dimension values replaced by the configured blank members."""
    blanks = {d.name: d.blank_member for d in ctx.cfg.mapping.dimensions if d.blank_member}
    for key in _staged_keys(ctx, "gl"):
        for raw in iter_lines(ctx.s3, ctx.env.staging_bucket, key):
            if not raw.strip():
                continue
            line = GLLine.model_validate_json(raw)
            missing = {name: member for name, member in blanks.items() if not line.dimensions.get(name)}
            yield line.model_copy(update={"dimensions": {**line.dimensions, **missing}}) if missing else line


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
    """Transform the staged GL to the actuals import's columns, check alignment, write the file.

    Monthly grain aggregates (the aggregate is small); line grain streams the staged GL twice (references,
    then rows). Writes ``actuals/actuals.csv``, ``actuals/fo_totals.json`` (per company/account/period, for
    reconciliation) and ``actuals/alignment.json``. Unless ``dry_run``, the file's cells join the held-cell
    state before the import can write them (see :func:`hold_cells`). The model lease is renewed and verified
    before the Anaplan lists are read (the held-cell state is kept under it).
    """
    cfg = ctx.cfg
    m = cfg.mapping
    months = {parse_period(p, field="periods") for p in periods}
    common: dict[str, Any] = {
        "dimensions": m.dimensions,
        "companies": cfg.dynamics.companies,
        "periods": months,
    }
    if m.actuals.grain == "monthly":
        rows: list[Any] = aggregate_actuals(_gl_lines(ctx), **common).rows()
        refs = collect_references(rows, m.dimensions)
    else:
        refs = collect_references(line_rows(_gl_lines(ctx), **common), m.dimensions)
    ctx.ledger.record_step(
        ctx.run_id, "TransformActuals", "SUCCEEDED", {"grain": m.actuals.grain, "periods": periods}
    )
    hold_lease(ctx, lease, "PrepareActuals: read the Anaplan lists")
    members, unchecked = _members(ctx)
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
    if m.actuals.grain == "line":
        rows_iter: Iterable[Any] = line_rows(_gl_lines(ctx), **common)
    else:
        # A cell loaded by an earlier run that F&O no longer has (a line reclassified to another account or
        # dimension value, a reversal) must be set to zero, or Anaplan keeps the old amount.
        written = (remap.apply_row(r, m.dimensions) if remap else r for r in rows)
        loaded = {(r.company, r.account, r.dims, r.period) for r in written}
        stale = [
            ActualsRow(c, a, d, p, Decimal(0), line_count=0)
            for c, a, d, p in sorted(_held_cells(ctx, periods) - loaded)
        ]
        _put_cells(ctx, ctx.key("actuals", "cells.json"), loaded)
        rows_iter = [*rows, *stale]
    key = ctx.key("actuals", "actuals.csv")
    with S3StreamWriter(ctx.s3, bucket, key) as out:
        totals = write_actuals_csv(
            rows_iter, _Text(out), mapping=m.actuals, dimensions=m.dimensions,
            fiscal_year_start_month=cfg.close_calendar.fiscal_year_start_month, remap=remap or None,
        )  # fmt: skip
    staged = _record(ctx, "PrepareActuals", out.result)
    if m.actuals.grain == "monthly" and not dry_run:
        hold_cells(ctx, periods, loaded)
    totals_key = ctx.key("actuals", "fo_totals.json")
    ctx.s3.put_object(Bucket=bucket, Key=totals_key, Body=json.dumps(_totals_json(totals)).encode("utf-8"))
    summary = totals.summary()
    ctx.ledger.record_step(ctx.run_id, "PrepareActuals", "SUCCEEDED",
                           {"key": key, "rows": totals.row_count, "lines": totals.line_count, "total": summary["total"],
                            "zeroed_cells": len(stale), "remapped": remap.to_json() if remap else {}})  # fmt: skip
    return {"action": m.actuals.import_action, "key": key, "rows": totals.row_count, "lines": totals.line_count,
            "total": summary["total"], "totals_key": totals_key, "alignment_key": report_key,
            "bytes": staged.bytes}  # fmt: skip


# --- cells held in Anaplan --------------------------------------------------------------------------------
# The (company, account, dimension values, period) cells Anaplan may hold from our loads are kept per period
# under state/<connection>/actuals/ (outside runs/, so retention does not expire them). The next load of the
# same period writes zero into every kept cell that F&O no longer has. A prepared file's cells join the state
# before its import runs (an import that ran in a run that failed afterwards wrote them too); after a
# successful load the state is exactly what that load wrote (the zeroed cells leave it).

Cell = tuple[str, str, tuple[str, ...], date]


def _state_key(ctx: StepContext, period: str) -> str:
    return f"state/{ctx.connection}/actuals/cells-{period}.json"


def _put_cells(ctx: StepContext, key: str, cells: Iterable[Cell]) -> None:
    body = json.dumps(sorted([c, a, list(d), period_key(p)] for c, a, d, p in cells))
    ctx.s3.put_object(Bucket=ctx.env.staging_bucket, Key=key, Body=body.encode("utf-8"))


def _read_cells(ctx: StepContext, key: str) -> set[Cell]:
    try:
        raw = _load_json(ctx, key)
    except ctx.s3.exceptions.NoSuchKey:
        return set()
    return {(str(c), str(a), tuple(str(x) for x in d), parse_period(str(p))) for c, a, d, p in raw}


def _held_cells(ctx: StepContext, periods: list[str]) -> set[Cell]:
    held: set[Cell] = set()
    for p in periods:
        held |= _read_cells(ctx, _state_key(ctx, p))
    return held


def hold_cells(ctx: StepContext, periods: list[str], cells: set[Cell]) -> None:
    """Before the import: add ``cells`` to the held state of their periods (kept even if the run fails)."""
    for p in periods:
        month = parse_period(p, field="periods")
        key = _state_key(ctx, p)
        ours = {c for c in cells if c[3] == month}
        held = _read_cells(ctx, key)
        if not ours <= held:
            _put_cells(ctx, key, held | ours)


def remember_loaded_cells(ctx: StepContext, periods: list[str]) -> int:
    """After a successful load: the run's cells become what Anaplan holds for its periods."""
    cells = _read_cells(ctx, ctx.key("actuals", "cells.json"))
    for p in periods:
        month = parse_period(p, field="periods")
        _put_cells(ctx, _state_key(ctx, p), (c for c in cells if c[3] == month))
    return len(cells)


def _totals_json(totals: ActualsTotals) -> dict[str, Any]:
    return {
        "total": str(totals.total),
        "lines": totals.line_count,
        "rows": totals.row_count,
        "by_account": [[c, a, period_key(p), str(v)] for c, a, p, v in totals.items()],
    }


def _load_json(ctx: StepContext, key: str) -> Any:
    body = ctx.s3.get_object(Bucket=ctx.env.staging_bucket, Key=key)["Body"]
    try:
        return json.loads(body.read())
    finally:
        body.close()


# --- reconciliation ----------------------------------------------------------------------------------------


def _anaplan_items(ctx: StepContext, key: str) -> Iterator[tuple[str, str, date, Decimal]]:
    """(company, account, period, amount) of an export of the actuals module (the import's columns)."""
    cfg = ctx.cfg
    a = cfg.mapping.actuals
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
        period = parse_period_label(rec[idx[a.period_column]], a.period_format, fiscal)
        amount = parse_amount(rec[idx[a.amount_column]], decimals=6, where=where)
        yield rec[idx[a.company_column]], rec[idx[a.account_column]], period, amount


def reconcile_actuals(
    ctx: StepContext,
    totals_key: str,
    import_counts: dict[str, Any],
    file_rows: int,
    readback_key: str | None,
    periods: list[str],
) -> dict[str, Any]:
    """Anaplan must hold what F&O posted: the import took every row; with a read-back export, every amount
    per company, account and period of the run matches to the cent (within ``reconciliation_tolerance``).
    The read-back covers the whole module, so it is cut to the run's companies and periods first."""
    fo = _load_json(ctx, totals_key)
    problems: list[str] = []
    failed = int(import_counts.get("failed", 0))
    if failed:
        problems.append(f"the actuals import rejected {failed} row(s)")
    total = int(import_counts.get("total", 0))
    if total and total != file_rows:
        problems.append(f"the actuals import processed {total} row(s), the file has {file_rows}")
    detail: dict[str, Any] = {"rows": file_rows, "fo_total": fo["total"], "counts": import_counts}
    if readback_key:
        fo_items = ((c, a, parse_period(p), Decimal(v)) for c, a, p, v in fo["by_account"])
        months = {parse_period(p, field="periods") for p in periods}
        companies = set(ctx.cfg.dynamics.companies)
        held = (i for i in _anaplan_items(ctx, readback_key) if i[2] in months and i[0] in companies)
        result = reconcile(fo_items, held, tolerance=ctx.cfg.reconciliation_tolerance,
                           left_name="F&O", right_name="Anaplan")  # fmt: skip
        detail["reconciliation"] = result.to_json()
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
    return {"ok": True, "fo_total": fo["total"], "rows": file_rows,
            "compared": detail.get("reconciliation", {}).get("matched_accounts", 0)}  # fmt: skip
