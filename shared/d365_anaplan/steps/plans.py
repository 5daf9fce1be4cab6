"""Anaplan → Dynamics steps: validate the downloaded exports, read back what F&O holds from the connector and
plan the differences, write one batch of lines, and reconcile F&O's cumulative totals with what Anaplan
approved.

Nothing is written to F&O until every row of every export has passed validation and alignment. Each run writes
only the differences to what F&O holds (read back from F&O, never from the ledger alone), so a rerun writes
nothing and a revision never doubles. Entries are keyed by run, company, fiscal year and code, and lines by
their key, so a retry or a redrive resumes the same entry and never writes a line twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from d365_anaplan.config import PlanExport
from d365_anaplan.dynamics.journal_records import EntryHeader, JournalLineInput
from d365_anaplan.errors import AlignmentFailed, BadInputData, DynamicsValidationError, ReconciliationFailed
from d365_anaplan.flows.alignment import ACCOUNT, check_alignment, references_from_plans
from d365_anaplan.flows.calendar import fiscal_horizon, parse_period, period_key
from d365_anaplan.flows.journal import batch_lines, build_entries
from d365_anaplan.flows.journal_keys import export_tag
from d365_anaplan.flows.plan_deltas import CellKey, cell_key, plan_deltas
from d365_anaplan.flows.plans import (
    SPREAD_DECIMALS,
    parse_plan_export,
    round_largest_remainder,
    to_ledger_sign,
)
from d365_anaplan.flows.reconcile import reconcile
from d365_anaplan.flows.records import PlanRow
from d365_anaplan.ledger.audit import JournalLineEntry
from d365_anaplan.ledger.plan_state import PlanState
from d365_anaplan.staging import iter_chunks, iter_lines
from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.mapping import step_value_maps
from d365_anaplan.steps.plan_currency import resolve_plan_currencies
from d365_anaplan.steps.plan_package import by_package, write_budget_package
from d365_anaplan.steps.plan_refusals import refuse_out_of_scope, refuse_suspended_accounts
from d365_anaplan.steps.plan_sign import refuse_after_failed_reconcile, verify_revenue_sign
from d365_anaplan.steps.staged_io import load_json

SHOWN_DIFFERENCES = 20  # differences listed in the step detail and the run output (all are counted)


def _export(ctx: StepContext, name: str) -> PlanExport:
    for e in ctx.cfg.mapping.plans.exports:
        if e.export_action == name:
            return e
    raise BadInputData(f"export {name!r} is not one of mapping.plans.exports")


def _put_json(ctx: StepContext, key: str, value: Any) -> None:
    ctx.s3.put_object(Bucket=ctx.env.staging_bucket, Key=key, Body=json.dumps(value).encode("utf-8"))


def plan_journals(
    ctx: StepContext,
    exports: list[dict[str, Any]],
    periods: list[str],
    accept_drift: bool = False,
    accept_failed_reconcile: bool = False,
) -> dict[str, Any]:
    """Parse and validate every downloaded export, align with F&O, and stage the journals' line batches.

    First the F&O part of drift detection (``steps/fo_drift.py``), before any journal is written.

    ``exports`` are ``{"action": <export name>, "file_key": <staged file>}``. Returns the batches the
    state machine writes one by one, and the key of the approved totals used by reconciliation.
    """
    cfg = ctx.cfg
    m = cfg.mapping
    wanted = m.plans.dimensions
    dims = [d for d in m.dimensions if wanted is None or d.name in wanted]
    months = [parse_period(p, field="periods") for p in periods]
    from d365_anaplan.steps.fo_drift import check_fo_drift

    check_fo_drift(ctx, "plans", accept_drift)
    reader = ctx.dynamics.reader
    currencies = resolve_plan_currencies(cfg, reader)  # the one source of each company's plan currency
    budget = cfg.dynamics.journal.target == "budget_register"
    fmt = reader.budget_format() if budget else reader.ledger_format()
    horizon = fiscal_horizon(cfg.close_calendar, datetime.now(UTC))
    all_rows: dict[str, list[PlanRow]] = {}
    not_approved: dict[str, set[CellKey]] = {}  # export -> cells of rows skipped as not approved
    counters: dict[str, Any] = {}
    types: dict[str, str] | None = None  # main account types (natural sign)
    maps = step_value_maps(ctx)
    for item in exports:
        export = _export(ctx, str(item["action"]))
        data = iter_chunks(ctx.s3, ctx.env.staging_bucket, str(item["file_key"]), chunk_size=1024 * 1024)
        spread = m.plans.rounding == "largest_remainder"
        parsed = parse_plan_export(
            data,
            export=export,
            plans=m.plans,
            dimensions=dims,
            companies=cfg.dynamics.companies,
            calendar=cfg.close_calendar,
            period_format=export.period_format or m.actuals.period_format,
            latest=horizon,
            periods=set(months),
            decimals=SPREAD_DECIMALS if spread else 2,
            maps=maps,
        )
        rows = round_largest_remainder(list(parsed)) if spread else list(parsed)
        if m.plans.sign == "natural":
            if types is None:
                types = {a.account.upper(): a.account_type for a in reader.main_accounts()}
            rows = to_ledger_sign(rows, types, source=f"export {export.export_action!r}")
        all_rows[export.export_action] = rows
        not_approved[export.export_action] = parsed.not_approved
        counters[export.export_action] = parsed.counters.to_json(lambda co: currencies[co.upper()])
    refuse_out_of_scope(ctx, all_rows)
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
    refuse_suspended_accounts(ctx, all_rows)

    settings = cfg.dynamics.journal
    writer = ctx.dynamics.writer
    if budget:  # a wrong read-back sign would write the revenue differences again on every run
        verify_revenue_sign(cfg, writer)
    refuse_after_failed_reconcile(ctx, accept_failed_reconcile)
    state = PlanState(ctx.env.ledger_table)
    batches: list[dict[str, Any]] = []
    journals: list[dict[str, Any]] = []
    totals: list[dict[str, Any]] = []
    differences: list[dict[str, Any]] = []
    drift: list[dict[str, Any]] = []
    size = settings.lines_per_batch
    first, last = months[0], months[-1]
    for name, rows in all_rows.items():
        export = _export(ctx, name)
        tag = export_tag(ctx.connection, name)
        held: list[tuple[str, str, dict[str, str], date, Decimal]] = []
        for company in cfg.dynamics.companies:
            lines = writer.held(company, tag, first, last)
            held += [(h.company, h.account, dict(h.dimensions), h.period, h.amount) for h in lines]
            # The ledger's state is what the connector last reconciled; F&O is the truth. Report drift.
            sums: dict[Any, Decimal] = {}
            for h in lines:
                k = cell_key(h.company, h.account, h.dimensions, h.period)
                sums[k] = sums.get(k, Decimal(0)) + h.amount
            kept = state.load(ctx.connection, tag, company, first, last)
            drift.extend(
                {
                    "export": name,
                    "company": k[0],
                    "account": k[1],
                    "period": period_key(k[3]),
                    "ledger": str(kept.get(k, Decimal(0))),
                    "fo": str(sums.get(k, Decimal(0))),
                }
                for k in sorted(set(kept) | set(sums))
                if kept.get(k, Decimal(0)) != sums.get(k, Decimal(0))
            )
        deltas, approved = plan_deltas(rows, held, months, keep=not_approved[name])
        differences += [{**d.to_json(), "export": name, "version": export.version} for d in deltas]
        plan = build_entries(
            deltas,
            connection=ctx.connection,
            run_id=ctx.run_id,
            export=export,
            settings=settings,
            currencies=currencies,
            segment_order=fmt.segments,
            delimiter=fmt.delimiter,
            fiscal_year_start_month=cfg.close_calendar.fiscal_year_start_month,
        )
        totals.append(
            {
                "export": name,
                "version": export.version,
                "tag": tag,
                "cells": [[c, a, dict(d), p.isoformat(), str(v)] for (c, a, d, p), v in approved.items()],
            }
        )
        for journal in plan.journals:
            journals.append({**journal.to_json(), "export": name, "currency": currencies[journal.company]})
            count = sum(len(v.lines) for v in journal.vouchers)
            transport = "package" if by_package(ctx, count) else "odata"  # a package carries the whole entry
            for n, lines_ in enumerate(batch_lines(journal, count if transport == "package" else size)):
                key = ctx.key("plans", f"{journal.key}-{n:04d}.jsonl")
                body = "".join(
                    json.dumps(
                        {
                            **line.to_json(),
                            "account": line.account,
                            "dimensions": dict(line.dimensions),
                            "amount": str(line.amount),
                        }
                    )
                    + "\n"
                    for line in lines_
                )
                ctx.s3.put_object(Bucket=ctx.env.staging_bucket, Key=key, Body=body.encode("utf-8"))
                batches.append(
                    {
                        "company": journal.company,
                        "journal_key": journal.key,
                        "journal_name": journal.journal_name,
                        "description": journal.description,
                        "budget_model": journal.budget_model,
                        "budget_code": journal.budget_code,
                        "key": key,
                        "lines": len(lines_),
                        "transport": transport,
                    }
                )
    totals_key = ctx.key("plans", "approved_totals.json")
    _put_json(
        ctx,
        totals_key,
        {
            "exports": totals,
            "first": first.isoformat(),
            "last": last.isoformat(),
            "journals": journals,
            "currencies": currencies,
        },
    )
    summary = {
        "cells": len(differences),
        "revisions": sum(1 for d in differences if d["revision"]),
        "shown": differences[:SHOWN_DIFFERENCES],
    }
    ctx.ledger.record_step(
        ctx.run_id,
        "PlanJournals",
        "SUCCEEDED",
        {
            "journals": journals,
            "batches": len(batches),
            "differences": summary,
            "state_drift": {"cells": len(drift), "shown": drift[:SHOWN_DIFFERENCES]},
        },
    )
    for j in journals:
        ctx.ledger.record_journal(
            ctx.run_id, j["key"], "PLANNED", None, {k: v for k, v in j.items() if k != "key"}
        )
    return {
        "batches": batches,
        "totals_key": totals_key,
        "journals": len(journals),
        "rows": sum(len(r) for r in all_rows.values()),
        "differences": summary,
    }


def line_input(d: dict[str, Any]) -> JournalLineInput:
    """A journal line to write, from its staged (or ledger-kept) payload."""
    return JournalLineInput(
        account=str(d["account"]),
        dimensions=dict(d["dimensions"]),
        trans_date=date.fromisoformat(str(d["trans_date"])),
        amount=Decimal(str(d["amount"])),
        voucher=str(d["voucher"]),
        currency=str(d["currency"]),
        text=str(d.get("memo") or d["text"]),
        source=f"plan line {d['source_line']}"
        if d.get("source_line")
        else f"offset {d['text']}"
        if d.get("offset")
        else f"removed cell {d['text']}",
    )


def _line_inputs(ctx: StepContext, key: str) -> Iterator[tuple[JournalLineInput, dict[str, Any]]]:
    for raw in iter_lines(ctx.s3, ctx.env.staging_bucket, key):
        if raw.strip():
            d = json.loads(raw)
            yield line_input(d), d


def entry_header(batch: dict[str, Any]) -> EntryHeader:
    """The header of a batch's journal / budget register entry (as staged by :func:`plan_journals`)."""
    return EntryHeader(
        key=str(batch["journal_key"]),
        description=str(batch.get("description") or f"Anaplan {batch['journal_key']}"),
        journal_name=batch.get("journal_name"),
        budget_model=batch.get("budget_model"),
        budget_code=batch.get("budget_code"),
    )


