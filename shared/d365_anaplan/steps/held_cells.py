"""The cells Anaplan holds from our loads, kept per run month so a later load zeroes what F&O no longer has."""

from __future__ import annotations

import json
from datetime import date

from d365_anaplan.flows.actuals import ActualsRow, run_month
from d365_anaplan.flows.calendar import parse_period
from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.staged_io import load_json

# The (company, account, dimension values, period, currency) cells Anaplan may hold from our loads are kept
# per run month under state/<connection>/actuals/ (outside runs/, so retention does not expire them), with
# their period labels. The next load of the same month writes zero into every kept cell that F&O no longer
# has. A prepared file's cells join the state before its import runs (an import that ran in a run that failed
# afterwards wrote them too); after a successful load the state is exactly what that load wrote (the zeroed
# cells leave it). The currency is part of a cell only when the file has a currency column.

Cell = tuple[str, str, tuple[str, ...], date, str]


def cell_key_of(r: ActualsRow, with_currency: bool) -> Cell:
    return (r.company, r.account, r.dims, r.period, r.currency if with_currency else "")


def _state_key(ctx: StepContext, period: str) -> str:
    return f"state/{ctx.connection}/actuals/cells-{period}.json"


def put_cells(ctx: StepContext, key: str, cells: dict[Cell, str]) -> None:
    body = json.dumps(
        sorted([c, a, list(d), p.isoformat(), cur, label] for (c, a, d, p, cur), label in cells.items())
    )
    ctx.s3.put_object(Bucket=ctx.env.staging_bucket, Key=key, Body=body.encode("utf-8"))


def _read_cells(ctx: StepContext, key: str) -> dict[Cell, str]:
    try:
        raw = load_json(ctx, key)
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


def held_cells_of(ctx: StepContext, periods: list[str]) -> dict[Cell, str]:
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
            put_cells(ctx, key, {**held, **ours})


def remember_loaded_cells(ctx: StepContext, periods: list[str]) -> int:
    """After a successful load: the run's cells become what Anaplan holds for its months."""
    cells = _read_cells(ctx, ctx.key("actuals", "cells.json"))
    for p in periods:
        month = parse_period(p, field="periods")
        put_cells(ctx, _state_key(ctx, p), {c: v for c, v in cells.items() if run_month(c[3]) == month})
    return len(cells)
