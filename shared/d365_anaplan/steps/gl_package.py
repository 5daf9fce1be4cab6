"""Posted GL through a data-management package (``dynamics.gl_transport: package``, or ``auto`` above
``dynamics.package.package_threshold_lines`` lines counted with ``$count``).

The ExtractGL slice loop of the state machine drives it; every invocation does one step and returns:

1. **start**: ``ExportToPackage`` of the data project for the legal entity, under an execution id derived
   from the run and company (a retried invocation finds its export by asking its status first; an id whose
   export failed is passed over, so a redrive exports again). Returns *pending* with a wait.
2. **poll**: ``GetExecutionSummaryStatus``; while NotRun/Executing it returns *pending* again with a longer
   wait (the state machine's Wait state, never a sleep here). Failed, PartiallySucceeded or Canceled is
   :class:`~d365_anaplan.errors.DynamicsPackageFailed` with F&O's messages (not retried). Succeeded:
   ``GetExportedPackageUrl`` and the package is streamed from the blob host into S3; a refused (expired)
   SAS URL is requested afresh once, then :class:`~d365_anaplan.errors.DynamicsPackageUrlExpired`.
3. **read**: the entity's CSV is read from the staged zip (ranged reads) and written as the same JSON-lines
   parts the OData route writes, a batch of rows at a time, stopping before the Lambda's time runs out and
   resuming after the rows already staged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from itertools import islice
from typing import Any

from d365_anaplan.dynamics.dmf import BlobTransfer, ExecutionStatus, PackageApi, PackageUrlRefused
from d365_anaplan.dynamics.package import columns_of, entity_rows, open_package
from d365_anaplan.dynamics.reader import DynamicsReader
from d365_anaplan.errors import (
    BadInputData,
    DynamicsPackageFailed,
    DynamicsPackageTimeout,
    DynamicsPackageUrlExpired,
)
from d365_anaplan.staging import S3StreamWriter
from d365_anaplan.steps.context import StepContext

TOKEN_PREFIX = "pkg."  # noqa: S105 - marks a package continuation, no credential
_ROWS_PER_BATCH = 5_000
_MAX_EXPORTS = 5  # execution ids tried per run and company (each a failed export passed over)
MAX_WAIT = 300


def is_package_token(token: str | None) -> bool:
    return token is not None and token.startswith(TOKEN_PREFIX)


def encode_token(state: dict[str, Any]) -> str:
    raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii")


def decode_token(token: str) -> dict[str, Any]:
    try:
        state = json.loads(base64.urlsafe_b64decode(token[len(TOKEN_PREFIX) :].encode("ascii")))
    except (ValueError, UnicodeError):
        state = None
    if not isinstance(state, dict) or state.get("v") != 1:
        raise BadInputData("continuation token: not a package token issued by this connector")
    return state


def next_wait(first: int, polls: int) -> int:
    """The Wait before poll ``polls`` + 1: ``first`` seconds, doubling, at most five minutes."""
    return int(min(MAX_WAIT, first * 2 ** min(polls, 8)))


def use_package(ctx: StepContext, reader: DynamicsReader, lo: date, hi: date) -> bool:
    """Whether a fresh read of the window goes through a package (``gl_transport`` and the $count)."""
    transport = ctx.cfg.dynamics.gl_transport
    if transport == "auto":
        return hi > lo and reader.count_gl_lines(lo, hi) >= ctx.cfg.dynamics.package.package_threshold_lines
    return transport == "package"


def blob_transfer(ctx: StepContext) -> BlobTransfer:
    """The connection's only way to the package blob host."""
    d = ctx.cfg.dynamics
    assert d.package.blob_host is not None  # checked with the configuration
    return BlobTransfer(
        d.package.blob_host,
        ca_bundle=ctx.cfg.tls.ca_bundle,
        timeout=d.timeout_seconds,
        max_bytes=d.package.max_package_bytes,
    )


