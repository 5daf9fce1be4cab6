"""Anaplan → Dynamics steps: validate the downloaded exports and plan the journals, write one batch of
journal lines, and reconcile what F&O holds with what Anaplan approved.

Nothing is written to F&O until every row of every export has passed validation and alignment. Journals are
keyed by their content, and lines by their key, so a retry, a redrive or a replay resumes the same journal
and never writes a line twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from d365_anaplan.config import PlanExport
from d365_anaplan.dynamics import filters as F
from d365_anaplan.dynamics.journal import JournalLineInput
from d365_anaplan.dynamics.odata import Query
from d365_anaplan.errors import AlignmentFailed, BadInputData, DynamicsValidationError, ReconciliationFailed
from d365_anaplan.flows.alignment import ACCOUNT, check_alignment, references_from_plans
from d365_anaplan.flows.calendar import fiscal_horizon, parse_period
from d365_anaplan.flows.journal import batch_lines, build_journals
from d365_anaplan.flows.plans import parse_plan_export
from d365_anaplan.flows.reconcile import reconcile
from d365_anaplan.flows.records import PlanRow
from d365_anaplan.ledger.audit import JournalLineEntry
from d365_anaplan.staging import iter_chunks, iter_lines
from d365_anaplan.steps.context import StepContext

_OFFSET_KEY = re.compile(r"-O\d{9}$")


def _export(ctx: StepContext, name: str) -> PlanExport:
    for e in ctx.cfg.mapping.plans.exports:
        if e.export_action == name:
            return e
    raise BadInputData(f"export {name!r} is not one of mapping.plans.exports")


def _put_json(ctx: StepContext, key: str, value: Any) -> None:
    ctx.s3.put_object(Bucket=ctx.env.staging_bucket, Key=key, Body=json.dumps(value).encode("utf-8"))


def _get_json(ctx: StepContext, key: str) -> Any:
    body = ctx.s3.get_object(Bucket=ctx.env.staging_bucket, Key=key)["Body"]
    try:
        return json.loads(body.read())
    finally:
        body.close()


def plan_journals(ctx: StepContext, exports: list[dict[str, Any]], periods: list[str]) -> dict[str, Any]:
    """Parse and validate every downloaded export, align with F&O, and stage the journals' line batches.

    ``exports`` are ``{"action": <export name>, "file_key": <staged file>}``. Returns the batches the
    state machine writes one by one, and the key of the approved totals used by reconciliation.
    """
    cfg = ctx.cfg
    m = cfg.mapping
    wanted = m.plans.dimensions
    dims = [d for d in m.dimensions if wanted is None or d.name in wanted]
    months = [parse_period(p, field="periods") for p in periods]
    reader = ctx.dynamics.reader
    fmt = reader.ledger_format()
    horizon = fiscal_horizon(cfg.close_calendar, datetime.now(UTC))
    all_rows: dict[str, list[PlanRow]] = {}
    counters: dict[str, Any] = {}
    for item in exports:
        export = _export(ctx, str(item["action"]))
        data = iter_chunks(ctx.s3, ctx.env.staging_bucket, str(item["file_key"]), chunk_size=1024 * 1024)
        parsed = parse_plan_export(
            data, export=export, plans=m.plans, dimensions=dims, companies=cfg.dynamics.companies,
            calendar=cfg.close_calendar, period_format=m.actuals.period_format, latest=horizon, periods=set(months),
        )  # fmt: skip
        all_rows[export.export_action] = list(parsed)
        counters[export.export_action] = parsed.counters.to_json()
    ctx.ledger.record_step(ctx.run_id, "ValidatePlan", "SUCCEEDED", {"exports": counters})

    # Alignment: every account and dimension value must exist in F&O (codes compare case-insensitively).
    members: dict[str, set[str]] = {ACCOUNT: {a.account for a in reader.main_accounts()}}
    partial: list[str] = []
    for d in dims:
        values = reader.dimension_values(d.name)
        members[d.name] = {v.value for v in values.values}
        if not values.complete:
            partial.append(d.name)
    refs = references_from_plans((r for rows in all_rows.values() for r in rows), dims)
    report = check_alignment(refs, members, target="F&O", partial=partial, casefold=True)
    report_json = report.to_json()
    _put_json(ctx, ctx.key("plans", "alignment.json"), report_json)
    ctx.ledger.record_step(ctx.run_id, "AlignPlan", "SUCCEEDED" if report.ok else "UNMATCHED", report_json)
    if not report.ok:
        raise AlignmentFailed(report.to_text())
    _refuse_suspended_accounts(ctx, all_rows)

    batches: list[dict[str, Any]] = []
    journals: list[dict[str, Any]] = []
    approved: list[list[str]] = []
    size = cfg.dynamics.journal.lines_per_batch
    for name, rows in all_rows.items():
        export = _export(ctx, name)
        settings = cfg.dynamics.journal
        if export.journal_name:
            settings = settings.model_copy(update={"journal_name": export.journal_name})
        by_company: dict[str, list[PlanRow]] = {}
        for row in rows:
            by_company.setdefault(row.company, []).append(row)
        plans = [
            build_journals(
                company_rows, connection=ctx.connection, export=export, segment_order=fmt.segments,
                settings=settings.model_copy(update={"currency_code": settings.currency_for(company)}),
                delimiter=fmt.delimiter, period_from=months[0], period_to=months[-1],
            )
            for company, company_rows in sorted(by_company.items())
        ]  # fmt: skip
        approved += [[c, a, p.isoformat(), str(v)] for plan in plans for c, a, p, v in plan.items()]
        for journal in (j for plan in plans for j in plan.journals):
            journals.append({**journal.to_json(), "export": name})
            for n, lines in enumerate(batch_lines(journal, size)):
                key = ctx.key("plans", f"{journal.key}-{n:04d}.jsonl")
                body = "".join(
                    json.dumps({**line.to_json(), "account": line.account, "dimensions": dict(line.dimensions),
                                "amount": str(line.amount)}) + "\n"
                    for line in lines
                )  # fmt: skip
                ctx.s3.put_object(Bucket=ctx.env.staging_bucket, Key=key, Body=body.encode("utf-8"))
                batches.append({"company": journal.company, "journal_key": journal.key, "journal_name": journal.journal_name,
                                "key": key, "lines": len(lines)})  # fmt: skip
    totals_key = ctx.key("plans", "approved_totals.json")
    _put_json(ctx, totals_key, {"items": approved, "journals": journals})
    ctx.ledger.record_step(ctx.run_id, "PlanJournals", "SUCCEEDED",
                           {"journals": journals, "batches": len(batches)})  # fmt: skip
    for j in journals:
        ctx.ledger.record_journal(
            ctx.run_id, j["key"], "PLANNED", None, {k: v for k, v in j.items() if k != "key"}
        )
    return {"batches": batches, "totals_key": totals_key, "journals": len(journals),
            "rows": sum(len(r) for r in all_rows.values())}  # fmt: skip


def line_input(d: dict[str, Any]) -> JournalLineInput:
    """A journal line to write, from its staged (or ledger-kept) payload."""
    return JournalLineInput(
        account=str(d["account"]), dimensions=dict(d["dimensions"]), trans_date=date.fromisoformat(str(d["trans_date"])),
        amount=Decimal(str(d["amount"])), voucher=str(d["voucher"]), currency=str(d["currency"]), text=str(d["text"]),
        source=f"plan line {d['source_line']}" if d.get("source_line") else f"offset {d['text']}",
    )  # fmt: skip


def _refuse_suspended_accounts(ctx: StepContext, all_rows: dict[str, list[PlanRow]]) -> None:
    """F&O refuses new lines on a suspended main account (``MainAccounts.IsSuspended``); finding out while
    writing would leave the other vouchers written. Refuse the plan before anything is written, naming the
    export lines."""
    q = Query("MainAccounts", select=("MainAccountId", "IsSuspended"), cross_company=False)
    suspended = {
        str(r.get("MainAccountId") or "").upper()
        for r in ctx.dynamics.client.iter_rows(q)
        if str(r.get("IsSuspended") or "No") == "Yes"
    }
    hits = [
        (name, row) for name, rows in all_rows.items() for row in rows if row.account.upper() in suspended
    ]
    if not hits:
        return
    shown = "; ".join(
        f"export {name!r} line {row.line_number}: field 'Account' {row.account!r}" for name, row in hits[:10]
    )
    more = f" (and {len(hits) - 10} more)" if len(hits) > 10 else ""
    accounts = sorted({row.account for _, row in hits})
    raise AlignmentFailed(
        f"alignment with F&O: main account(s) {accounts} are suspended in F&O (MainAccounts.IsSuspended), "
        f"which refuses new journal lines on them; {len(hits)} plan row(s) use them: {shown}{more}. "
        "Nothing was written to F&O."
    )


def _line_inputs(ctx: StepContext, key: str) -> Iterator[tuple[JournalLineInput, dict[str, Any]]]:
    for raw in iter_lines(ctx.s3, ctx.env.staging_bucket, key):
        if raw.strip():
            d = json.loads(raw)
            yield line_input(d), d


def write_journal_batch(ctx: StepContext, batch: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
    """Create or resume the batch's journal and write its lines (lines already in F&O are skipped).

    Each line's outcome goes to the ledger with its payload, so failed lines can be replayed from the
    ledger alone. A voucher F&O rejects is rolled back whole by its changeset; the step then fails naming
    the first rejected line and F&O's message.
    """
    pairs = list(_line_inputs(ctx, str(batch["key"])))
    journal_key = str(batch["journal_key"])
    if dry_run:
        ctx.ledger.record_step(ctx.run_id, f"WriteJournal:{journal_key}", "DRY_RUN", {"lines": len(pairs)})
        return {"journal_key": journal_key, "company": batch["company"], "journal_batch_number": None, "written": 0,
                "skipped": 0, "rejected": 0, "dry_run": True}  # fmt: skip
    writer = ctx.dynamics.writer
    if ctx.cfg.dynamics.journal.target == "budget_register":
        first = min(p[0].trans_date for p in pairs)
        result = writer.write_budget_register(
            str(batch["company"]), [p[0] for p in pairs], key=journal_key, default_date=first
        )
    else:
        result = writer.write_ledger_journal(
            str(batch["company"]),
            [p[0] for p in pairs],
            key=journal_key,
            journal_name=str(batch["journal_name"]),
        )
    errors = {e.source: e for e in result.errors}
    entries = []
    for line, payload in pairs:
        err = errors.get(line.source)
        entries.append(
            JournalLineEntry(
                journal_key=journal_key, line_key=str(payload["text"]), status="FAILED" if err else "WRITTEN",
                fo_ids=None if err else {"journal_batch_number": result.journal_batch_number},
                error=err.message if err else None, payload=payload,
            )
        )  # fmt: skip
    ctx.ledger.record_journal_lines(ctx.run_id, entries)
    ctx.ledger.record_journal(
        ctx.run_id, journal_key, "FAILED" if result.errors else "WRITTEN", result.journal_batch_number,
        {"written": result.lines_written, "skipped": result.lines_skipped, "rejected": len(result.errors),
         "resumed": result.resumed, "already_posted": result.already_posted},
    )  # fmt: skip
    # Rejected vouchers do not stop the other batches: every batch is tried, so one run shows every line F&O
    # refuses. The journal stays unposted and reconciliation fails the run naming them (see reconcile_plan).
    return {"journal_key": journal_key, "company": result.company, "journal_batch_number": result.journal_batch_number,
            "written": result.lines_written, "skipped": result.lines_skipped, "rejected": len(result.errors),
            "dry_run": False}  # fmt: skip


def _written_items(ctx: StepContext, company: str, number: str) -> Iterator[tuple[str, str, date, Decimal]]:
    """(company, main account, date, signed amount) of the lines F&O holds for one journal (or budget
    register entry), offset lines left out."""
    budget = ctx.cfg.dynamics.journal.target == "budget_register"
    reader = ctx.dynamics.reader
    fmt = reader.budget_format() if budget else reader.ledger_format()
    if budget:  # display value, amount, date, text
        names: tuple[str, ...] = (
            "DimensionDisplayValue",
            "TransactionCurrencyAmount",
            "EntryDate",
            "Comment",
        )
        flt = F.and_(F.eq("dataAreaId", company.lower()), F.eq("EntryNumber", number))
        q = Query("BudgetRegisterEntryLines", select=names, filter=flt)
    else:
        names = ("AccountDisplayValue", "DebitAmount", "TransDate", "Text", "CreditAmount")
        flt = F.and_(F.eq("dataAreaId", company.lower()), F.eq("JournalBatchNumber", number))
        q = Query("LedgerJournalLines", select=names, filter=flt)
    display, amount_name, date_name, text_name = names[:4]
    for row in ctx.dynamics.client.iter_rows(q):
        memo = str(row.get(text_name) or "").split(" ", 1)[-1]
        if _OFFSET_KEY.search(memo):
            continue
        account, _dims = fmt.parse_value(str(row[display]), what=f"{number} line {memo}")
        amount = Decimal(str(row.get(amount_name) or 0))
        if not budget:
            amount -= Decimal(str(row.get("CreditAmount") or 0))
        yield company, account, date.fromisoformat(str(row[date_name])[:10]), amount


def reconcile_plan(ctx: StepContext, totals_key: str, written: list[dict[str, Any]]) -> dict[str, Any]:
    """Read the journals' lines back from F&O and compare them with the approved totals per company,
    account and period (offset lines excluded on both sides)."""
    rejected = ctx.ledger.failed_journal_lines(ctx.run_id)
    if rejected:
        first = rejected[0]
        ctx.ledger.record_step(ctx.run_id, "ReconcilePlan", "FAILED", {"rejected_lines": len(rejected)})
        raise DynamicsValidationError(
            f"F&O rejected {len(rejected)} journal line(s) (whole vouchers; the journals stay unposted); first: "
            f"line {first.line_key} of {first.journal_key}: {first.error}. Fix the cause in F&O, then replay with "
            f'{{"replay_of": "{ctx.run_id}", "failed_lines_only": true}}'
        )
    approved = _get_json(ctx, totals_key)
    plan_items = [(c, a, date.fromisoformat(p), Decimal(v)) for c, a, p, v in approved["items"]]
    numbers = sorted(
        {
            (str(w["company"]), str(w["journal_batch_number"]))
            for w in written
            if w.get("journal_batch_number")
        }
    )
    fo_items = [item for company, number in numbers for item in _written_items(ctx, company, number)]
    result = reconcile(plan_items, fo_items, tolerance=ctx.cfg.reconciliation_tolerance, left_name="Anaplan",
                       right_name="F&O")  # fmt: skip
    ctx.ledger.record_step(
        ctx.run_id, "ReconcilePlan", "SUCCEEDED" if result.ok else "FAILED", result.to_json()
    )
    if not result.ok:
        raise ReconciliationFailed(result.to_text())
    return {"ok": True, "total": str(result.left_total), "matched": result.matched_accounts}
