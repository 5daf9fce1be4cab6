"""What a finished run moved, read from its execution output and its ledger (printed by run, replay, demo)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TextIO

from d365_anaplan.flows.reconcile import NOT_RECONCILED
from devkit.commands._common import money, table


@dataclass
class RunFacts:
    """The figures of one run that the CLI prints and the demo report shows."""

    run_id: str
    flow: str
    status: str
    dry_run: bool = False
    window: tuple[str, str, str] | None = (
        None  # (first period, last period, why: requested, plan horizon, due)
    )
    lists: list[tuple[str, int, str]] = field(default_factory=list)  # (import, rows, outcome)
    gl: list[tuple[str, int, dict[str, Decimal]]] = field(
        default_factory=list
    )  # (company, lines, net/currency)
    file_rows: int | None = None
    file_lines: int | None = None
    file_key: str | None = None
    file_total: str | None = None
    replayed: tuple[str, int] | None = None  # (original run, staged files copied)
    import_counts: dict[str, Any] = field(default_factory=dict)
    reconciled: str | None = None
    exports: list[tuple[str, int, int, dict[str, str]]] = field(
        default_factory=list
    )  # (export, accepted, drafts, approved total per currency: empty for a run recorded before it was kept)
    journals: list[dict[str, Any]] = field(default_factory=list)  # planned journal detail
    differences: dict[str, Any] = field(
        default_factory=dict
    )  # plans: cells to write (F&O holding vs approved)
    written: list[dict[str, Any]] = field(default_factory=list)
    lines_written: int = 0
    lines_failed: int = 0
    problems: list[str] = field(default_factory=list)


_WHY = {
    "requested": "as requested",
    "plan horizon": "plan horizon: the current and next fiscal year; --from/--to to choose",
    "due": "months whose close is due",
    "nothing due": "nothing due",
}


def collect(ledger: Any, run_id: str, output: Any, flow: str, status: str) -> RunFacts:
    out = output if isinstance(output, dict) else {}
    dry = bool((out.get("run") or {}).get("dry_run"))
    facts = RunFacts(run_id, flow, status, dry_run=dry)
    steps = ledger.steps(run_id)
    gl: dict[str, tuple[list[int], dict[str, Decimal]]] = {}  # company -> ([lines], currency -> net)
    for step in steps:
        d = step.detail
        if step.step == "PeriodWindow" and d.get("from"):
            facts.window = (str(d.get("from")), str(d.get("to")), str(d.get("reason", "")))
        elif step.step.startswith("ExtractGL:"):
            company = step.step.split(":")[1]  # ExtractGL:<company>:<month>
            lines, net = gl.setdefault(company, ([0], {}))
            lines[0] += int(d.get("lines", 0))
            # per currency (transaction amounts are in several); a record without by_currency has one total
            amounts = d.get("by_currency") or ({"": d["total"]} if d.get("total") is not None else {})
            for cur, amount in amounts.items():
                net[str(cur)] = net.get(str(cur), Decimal(0)) + Decimal(str(amount))
        elif step.step == "PrepareActuals":
            facts.file_rows = int(d.get("rows", 0))
            facts.file_lines = int(d.get("lines", 0))
            facts.file_key = str(d.get("key", ""))
            by_currency = d.get("by_currency") or {}  # actuals are per currency, never added across
            total = d.get("total")
            facts.file_total = (
                money_per_currency(by_currency) if by_currency else None if total is None else money(total)
            )
        elif step.step == "ReplayStaged":
            facts.replayed = (str(d.get("replay_of", "")), int(d.get("files", 0)))
        elif step.step == "ReconcileActuals":
            rec = d.get("reconciliation") or {}
            if rec and "matched_accounts" not in rec:  # one reconciliation per currency
                rec = {"matched_accounts": sum(int(r.get("matched_accounts", 0)) for r in rec.values())}
            if step.status == "SUCCEEDED":
                facts.reconciled = (
                    f"{_count(rec.get('matched_accounts'))} company/account/period totals match"
                    if rec
                    else f"{d.get('note') or NOT_RECONCILED} (the import took all {d.get('rows')} rows)"
                )
            facts.problems += [str(p) for p in d.get("problems") or []]
        elif step.step == "ValidatePlan":
            for name, c in (d.get("exports") or {}).items():
                # per currency; an older record's "total" added the companies' currencies: not shown
                by_currency = {str(k): str(v) for k, v in (c.get("by_currency") or {}).items()}
                facts.exports.append(
                    (str(name), int(c.get("accepted", 0)), int(c.get("skipped_unapproved", 0)), by_currency)
                )
        elif step.step == "PlanJournals":
            facts.journals = [dict(j) for j in d.get("journals") or []]
            facts.differences = dict(d.get("differences") or {})
        elif step.step == "ReconcilePlan":
            if step.status == "SUCCEEDED":
                # approved totals per currency (an older record's left_total added currencies: not shown)
                facts.reconciled = f"{_count(d.get('matched_accounts'))} company/account/period totals match"
                if d.get("left_totals"):
                    facts.reconciled += f" (approved {money_per_currency(d['left_totals'])})"
                if d.get("pending_count"):
                    facts.reconciled += (
                        f"; {int(d['pending_count']):,} F&O entries pending completion (Update budget balances / "
                        "posting in F&O)"
                    )
            else:
                facts.problems.append(str(d.get("text") or "plan reconciliation failed"))
    facts.gl = [(c, lines[0], net) for c, (lines, net) in sorted(gl.items())]
    for item in out.get("lists") or []:
        counts = item.get("counts") or {}
        outcome = f"{counts.get('success', '?')} ok, {counts.get('failed', 0)} failed" if counts else "-"
        if dry:
            outcome = "not loaded (dry run)"
        facts.lists.append((str(item.get("action")), int(item.get("rows", 0)), outcome))
    task = out.get("task") or {}
    facts.import_counts = dict(task.get("counts") or {})
    facts.written = [dict(w) for w in out.get("written") or []]
    if flow == "plans" and not dry:
        for j in ledger.journals(run_id):
            facts.lines_written += int(j.detail.get("written", 0))
            facts.lines_failed += int(j.detail.get("rejected", 0))
    return facts


def print_facts(facts: RunFacts, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    w = out.write
    mode = " (dry run: nothing written to either system)" if facts.dry_run else ""
    w(f"\n{facts.flow} run {facts.run_id}: {facts.status}{mode}\n")
    if facts.replayed:
        w(
            f"  replayed from run {facts.replayed[0]}: {facts.replayed[1]} staged file(s) copied, nothing extracted again\n"
        )
    if facts.window:
        first, last, why = facts.window
        w(f"  periods {first}..{last} ({_WHY.get(why, why)})\n")
    if facts.lists:
        w(
            "  lists prepared for Anaplan (dry run: not loaded):\n"
            if facts.dry_run
            else "  lists loaded into Anaplan:\n"
        )
        table([[a, f"{r:,}", o] for a, r, o in facts.lists], ["import", "rows", "outcome"], out, "    ")
    if facts.gl:
        w("  posted GL read from F&O:\n")
        table([[c, f"{n:,}", money_per_currency(t)] for c, n, t in facts.gl], ["company", "lines", "net"], out,
              "    ")  # fmt: skip
    if facts.file_rows is not None:
        verb = "would be loaded" if facts.dry_run else "loaded" if facts.import_counts else "prepared"
        w(f"  actuals file {verb}: {facts.file_rows:,} rows from {facts.file_lines or 0:,} GL lines, "
          f"net {facts.file_total or '-'}\n")  # fmt: skip
        if facts.file_key:
            w(f"    staged as s3://…/{facts.file_key}\n")
    if facts.import_counts:
        c = facts.import_counts
        w(
            f"  Anaplan import: {c.get('success', 0):,} rows ok, {c.get('failed', 0):,} failed"
            + "".join(f", {int(c[k]):,} {k}" for k in ("ignored", "invalid") if c.get(k))
            + f" (created {c.get('created', 0):,}, updated {c.get('updated', 0):,})\n"
        )
    if facts.exports:
        w("  approved plan exported from Anaplan:\n")
        # an export's rows span companies and their currencies: one total per currency, never one sum
        rows = [[n, f"{a:,}", f"{d:,}", money_per_currency(t)] for n, a, d, t in facts.exports]
        table(rows, ["export", "approved rows", "not approved (skipped)", "approved total"], out, "    ")
    if facts.journals:
        verb = "planned (not written)" if facts.dry_run else "written"
        w(f"  journals {verb}:\n")
        rows = [
            [
                str(j.get("company", "")),
                str(j.get("key", "")),
                str(j.get("export", "")),
                f"{j.get('period_from', '')}..{j.get('period_to', '')}",
                f"{int(j.get('lines', 0)):,}",
                money(j.get("total_debit", "0")),
                money(j.get("total_credit", "0")),
            ]
            for j in facts.journals
        ]
        table(rows, ["company", "journal", "export", "periods", "lines", "debit", "credit"], out, "    ")
    if facts.differences:
        print_differences(facts, out)
    # entry and journal numbers are per legal entity: each is named with its company, each once
    numbers = dict.fromkeys(
        f"{x.get('company', '')}:{x['journal_batch_number']}"
        for x in facts.written
        if x.get("journal_batch_number")
    )
    if numbers and not facts.dry_run:
        w(f"  F&O entries: {', '.join(numbers)}; lines written {facts.lines_written:,}, "
          f"rejected {facts.lines_failed:,}\n")  # fmt: skip
    if facts.reconciled:
        w(f"  reconciliation: {facts.reconciled}\n")
    for p in facts.problems:
        w(f"  problem: {p}\n")


def _count(value: Any) -> str:
    """A count as the run output shows it (``63,611``); ``?`` when the record has none."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "?"