def write_journal_batch(
    ctx: StepContext, batch: dict[str, Any], *, dry_run: bool = False, continuation: str | None = None
) -> dict[str, Any]:
    """Create or resume the batch's journal / budget register entry and write its lines (lines already in
    F&O are skipped), through the one writer entry point (:meth:`JournalWriter.write`).

    Each line's outcome goes to the ledger with its payload and the entry's header, so failed lines can be
    replayed from the ledger alone. A voucher F&O rejects is rolled back whole by its changeset; the run
    then fails in ReconcilePlan naming the first rejected line and F&O's message.
    """
    pairs = list(_line_inputs(ctx, str(batch["key"])))
    journal_key = str(batch["journal_key"])
    header = entry_header(batch)
    if dry_run:  # the same writer validates and builds every line, and sends nothing
        planned = ctx.dynamics.writer.write(
            str(batch["company"]), [p[0] for p in pairs], header, dry_run=True
        )
        ctx.ledger.record_step(ctx.run_id, f"WriteJournalBatch:{journal_key}", "DRY_RUN",
                               {"lines": planned.lines_planned, "description": header.description})  # fmt: skip
        return {"journal_key": journal_key, "company": batch["company"], "journal_batch_number": None, "written": 0,
                "skipped": 0, "rejected": 0, "dry_run": True, "pending": False, "wait": 0, "continuation": None}  # fmt: skip
    if batch.get("transport") == "package":  # a large budget register entry: package import (plan_package.py)
        outcome = write_budget_package(
            ctx, str(batch["company"]), [p[0] for p in pairs], header, continuation
        )
        if outcome.pending is not None:
            return {"journal_key": journal_key, "company": batch["company"], "dry_run": False,
                    "journal_batch_number": outcome.pending["number"], "written": 0, "skipped": 0, "rejected": 0,
                    "pending": True, "wait": outcome.pending["wait"], "continuation": outcome.pending["continuation"]}  # fmt: skip
        assert outcome.result is not None
        result = outcome.result
    else:
        result = ctx.dynamics.writer.write(str(batch["company"]), [p[0] for p in pairs], header)
    errors = {e.source: e for e in result.errors}
    entries = []
    for line, payload in pairs:
        err = errors.get(line.source)
        entries.append(
            JournalLineEntry(
                journal_key=journal_key,
                line_key=str(payload["text"]),
                status="FAILED" if err else "WRITTEN",
                fo_ids=None if err else {"journal_batch_number": result.journal_batch_number},
                error=err.message if err else None,
                payload={**payload, "header": _header_json(header)},
            )
        )
    ctx.ledger.record_journal_lines(ctx.run_id, entries)
    ctx.ledger.record_journal(
        ctx.run_id,
        journal_key,
        "FAILED" if result.errors else "WRITTEN",
        result.journal_batch_number,
        {
            "written": result.lines_written,
            "skipped": result.lines_skipped,
            "rejected": len(result.errors),
            "resumed": result.resumed,
            "already_posted": result.already_posted,
            **_header_json(header),
        },
    )
    # Rejected vouchers do not stop the other batches: every batch is tried, so one run shows every line F&O
    # refuses. Reconciliation fails the run naming them (see reconcile_plan).
    return {"journal_key": journal_key, "company": result.company, "journal_batch_number": result.journal_batch_number,
            "written": result.lines_written, "skipped": result.lines_skipped, "rejected": len(result.errors),
            "dry_run": False, "pending": False, "wait": 0, "continuation": None}  # fmt: skip