def _execution_id(ctx: StepContext, company: str, n: int) -> str:
    digest = hashlib.sha256(f"{ctx.connection}|{ctx.run_id}|{company}".encode()).hexdigest()[:20]
    return f"anaplan-gl-{company.lower()}-{digest}-{n}"


def gl_step(company: str, slice_: str) -> str:
    """The ledger step name of one extraction item: ``ExtractGL:<company>:<slice>``."""
    return f"ExtractGL:{company}:{slice_}"


def extract_gl_package(
    ctx: StepContext,
    reader: DynamicsReader,
    company: str,
    lo: date,
    hi: date,
    slice_: str,
    part: int,
    token: str | None,
) -> dict[str, Any]:
    """One step of the package route for ``company`` and the AccountingDate window [lo, hi) of the extraction
    item ``slice_`` (items of one company share the run's export of that company)."""
    window = [lo.isoformat(), hi.isoformat()]
    state = decode_token(token) if token else None
    if state is not None and (state.get("company") != company or state.get("window") != window):
        raise BadInputData("continuation token: it belongs to another company or window")
    if state is not None:
        _check_token(ctx, company, slice_, state)
    api, blob = PackageApi(ctx.dynamics.client), blob_transfer(ctx)
    opts = ctx.cfg.dynamics.package
    if state is None:
        state = {**_start(ctx, api, company, window), "slice": slice_}
    if state["phase"] == "poll":
        status = api.status(state["id"])
        if status in (ExecutionStatus.UNKNOWN, *(s for s in ExecutionStatus if s.running)):
            if time.time() - state["started"] > opts.max_wait_seconds:
                raise DynamicsPackageTimeout(
                    f"F&O data project {opts.export_project!r} export {state['id']} for {company} was still "
                    f"{status.value} after {opts.max_wait_seconds} s (dynamics.package.max_wait_seconds)"
                )
            return _pending(ctx, company, part, state)
        if status.failed:
            messages = api.errors(state["id"])
            raise DynamicsPackageFailed(
                f"F&O data project {opts.export_project!r} export {state['id']} for {company} ended "
                f"{status.value}: {'; '.join(messages) or 'F&O gave no message (see the execution in Data management)'}"
            )
        _download(ctx, api, blob, state)
        state = {**state, "phase": "read", "rows": 0}
    return _read(ctx, reader, part, state)


def _start(ctx: StepContext, api: PackageApi, company: str, window: list[str]) -> dict[str, Any]:
    opts = ctx.cfg.dynamics.package
    assert opts.export_project is not None
    for n in range(1, _MAX_EXPORTS + 1):
        execution_id = _execution_id(ctx, company, n)
        status = api.known_status(execution_id)
        if status is ExecutionStatus.UNKNOWN:  # never started: start it
            api.export_to_package(opts.export_project, f"{execution_id}.zip", execution_id, company)
        elif status.failed:
            continue  # an earlier attempt of this run failed: export again under the next id
        return {"v": 1, "phase": "poll", "id": execution_id, "company": company, "window": window,
                "started": time.time(), "polls": 0}  # fmt: skip
    raise DynamicsPackageFailed(
        f"F&O data project {opts.export_project!r}: {_MAX_EXPORTS} exports for {company} in this run failed"
    )


def _check_token(ctx: StepContext, company: str, slice_: str, state: dict[str, Any]) -> None:
    """A token steers which export is polled and which staged lines are written: its ``slice`` must be the
    event's and its ``id`` one of the execution ids this run derives for the company (nothing else is asked of
    F&O or written under this slice's name)."""
    if state.get("slice") != slice_:
        raise BadInputData(f"continuation token: field 'slice' is not this item's slice {slice_!r}")
    ids = {_execution_id(ctx, company, n) for n in range(1, _MAX_EXPORTS + 1)}
    if state.get("id") not in ids:
        raise BadInputData(
            f"continuation token: field 'id' is not an export execution id of this run for {company}"
        )
    if state.get("phase") not in ("poll", "read"):
        raise BadInputData("continuation token: field 'phase' is neither 'poll' nor 'read'")