def print_differences(facts: RunFacts, out: Any = None) -> None:
    """The plan cells whose approved value differs from what F&O holds from the connector (what is written)."""
    d = facts.differences
    out = out or sys.stdout
    verb = "would write" if facts.dry_run else "wrote"
    out.write(f"  differences to what F&O holds ({verb}): {int(d.get('cells', 0)):,} cell(s), "
              f"{int(d.get('revisions', 0)):,} of them revisions\n")  # fmt: skip
    rows = [
        [str(x.get("company", "")), str(x.get("version", "")), str(x.get("account", "")), str(x.get("period", "")),
         money(x.get("held", "0")), money(x.get("approved", "0")), money(x.get("difference", "0"))]
        for x in d.get("shown") or []
    ]  # fmt: skip
    if rows:
        table(
            rows,
            ["company", "version", "account", "period", "F&O holds", "approved", "difference"],
            out,
            "    ",
        )
    hidden = int(d.get("cells", 0)) - len(rows)
    if rows and hidden > 0:
        out.write(
            f"    ... and {hidden:,} more cell(s); every line written is in the run ledger (d365-anaplan audit RUN)\n"
        )


def money_per_currency(totals: Mapping[str, Any]) -> str:
    """``EUR 567.00; USD 1,234.00``: one figure per currency, sorted, never added (a blank code: the amount
    alone, from a record that did not name its currency)."""
    return "; ".join(f"{cur} {money(v)}".strip() for cur, v in sorted(totals.items())) or "-"
