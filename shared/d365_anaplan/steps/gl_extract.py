"""Posted GL to staged parts: the window of a run's periods, one reader per company, the staged keys."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

from d365_anaplan.dynamics.reader import DynamicsReader
from d365_anaplan.errors import BadInputData
from d365_anaplan.flows.calendar import add_months, parse_period
from d365_anaplan.flows.records import GLLine
from d365_anaplan.staging import S3StreamWriter, iter_lines
from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.gl_package import extract_gl_package, gl_step, is_package_token, use_package
from d365_anaplan.steps.staged_io import record_staged


def window_dates(periods: list[str]) -> tuple[date, date]:
    """[first day of the first period, first day after the last period)."""
    if not periods:
        raise BadInputData("periods: the run covers no period")
    first = parse_period(periods[0], field="periods[0]")
    last = parse_period(periods[-1], field=f"periods[{len(periods) - 1}]")
    return first, add_months(last, 1)


def extract_gl(
    ctx: StepContext,
    company: str,
    window: tuple[date, date],
    slice_: str,
    part: int,
    continuation: str | None,
) -> dict[str, Any]:
    """One resumable slice of a company's posted GL in ``window`` (one item of the extraction plan, see
    ``steps/fanout.py``), as a staged JSON-lines part.

    Stops at a page boundary before the Lambda's time runs out and returns ``continuation``; the state
    machine calls again with ``part + 1`` until ``more`` is false.
    """
    company = company.upper()
    if company not in ctx.cfg.dynamics.companies:
        raise BadInputData(
            f"company {company!r} is not one of dynamics.companies {ctx.cfg.dynamics.companies}"
        )
    lo, hi = window
    if hi < lo:
        raise BadInputData(f"ExtractGL {company} {slice_}: window end {hi} is before its start {lo}")
    reader = company_reader(ctx, [company])
    if hi > lo and (
        is_package_token(continuation) or (continuation is None and use_package(ctx, reader, lo, hi))
    ):
        return extract_gl_package(ctx, reader, company, lo, hi, slice_, part, continuation)
    read = reader.gl_lines(lo, hi, continuation=continuation) if hi > lo else None
    key = ctx.key("gl", f"{company}-{slice_}-{part:05d}.jsonl")
    step = gl_step(company, slice_)
    by_currency: dict[str, Decimal] = {}
    with S3StreamWriter(ctx.s3, ctx.env.staging_bucket, key, content_type="application/x-ndjson") as out:
        for line in read or ():
            cur = line.amount_currency or line.currency
            by_currency[cur] = by_currency.get(cur, Decimal(0)) + line.amount
            out.write_text(line.model_dump_json() + "\n")
    staged = record_staged(ctx, step, out.result)
    token = read.continuation if read is not None else None
    more = token is not None
    total = (
        str(next(iter(by_currency.values()))) if len(by_currency) == 1 else ("0" if not by_currency else None)
    )
    ctx.ledger.record_step(
        ctx.run_id, gl_step(company, slice_), "SUCCEEDED" if not more else "PARTIAL",
        {"part": part, "lines": staged.rows, "total": total, "by_currency": {c: str(v) for c, v in by_currency.items()},
         "more": more, "window": [lo.isoformat(), hi.isoformat()]}, attempt=part + 1,
    )  # fmt: skip
    return {"company": company, "part": part + 1, "continuation": token, "more": more,
            "pending": False, "wait": 0, "lines": staged.rows, "key": key}  # fmt: skip


def company_reader(ctx: StepContext, companies: list[str], gl_route: str | None = None) -> DynamicsReader:
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


def staged_gl_lines(ctx: StepContext) -> Iterator[GLLine]:
    """The staged GL of the run, in F&O codes (blank dimension values become the configured blank members
    with the value maps, see :class:`~d365_anaplan.flows.mapping.ValueMaps`)."""
    for key in _staged_keys(ctx, "gl"):
        for raw in iter_lines(ctx.s3, ctx.env.staging_bucket, key):
            if raw.strip():
                yield GLLine.model_validate_json(raw)