def _pending(ctx: StepContext, company: str, part: int, state: dict[str, Any]) -> dict[str, Any]:
    wait = next_wait(ctx.cfg.dynamics.package.poll_seconds, state["polls"])
    state = {**state, "polls": state["polls"] + 1}
    return {"company": company, "part": part, "continuation": encode_token(state), "more": True,
            "pending": True, "wait": wait, "lines": 0, "key": None}  # fmt: skip


def _package_key(ctx: StepContext, company: str) -> str:
    return ctx.key("glpackage", f"{company}.zip")


def _download(ctx: StepContext, api: PackageApi, blob: BlobTransfer, state: dict[str, Any]) -> None:
    key = _package_key(ctx, state["company"])
    what = f"package of export {state['id']}"
    for attempt in (1, 2):
        url = api.exported_package_url(state["id"])
        try:
            blob.download_to_s3(url, ctx.s3, ctx.env.staging_bucket, key, what=what)
        except PackageUrlRefused as exc:
            if attempt == 2:
                raise DynamicsPackageUrlExpired(
                    f"{exc}; a fresh URL from GetExportedPackageUrl was refused too (exported packages are "
                    "kept 7 days: export again by redriving the run)"
                ) from None
            continue
        return


def _read(ctx: StepContext, reader: DynamicsReader, part: int, state: dict[str, Any]) -> dict[str, Any]:
    """One part of the staged package's lines (the company and window of ``state``)."""
    company = state["company"]
    lo, hi = (date.fromisoformat(d) for d in state["window"])
    opts = ctx.cfg.dynamics.package
    slice_ = str(state["slice"])
    key = ctx.key("gl", f"{company}-{slice_}-{part:05d}.jsonl")
    done = int(state["rows"])
    by_currency: dict[str, Decimal] = {}
    more = False
    what = f"package of export {state['id']}"
    with (
        open_package(
            ctx.s3,
            ctx.env.staging_bucket,
            _package_key(ctx, company),
            max_member_bytes=opts.max_package_bytes,
        ) as zf,
        S3StreamWriter(ctx.s3, ctx.env.staging_bucket, key, content_type="application/x-ndjson") as out,
    ):
        columns = columns_of(zf, opts.export_entity)
        rows: Iterator[dict[str, Any]] = islice(
            entity_rows(zf, opts.export_entity, slash_dates=opts.slash_dates), done, None
        )
        while batch := list(islice(rows, _ROWS_PER_BATCH)):
            for line in reader.package_lines(batch, columns, lo, hi, what):
                cur = line.amount_currency or line.currency
                by_currency[cur] = by_currency.get(cur, Decimal(0)) + line.amount
                out.write_text(line.model_dump_json() + "\n")
            done += len(batch)
            if len(batch) == _ROWS_PER_BATCH and ctx.dynamics.client.should_stop():
                more = True
                break
    staged = out.result
    assert staged is not None
    ctx.ledger.record_file(
        ctx.run_id,
        gl_step(company, slice_),
        staged.bucket,
        staged.key,
        staged.bytes,
        staged.rows,
        staged.sha256,
    )
    total = (
        str(next(iter(by_currency.values()))) if len(by_currency) == 1 else ("0" if not by_currency else None)
    )
    ctx.ledger.record_step(
        ctx.run_id, gl_step(company, slice_), "SUCCEEDED" if not more else "PARTIAL",
        {"part": part, "lines": staged.rows, "total": total, "by_currency": {c: str(v) for c, v in by_currency.items()},
         "more": more, "window": [lo.isoformat(), hi.isoformat()], "transport": "package",
         "execution_id": state["id"], "rows_read": done}, attempt=part + 1,
    )  # fmt: skip
    token = encode_token({**state, "rows": done}) if more else None
    return {"company": company, "part": part + 1, "continuation": token, "more": more,
            "pending": False, "wait": 0, "lines": staged.rows, "key": key}  # fmt: skip