def _header_json(header: EntryHeader) -> dict[str, Any]:
    return {
        "description": header.description,
        "journal_name": header.journal_name,
        "budget_model": header.budget_model,
        "budget_code": header.budget_code,
    }


def reconcile_plan(ctx: StepContext, totals_key: str, written: list[dict[str, Any]]) -> dict[str, Any]:
    """Read back every line F&O holds from this connector (all runs, all entries) for the run's window and
    compare the cumulative total per company x version x account x dimension values x period with the
    approved plan, to the cent. On success the ledger's plan state becomes the approved plan. Entries still
    waiting for completion in F&O (Draft budget register entries, unposted journals) are reported."""
    rejected = ctx.ledger.failed_journal_lines(ctx.run_id)
    if rejected:
        first = rejected[0]
        ctx.ledger.record_step(ctx.run_id, "ReconcilePlan", "FAILED", {"rejected_lines": len(rejected)})
        raise DynamicsValidationError(
            f"F&O rejected {len(rejected)} journal line(s) (whole vouchers; nothing else of them landed); first: "
            f"line {first.line_key} of {first.journal_key}: {first.error}. Fix the cause in F&O, then replay with "
            f'{{"replay_of": "{ctx.run_id}", "failed_lines_only": true}}'
        )
    approved = load_json(ctx, totals_key)
    first_p, last_p = date.fromisoformat(approved["first"]), date.fromisoformat(approved["last"])
    writer = ctx.dynamics.writer
    plan_items: list[tuple[str, str, date, Decimal]] = []
    fo_items: list[tuple[str, str, date, Decimal]] = []
    currency_of: dict[str, str] = {}  # "<company> <version>" -> the currency the company's plan lines are in
    # the currencies PlanJournals resolved for this run (one source of truth); a run staged before they were
    # kept resolves them again
    currencies: dict[str, str] = approved.get("currencies") or resolve_plan_currencies(
        ctx.cfg, ctx.dynamics.reader
    )

    def currency_for(company: str) -> str:
        return currencies[company.upper()]

    pending: list[dict[str, Any]] = []
    cells_by_export: dict[str, dict[Any, Decimal]] = {}
    for export in approved["exports"]:
        version, tag = str(export["version"]), str(export["tag"])
        cells: dict[Any, Decimal] = {}
        for company, account, dims, period, amount in export["cells"]:
            key = cell_key(company, account, dims, date.fromisoformat(period))
            cells[key] = Decimal(amount)
            plan_items.append((f"{company} {version}", _account_text(key), key[3], Decimal(amount)))
            currency_of[f"{company} {version}"] = currency_for(company)
        cells_by_export[tag] = cells
        for company in ctx.cfg.dynamics.companies:
            for h in writer.held(company, tag, first_p, last_p):
                key = cell_key(h.company, h.account, h.dimensions, h.period)
                fo_items.append((f"{h.company} {version}", _account_text(key), h.period, h.amount))
                currency_of[f"{h.company} {version}"] = currency_for(h.company)
                cells.setdefault(key, Decimal(0))  # a cell that left the plan: F&O holds its reversal
            pending += [
                {"company": e.company, "number": e.number, "status": e.status, "description": e.description}
                for e in writer.entries(company, tag)
                if e.pending
            ]
    result = reconcile(
        plan_items,
        fo_items,
        currency=currency_of,
        tolerance=ctx.cfg.reconciliation_tolerance,
        left_name="Anaplan",
        right_name="F&O",
    )
    detail = {**result.to_json(), "pending_completion": pending[:50], "pending_count": len(pending)}
    ctx.ledger.record_step(ctx.run_id, "ReconcilePlan", "SUCCEEDED" if result.ok else "FAILED", detail)
    if not result.ok:
        hint = ""
        if ctx.cfg.dynamics.journal.target == "budget_register":
            hint = (
                " (if only revenue accounts differ, with the sign reversed, check "
                "dynamics.journal.budget_revenue_read_sign against how BudgetRegisterEntryLines shows revenue)"
            )
        raise ReconciliationFailed(result.to_text() + hint)
    state = PlanState(ctx.env.ledger_table)
    for tag, cells in cells_by_export.items():
        state.save(ctx.connection, tag, cells, ctx.run_id)
    return {
        "ok": True,
        "by_currency": {c: str(v) for c, v in result.left_totals.items()},  # never one sum across currencies
        "matched": result.matched_accounts,
        "pending_completion": len(pending),
    }


def _account_text(key: tuple[str, str, tuple[tuple[str, str], ...], date]) -> str:
    _company, account, dims, _period = key
    return account + "".join(f" {k}={v}" for k, v in dims)
