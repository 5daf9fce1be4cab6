"""The GL extraction plan: one item per company and calendar month of its extraction window (one item for the
whole window of a company whose GL travels as a data-management package: one export per company).

``PrepareExtract`` computes each company's AccountingDate window exactly as the extraction always did (whole
fiscal periods for fiscal-period companies, from the fiscal year's first day with balance-sheet balances)
and cuts it at month boundaries: the items' windows are disjoint and together are the company's window, so
the staged GL is the same lines, in more parts. Few items travel in the state (inline Map); from
``dynamics.distributed_map_items`` on they are written as a JSON array to S3 for a Distributed Map's
``ItemReader``. The Map's concurrency is ``dynamics.max_concurrency``.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from d365_anaplan.flows.calendar import add_months
from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.gl_extract import company_reader, window_dates
from d365_anaplan.steps.gl_package import use_package

MANIFEST = "items.json"


def month_slices(lo: date, hi: date) -> list[tuple[date, date]]:
    """[lo, hi) cut at the first day of each month; one empty slice ``(lo, lo)`` when the window is empty."""
    if hi <= lo:
        return [(lo, lo)]
    out: list[tuple[date, date]] = []
    a = lo
    while a < hi:
        b = min(hi, add_months(a.replace(day=1), 1))
        out.append((a, b))
        a = b
    return out


def extract_items(ctx: StepContext, periods: list[str]) -> list[dict[str, str]]:
    """Company x month items of the run's extraction windows, in company then date order."""
    start, end = window_dates(periods)
    reader = ctx.dynamics.reader
    items: list[dict[str, str]] = []
    for company in ctx.cfg.dynamics.companies:
        if ctx.cfg.ledger.balance_sheet == "balances":
            lo, hi = reader.balances_window(company, start, end)
        else:
            lo, hi = reader.window(company, start, end)
        if hi > lo and use_package(
            ctx, company_reader(ctx, [company]), lo, hi
        ):  # one export per company: one item, the whole window
            last = date.fromordinal(hi.toordinal() - 1)
            items.append({"company": company, "slice": f"{lo:%Y-%m}..{last:%Y-%m}", "start": lo.isoformat(),
                          "end": hi.isoformat()})  # fmt: skip
            continue
        for a, b in month_slices(lo, hi):
            items.append(
                {"company": company, "slice": f"{a:%Y-%m}", "start": a.isoformat(), "end": b.isoformat()}
            )
    return items


def prepare_extract(ctx: StepContext, periods: list[str]) -> dict[str, Any]:
    """The extraction plan: the items (inline) or the S3 manifest holding them (distributed)."""
    items = extract_items(ctx, periods)
    d = ctx.cfg.dynamics
    distributed = len(items) >= d.distributed_map_items
    out: dict[str, Any] = {
        "count": len(items),
        "distributed": distributed,
        "max_concurrency": min(d.max_concurrency, len(items)),
        "bucket": ctx.env.staging_bucket,
        "manifest": None,
        "items": [] if distributed else items,
    }
    if distributed:
        key = ctx.key("extract", MANIFEST)
        body = json.dumps(items, separators=(",", ":")).encode("utf-8")
        ctx.s3.put_object(Bucket=ctx.env.staging_bucket, Key=key, Body=body, ContentType="application/json")
        out["manifest"] = key
    detail = {k: v for k, v in out.items() if k not in ("items", "bucket")}
    ctx.ledger.record_step(ctx.run_id, "PrepareExtract", "SUCCEEDED", detail)
    return out
