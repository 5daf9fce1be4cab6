"""Large budget register entries through a "Budget account entries" package import (dynamics-budget-fiscal.md
§F and "What a connector should do" #9): set-based, one entry per batch, the same lines as the OData path.

The lines, their keys, the revision rules and the entry header come from :class:`JournalWriter` unchanged
(``lines_via``): the header is created or resumed over OData, the lines the entry already holds are skipped,
and only the missing ones travel in the package. The WriteJournals loop of the state machine drives it:

1. **start**: ``GetAzureWriteUrl``, the package uploaded to it (Put Blob, SAS only), ``ImportFromPackage``
   under an execution id derived from the run and the entry (a retried invocation that finds its import
   started polls it instead of importing again). Returns *pending* with a wait.
2. **poll**: ``GetExecutionSummaryStatus`` until it ends. Failed, PartiallySucceeded or Canceled is
   :class:`~d365_anaplan.errors.DynamicsPackageFailed` with F&O's messages. Succeeded: the entry is read
   back and every line must be there (a line still missing fails the batch naming it); the batch then
   reports written and skipped lines as the OData path does.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from d365_anaplan.dynamics.dmf import ExecutionStatus, PackageApi
from d365_anaplan.dynamics.journal_records import EntryHeader, JournalLineInput, JournalWriteResult
from d365_anaplan.dynamics.package import write_package
from d365_anaplan.errors import BadInputData, DynamicsPackageFailed, DynamicsPackageTimeout
from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.gl_package import blob_transfer, decode_token, encode_token, next_wait

COLUMNS = ["EntryNumber", "LegalEntityId", "BudgetModelId", "BudgetCode", "DimensionDisplayValue", "EntryDate",
           "CurrencyCode", "TransactionCurrencyAmount", "AmountType", "Comment"]  # fmt: skip
_SPOOL = 8 * 1024 * 1024  # a package larger than this is spooled to /tmp while it is built


def by_package(ctx: StepContext, lines: int) -> bool:
    """Whether an entry of ``lines`` lines goes through a package import."""
    d = ctx.cfg.dynamics
    return (
        d.journal.target == "budget_register"
        and d.package.import_project is not None
        and lines > d.journal.package_threshold_lines
    )


@dataclass
class PackageOutcome:
    result: JournalWriteResult | None = None  # the batch is done
    pending: dict[str, Any] | None = None  # Wait, then call again with ``continuation``


@dataclass
class _Captured:
    result: JournalWriteResult | None = None
    missing: list[Any] | None = None
    skipped: int = 0


def _capture(ctx: StepContext, company: str, lines: list[JournalLineInput], header: EntryHeader) -> _Captured:
    """The entry created or resumed, and its lines not held yet (nothing sent)."""
    got = _Captured()

    def collect(result: JournalWriteResult, vouchers: dict[str, list[Any]], present: set[str]) -> None:
        got.missing = [p for lst in vouchers.values() for p in lst if p.key not in present]
        got.skipped = sum(1 for lst in vouchers.values() for p in lst if p.key in present)

    got.result = ctx.dynamics.writer.write(company, lines, header, lines_via=collect)
    return got


def _execution_id(ctx: StepContext, journal_key: str) -> str:
    digest = hashlib.sha256(f"{ctx.connection}|{ctx.run_id}|{journal_key}".encode()).hexdigest()[:24]
    return f"anaplan-budget-{digest}"


def write_budget_package(
    ctx: StepContext,
    company: str,
    lines: list[JournalLineInput],
    header: EntryHeader,
    continuation: str | None,
) -> PackageOutcome:
    opts = ctx.cfg.dynamics.package
    api = PackageApi(ctx.dynamics.client)
    if continuation is None:
        got = _capture(ctx, company, lines, header)
        assert got.result is not None
        if got.missing is None or not got.missing:  # completed entry, or every line already held
            got.result.lines_skipped = got.skipped
            return PackageOutcome(result=got.result)
        execution_id = _execution_id(ctx, header.key)
        if api.known_status(execution_id) is ExecutionStatus.UNKNOWN:
            _import(ctx, api, company, header, got, execution_id)
        state: dict[str, Any] = {"v": 1, "id": execution_id, "journal": header.key, "number": got.result.journal_batch_number,
                 "sent": len(got.missing), "skipped": got.skipped, "started": time.time(), "polls": 0}  # fmt: skip
        return _pending(ctx, state)
    state = decode_token(continuation)
    if state.get("journal") != header.key:
        raise BadInputData("continuation token: it belongs to another entry")
    if state.get("id") != _execution_id(ctx, header.key):
        raise BadInputData(
            f"continuation token: field 'id' is not the import execution id of this run for entry {header.key}"
        )
    status = api.status(state["id"])
    if status is ExecutionStatus.UNKNOWN or status.running:
        if time.time() - state["started"] > opts.max_wait_seconds:
            raise DynamicsPackageTimeout(
                f"F&O data project {opts.import_project!r} import {state['id']} of {header.key} was still "
                f"{status.value} after {opts.max_wait_seconds} s (dynamics.package.max_wait_seconds)"
            )
        return _pending(ctx, state)
    if status.failed:
        messages = api.errors(state["id"])
        raise DynamicsPackageFailed(
            f"F&O data project {opts.import_project!r} import {state['id']} of budget register entry "
            f"{state['number']} ({header.key}, {company}) ended {status.value}: "
            f"{'; '.join(messages[:5]) or 'F&O gave no message (see the execution in Data management)'}. Lines "
            "that landed are keyed: a rerun writes only the others"
        )
    got = _capture(ctx, company, lines, header)  # read back: every line must now be held
    assert got.result is not None
    if got.missing:
        first = got.missing[0]
        raise DynamicsPackageFailed(
            f"F&O import {state['id']} of budget register entry {state['number']} ended Succeeded, but "
            f"{len(got.missing)} line(s) are not in the entry; first: {first.source} ({first.key})"
        )
    got.result.lines_written = int(state["sent"])
    got.result.lines_skipped = int(state["skipped"])
    return PackageOutcome(result=got.result)


def _import(
    ctx: StepContext, api: PackageApi, company: str, header: EntryHeader, got: _Captured, execution_id: str
) -> None:
    opts = ctx.cfg.dynamics.package
    assert opts.import_project is not None and got.result is not None and got.missing is not None
    writer = ctx.dynamics.writer
    model = header.budget_model or writer.settings.budget_model or ""
    code = header.budget_code or writer.settings.budget_code or ""
    number = got.result.journal_batch_number

    def row(body: dict[str, Any]) -> list[str]:
        amount = body["TransactionCurrencyAmount"]
        assert isinstance(amount, Decimal)
        return [number, company.lower(), model, code, str(body["DimensionDisplayValue"]),
                str(body["EntryDate"])[:10], str(body["CurrencyCode"]), format(amount, "f"),
                str(body["AmountType"]), str(body["Comment"])]  # fmt: skip

    with tempfile.SpooledTemporaryFile(max_size=_SPOOL) as out:
        write_package(out, project=opts.import_project, entity=opts.import_entity, columns=COLUMNS,
                      rows=(row(p.body) for p in got.missing))  # fmt: skip
        length = out.tell()
        out.seek(0)
        url = api.azure_write_url(f"{execution_id}.zip")
        blob_transfer(ctx).upload(url, out, length, what=f"package of import {execution_id}")
    api.import_from_package(url, opts.import_project, execution_id, company)


def _pending(ctx: StepContext, state: dict[str, Any]) -> PackageOutcome:
    wait = next_wait(ctx.cfg.dynamics.package.poll_seconds, state["polls"])
    state = {**state, "polls": state["polls"] + 1}
    return PackageOutcome(
        pending={"wait": wait, "continuation": encode_token(state), "number": state["number"]}
    )
