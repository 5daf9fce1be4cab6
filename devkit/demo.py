"""``d365-anaplan demo`` (``make demo``): both sandboxes, both flows, an independent reconciliation, a report.

1. Starts the F&O sandbox (a ~900-employee manufacturer, two companies, 12 months of posted GL) and the Anaplan
   sandbox seeded with the same chart of accounts and dimensions (``devkit.stack``).
2. Runs the real actuals state machine (2025-01..2025-12), then the plans state machine, on the local engine,
   printing each state as it is entered.
3. Reconciles without the connector's help: F&O's trial balance (from the sandbox's own ledger) against the
   cells of Anaplan's actuals module, and Anaplan's approved plan against F&O's cumulative plan per version
   (every budget register entry the connector holds there).
4. Prints what moved, requests and tokens per side, the duration, and writes an HTML report.

Exit code 0 when both flows succeeded and both reconciliations agree to the cent; 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from devkit.commands import _common as c
from devkit.commands._describe import RunFacts, collect, print_facts

DEFAULT_GL_LINES = 80_000
DEFAULT_REPORT = Path("out/demo-report.html")
DEFAULT_STATE = Path(".local/demo-state")
PERIOD_FROM, PERIOD_TO = "2025-01", "2025-12"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
ZERO = Decimal("0.00")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gl-lines",
        type=int,
        default=DEFAULT_GL_LINES,
        metavar="N",
        help=f"posted GL lines in the F&O sandbox (default {DEFAULT_GL_LINES:,}; 1,000..1,000,000)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=DEFAULT_REPORT,
        metavar="FILE",
        help=f"where the HTML run report goes (default {DEFAULT_REPORT})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="afterwards keep both sandboxes running and write their connection config next to the report "
        "(demo-connection.yaml) so check/run/replay can be tried against them; Ctrl-C stops",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE,
        metavar="DIR",
        help=f"where the demo's ledger and staged files are kept for 'audit --state-dir DIR' (replaced by every "
        f"demo; default {DEFAULT_STATE})",
    )
    parser.add_argument("--no-state", action="store_true", help="do not keep the demo's ledger")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the handlers' logs")
    parser.epilog = (
        "exit codes: 0 both flows succeeded and everything reconciles, 1 a flow failed or a figure differs, "
        "2 usage error"
    )


def _period_label(d: date) -> str:
    return f"{_MONTHS[d.month - 1]} {d.year % 100:02d}"


def _label_period(label: str) -> date | None:
    try:
        mon, yy = label.split()
        return date(2000 + int(yy), _MONTHS.index(mon) + 1, 1)
    except ValueError:
        return None


# --- independent readings ----------------------------------------------------------------------------------


def fo_trial_balance(stack: Any, months: set[date]) -> dict[tuple[str, str, date], Decimal]:
    """Net posted amount per company, account and month, from the F&O sandbox's own ledger."""
    gl = stack.dynamics.app.gl
    cents: dict[tuple[str, str, date], int] = defaultdict(int)
    for v in range(gl.voucher_count):
        head = gl.voucher(v)
        month = head.accounting_date.replace(day=1)
        if month not in months:
            continue
        for line in gl.voucher_lines(v):
            cents[(head.company, line.account.account, month)] += line.cents
    return {k: (Decimal(v) / 100).quantize(Decimal("0.01")) for k, v in cents.items()}


def anaplan_actuals(stack: Any, cfg: Any, months: set[date]) -> dict[tuple[str, str, date], Decimal]:
    """The cells of Anaplan's actuals module (version Actual), summed over the dimensions."""
    out: dict[tuple[str, str, date], Decimal] = defaultdict(lambda: ZERO)
    companies = set(cfg.dynamics.companies)
    for key, values in stack.anaplan.app.module_cells("GL Actuals").items():
        entity, account, *_dims, period, version = key
        month = _label_period(period)
        if version != cfg.mapping.actuals.version or month not in months or entity not in companies:
            continue
        amount = values.get("Amount")
        if isinstance(amount, Decimal):
            out[(entity, account, month)] += amount
    return dict(out)


def anaplan_plan(stack: Any, cfg: Any, months: set[date]) -> dict[str, dict[tuple[str, str, date], Decimal]]:
    """Approved plan cells per version (the versions the connection exports)."""
    versions = {e.version for e in cfg.mapping.plans.exports}
    approved = cfg.mapping.plans.approved_value
    out: dict[str, dict[tuple[str, str, date], Decimal]] = {v: defaultdict(lambda: ZERO) for v in versions}
    for (entity, account, period, version), values in stack.anaplan.app.module_cells("Plan").items():
        month = _label_period(period)
        if version not in versions or month not in months or values.get("Approval") != approved:
            continue
        amount = values.get("Amount")
        if isinstance(amount, Decimal):
            out[version][(entity, account, month)] += amount
    return {v: dict(d) for v, d in out.items()}


def fo_cumulative_plan(stack: Any, cfg: Any) -> dict[str, dict[tuple[str, str, date], Decimal]]:
    """F&O's cumulative plan per version: every line of every budget register entry and journal the
    connector wrote for an export (its header description starts with the export's tag), over all runs,
    read from the F&O sandbox's tables; budget lines in their stored (ledger) sign, journal lines as debit -
    credit, balancing lines left out."""
    from d365_anaplan.flows.journal import OFFSET_MEMO
    from d365_anaplan.flows.journal_keys import export_tag
    from devkit.sandbox.dynamics.budget import stored_amount

    app = stack.dynamics.app
    tags = {export_tag(cfg.name, e.export_action): e.version for e in cfg.mapping.plans.exports}
    out: dict[str, dict[tuple[str, str, date], Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))

    def version_of(text: object) -> str | None:
        return tags.get(str(text or "").split("-", 1)[0])

    with app.lock:
        for key, header in app.budget_headers.items():
            version = version_of(header.get("ReasonComment"))
            for line in app.budget_lines.get(key, []) if version else []:
                month = date.fromisoformat(str(line["EntryDate"])[:10]).replace(day=1)
                out[str(version)][(key[0], str(line["DimensionDisplayValue"]).split("-", 1)[0], month)] += (
                    stored_amount(line)
                )
        for key, header in app.journal_headers.items():
            version = version_of(header.get("Description"))
            for line in app.journal_lines.get(key, []) if version else []:
                if OFFSET_MEMO in str(line.get("Text") or ""):
                    continue
                month = date.fromisoformat(str(line["TransDate"])[:10]).replace(day=1)
                amount = Decimal(str(line["DebitAmount"])) - Decimal(str(line["CreditAmount"]))
                out[str(version)][(key[0], str(line["AccountDisplayValue"]).split("-", 1)[0], month)] += (
                    amount
                )
    return {v: {k: x for k, x in d.items() if x != 0} for v, d in out.items()}


def plan_versions(
    stack: Any, cfg: Any, plan: dict[str, dict[tuple[str, str, date], Decimal]],
    fo: dict[str, dict[tuple[str, str, date], Decimal]],
) -> list[tuple[str, str, str, Decimal, Decimal, int]]:  # fmt: skip
    """Rows of the report's "F&O cumulative plan per version" table: one per version and currency (the
    companies booking in that currency; amounts in different currencies are never added)."""
    from d365_anaplan.flows.journal import budget_target
    from d365_anaplan.flows.journal_keys import export_tag

    app = stack.dynamics.app
    j = cfg.dynamics.journal
    currencies = _currencies(cfg)

    def currency_of(company: str) -> str:  # a company the connection does not name stays on its own
        return currencies.get(company) or f"? ({company})"

    def in_currency(cells: dict[tuple[str, str, date], Decimal], cur: str) -> Decimal:
        return sum((v for k, v in cells.items() if currency_of(k[0]) == cur), ZERO)

    rows = []
    for e in cfg.mapping.plans.exports:
        tag = export_tag(cfg.name, e.export_action)
        if j.target == "budget_register":
            model, code, revision = budget_target(j, e, 0)
            where = f"budget register {model}, codes {code}/{revision}"
            pending = [key[0] for key, h in app.budget_headers.items()
                       if str(h["ReasonComment"]).startswith(tag + "-") and h["Status"] == "Draft"]  # fmt: skip
        else:
            where = f"journal {e.journal_name or j.journal_name}, layer {j.posting_layer}"
            pending = [key[0] for key, h in app.journal_headers.items()
                       if str(h["Description"]).startswith(tag + "-") and h["IsPosted"] != "Yes"]  # fmt: skip
        approved, held = plan.get(e.version, {}), fo.get(e.version, {})
        companies = {k[0] for k in approved} | {k[0] for k in held} | set(pending) | set(currencies)
        rows += [
            (e.version, where, cur, in_currency(approved, cur), in_currency(held, cur),
             sum(1 for co in pending if currency_of(co) == cur))
            for cur in sorted({currency_of(co) for co in companies})
        ]  # fmt: skip
    return rows


# --- counters --------------------------------------------------------------------------------------------

_METHODS = ("GET ", "POST ", "PUT ", "PATCH ", "DELETE ")


def request_counts(stack: Any) -> dict[str, Any]:
    fo = stack.dynamics.app.counters
    ana = stack.anaplan.app.counters
    fo_requests = sum(v for k, v in fo.items() if k.startswith(_METHODS))
    ana_requests = sum(v for k, v in ana.items() if k.startswith(_METHODS))
    return {
        "fo_requests": fo_requests,
        "fo_token_requests": sum(v for k, v in fo.items() if k.endswith("/oauth2/token")),
        "fo_tokens": len(stack.dynamics.app.entra.issued),
        "fo_429": fo.get("429", 0),
        "fo_batches": fo.get("POST /data/$batch", 0),
        "anaplan_requests": ana_requests,
        "anaplan_tokens": ana.get("tokens_minted", 0),
        "anaplan_tasks": ana.get("tasks_started", 0),
        "anaplan_polls": ana.get("polls", 0),
        "anaplan_429": ana.get("rate_limited", 0),
        "anaplan_chunks": ana.get("chunks_received", 0) + ana.get("single_uploads", 0),
    }


# --- the demo ------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    if not 1_000 <= args.gl_lines <= 1_000_000:
        print("d365-anaplan demo: --gl-lines must be between 1,000 and 1,000,000", file=sys.stderr)
        return c.EXIT_USAGE
    c.quiet_handlers(args.verbose)
    return _demo(args)


@c.guarded
def _demo(args: argparse.Namespace) -> int:
    from d365_anaplan.config import ConnectionConfig
    from d365_anaplan.ledger.audit import RunLedger
    from devkit import stack as stack_mod

    t0 = time.monotonic()
    print(
        f"Starting the F&O sandbox ({args.gl_lines:,} posted GL lines, 12 months) and the Anaplan sandbox…",
        flush=True,
    )
    stack = stack_mod.start(gl_lines=args.gl_lines)
    try:
        print(f"  F&O     {stack.dynamics.base_url}  ({stack.dynamics.app.gl.line_count:,} GL lines)")
        print(f"  Anaplan {stack.anaplan.api_url}")
        cfg = ConnectionConfig.model_validate(stack.connection())
        state = None if args.no_state else Path(args.state_dir)
        periods = {"from": PERIOD_FROM, "to": PERIOD_TO}
        facts: dict[str, RunFacts] = {}
        timings: dict[str, float] = {}
        # A fresh engine every time (the demo's sandboxes are new too); its ledger replaces the previous demo's.
        with c.local_engine(None) as engine:
            engine.install_connection(cfg)
            ledger = RunLedger(engine.resource_name("LedgerTable"))
            for flow, sm in c.FLOWS.items():
                run_id = c.new_run_id()
                print(f"\n▶ {flow}: {'F&O → Anaplan' if flow == 'actuals' else 'Anaplan → F&O'}, "
                      f"{PERIOD_FROM}..{PERIOD_TO} (run {run_id})", flush=True)  # fmt: skip
                started = time.monotonic()
                payload = {"connection": cfg.name, "trigger": "manual", "periods": periods}
                result = c.follow(
                    engine, sm, payload, name=run_id, progress=c.Progress(prefix="  ", show=not args.quiet)
                )
                timings[flow] = time.monotonic() - started
                facts[flow] = collect(ledger, run_id, result.output, flow, result.status)
                failure = c.run_failure(engine, result)
                if failure is not None:
                    facts[flow].problems.append(f"{failure.error}: {failure.message}")
            if state is not None:
                from devkit import local_state

                local_state.dump(engine, state)
        months = {date(2025, m, 1) for m in range(1, 13)}
        print("\nReconciling independently (F&O ledger vs Anaplan cells)…", flush=True)
        from devkit.report import Reconciliation

        recon_actuals = Reconciliation(
            "F&O trial balance vs Anaplan actuals", "F&O", "Anaplan",
            fo_trial_balance(stack, months), anaplan_actuals(stack, cfg, months), cfg.reconciliation_tolerance,
            note="Net posted amount per company, main account and month read from the F&O ledger, against the "
                 "cells of Anaplan's GL Actuals module (version Actual) summed over business unit, cost centre "
                 "and department.",
            currencies=_currencies(cfg), account_names=_account_names(),
        )  # fmt: skip
        plan = anaplan_plan(stack, cfg, months)
        fo_plan = fo_cumulative_plan(stack, cfg)
        recon_plan = Reconciliation(
            "F&O cumulative plan per version vs Anaplan approved plan", "Anaplan", "F&O",
            _versioned(plan),
            _versioned(fo_plan),
            cfg.reconciliation_tolerance,
            note="Approved budget and forecast cells of Anaplan's Plan module per company, account and month "
                 "(drafts excluded), against the cumulative total of every budget register entry (or journal) "
                 "the connector holds in F&O for that version, over all runs. Budget and forecast are compared "
                 "separately: the account column reads <version>:<account>.",
            currencies=_currencies(cfg), account_names=_account_names(),
        )  # fmt: skip
        counts = request_counts(stack)
        elapsed = time.monotonic() - t0
        ok = (
            all(f.status == "SUCCEEDED" and not f.problems for f in facts.values())
            and recon_actuals.ok
            and recon_plan.ok
        )
        report_path = _write_report(args.report, stack, cfg, facts, timings, recon_actuals, recon_plan,
                                    plan, months, counts, elapsed, ok,
                                    versions=plan_versions(stack, cfg, plan, fo_plan))  # fmt: skip
        _print_summary(facts, timings, recon_actuals, recon_plan, counts, elapsed, ok, report_path, state)
        if args.serve:
            _serve(stack, report_path.parent / "demo-connection.yaml")
    finally:
        stack.stop()
    return c.EXIT_OK if ok else c.EXIT_FAILED


def _serve(stack: Any, path: Path) -> None:
    import threading

    import yaml

    path.write_text(yaml.safe_dump(stack.connection(), sort_keys=False), encoding="utf-8")
    print(f"\nSandboxes still running; connection config: {path.resolve()}")
    print(f"  try: d365-anaplan check --config {path}")
    print(f"       d365-anaplan run actuals --config {path} --from 2025-01 --to 2025-03")
    print("Ctrl-C stops the sandboxes.", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopping…")


def _versioned(data: dict[str, dict[tuple[str, str, date], Decimal]]) -> dict[tuple[str, str, date], Decimal]:
    """One mapping keyed (company, "<version>:<account>", month) so each version is compared on its own."""
    return {(k[0], f"{version}:{k[1]}", k[2]): v for version, cells in data.items() for k, v in cells.items()}


def _print_summary(facts: dict[str, RunFacts], timings: dict[str, float], ra: Any, rp: Any,
                   counts: dict[str, Any], elapsed: float, ok: bool, report: Path, state: Path | None) -> None:  # fmt: skip
    for flow in ("actuals", "plans"):
        print_facts(facts[flow])
        print(f"  duration {timings[flow]:.1f}s")
    print("\nReconciliation (read independently from both systems)")
    for r in (ra, rp):
        print(f"  {r.title}: {r.status()} - {r.compared:,} company/account/period totals")
        print(f"    {r.side_text('left')}")
        print(f"    {r.side_text('right')}")
        for k, a, b, d in r.differences()[:10]:
            print(
                f"    {k[0]} {k[1]} {k[2]:%Y-%m}: {r.left_name} {c.money(a)}  {r.right_name} {c.money(b)}  diff {c.money(d)}"
            )
    print("\nRequests")
    c.table(
        [
            ["Dynamics 365 F&O", f"{counts['fo_requests']:,}", f"{counts['fo_tokens']:,}", f"{counts['fo_429']:,}",
             f"{counts['fo_batches']:,} $batch"],
            ["Anaplan", f"{counts['anaplan_requests']:,}", f"{counts['anaplan_tokens']:,}", f"{counts['anaplan_429']:,}",
             f"{counts['anaplan_tasks']:,} tasks, {counts['anaplan_polls']:,} polls"],
        ],
        ["system", "requests", "tokens minted", "429s", "notes"],
    )  # fmt: skip
    verdict = "everything reconciles" if ok else "SOMETHING DID NOT RECONCILE OR FAILED"
    print(f"\nDemo finished in {elapsed:.1f}s: {verdict}.")
    print(f"Run report: {report.resolve()}")
    if state is not None:
        print(
            f"The runs' ledger: d365-anaplan audit --state-dir {state}  (then: audit RUN --state-dir {state})"
        )
    if not ok:
        print("See the report and: d365-anaplan audit RUN")


def _currencies(cfg: Any) -> dict[str, str]:
    """Each company's accounting currency (the connection's journal currencies; the demo sets every company's)."""
    journal = cfg.dynamics.journal
    return {co: journal.currency_for(co) or "?" for co in cfg.dynamics.companies}


def _account_names() -> dict[str, str]:
    from devkit.sandbox.dynamics import seed as fo_seed

    return {a.account: a.name for a in fo_seed.MAIN_ACCOUNTS}


def _write_report(path: Path, stack: Any, cfg: Any, facts: dict[str, RunFacts], timings: dict[str, float],
                  ra: Any, rp: Any, plan: dict[str, dict[tuple[str, str, date], Decimal]], months: set[date],
                  counts: dict[str, Any], elapsed: float, ok: bool,
                  versions: list[tuple[str, str, str, Decimal, Decimal, int]] | None = None) -> Path:  # fmt: skip
    from devkit import report as rpt

    labels = [_period_label(m) for m in sorted(months)]
    plan_accounts = {k[1] for d in plan.values() for k in d}
    names = _account_names()
    currencies = _currencies(cfg)
    charts = []
    # One chart per company and account group: each company books in one currency, and figures in different
    # currencies are never added. Revenue (a credit) is negated for actuals and plans alike (rpt.SIGN_CONVENTION).
    for company in cfg.dynamics.companies:
        currency = currencies.get(company, "")
        for title, prefix, sign in (
            ("Revenue", ("4",), Decimal(-1)),
            ("Costs", ("5", "6", "7", "8"), Decimal(1)),
        ):
            accounts = sorted(a for a in plan_accounts if a.startswith(prefix))
            if not accounts:
                continue

            def monthly(
                cells: dict[tuple[str, str, date], Decimal],
                month: date,
                accounts: list[str] = accounts,
                sign: Decimal = sign,
                company: str = company,
            ) -> Decimal:
                return sign * sum(
                    (v for (co, a, m), v in cells.items() if co == company and a in accounts and m == month),
                    ZERO,
                )

            series = [
                rpt.Series(
                    "Actual (Anaplan)", [monthly(ra.right, m) for m in sorted(months)], "bar", "#3b82c4"
                )
            ]
            colors = {"Budget": "#e07b39", "Forecast": "#4a9e5c"}
            for version, cells in sorted(plan.items()):
                series.append(
                    rpt.Series(
                        f"{version} (approved)",
                        [monthly(cells, m) for m in sorted(months)],
                        "line",
                        colors.get(version, "#7a5ea8"),
                    )
                )
            listed = ", ".join(f"{a} {names.get(a, '')}".strip() for a in accounts)
            charts.append(rpt.Chart(
                f"{title} by month — {company}, {currency}", labels, series, unit=currency,
                note=f"Accounts: {listed}. {title} shown positive for actuals and plans alike; draft plan cells "
                     f"are not included. Amounts in {currency}.",
            ))  # fmt: skip
    fa, fp = facts["actuals"], facts["plans"]
    flows: list[dict[str, Any]] = [
        {
            "name": "Actuals: F&O → Anaplan",
            "status": fa.status,
            "rows": [("Run", fa.run_id), ("Duration", f"{timings['actuals']:.1f}s")]
            + [(f"GL lines read ({co})", n) for co, n, _t in fa.gl]
            + [(f"List '{a}'", r) for a, r, _o in fa.lists]
            + [("Actuals file rows", fa.file_rows or 0), ("Rows imported", int(fa.import_counts.get("success", 0))),
               ("Rows rejected", int(fa.import_counts.get("failed", 0))), ("Connector's own check", fa.reconciled or "-")],
        },
        {
            "name": "Plans: Anaplan → F&O",
            "status": fp.status,
            "rows": [("Run", fp.run_id), ("Duration", f"{timings['plans']:.1f}s")]
            + [(f"Export '{n}' approved rows", a) for n, a, _d, _t in fp.exports]
            + [(f"Export '{n}' not approved (skipped)", d) for n, _a, d, _t in fp.exports]
            + [("Journals written", len(fp.written)), ("Journal lines written", fp.lines_written),
               ("Lines rejected", fp.lines_failed), ("Connector's own check", fp.reconciled or "-")],
        },
    ]  # fmt: skip
    for f, fl in ((fa, flows[0]), (fp, flows[1])):
        fl["rows"] = [*fl["rows"], *[("Problem", p) for p in f.problems]]
    data = rpt.ReportData(
        title="Dynamics 365 F&O ⇄ Anaplan — run report",
        subtitle=f"Connection '{cfg.name}', periods {PERIOD_FROM}..{PERIOD_TO}, companies "
        f"{', '.join(cfg.dynamics.companies)}; generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        summary=[
            ("GL lines read from F&O", f"{sum(n for _c, n, _t in fa.gl):,}"),
            ("Actuals rows loaded into Anaplan", f"{int(fa.import_counts.get('success', 0)):,}"),
            ("Plan journal lines written to F&O", f"{fp.lines_written:,}"),
            ("Actuals reconciliation", ra.status()),
            ("Plan reconciliation", rp.status()),
            ("Duration", f"{elapsed:.0f}s"),
        ],
        flows=flows,
        charts=charts,
        reconciliations=[ra, rp],
        requests=[
            ("Dynamics 365 F&O", "HTTP requests", str(counts["fo_requests"])),
            ("Dynamics 365 F&O", "Entra tokens minted", str(counts["fo_tokens"])),
            ("Dynamics 365 F&O", "$batch requests (journal writes)", str(counts["fo_batches"])),
            ("Dynamics 365 F&O", "429 answers", str(counts["fo_429"])),
            ("Anaplan", "HTTP requests", str(counts["anaplan_requests"])),
            ("Anaplan", "AnaplanAuthTokens minted", str(counts["anaplan_tokens"])),
            (
                "Anaplan",
                "action tasks started / polls",
                f"{counts['anaplan_tasks']} / {counts['anaplan_polls']}",
            ),
            ("Anaplan", "429 answers", str(counts["anaplan_429"])),
        ],
        ok=ok,
        plan_versions=versions or [],
    )
    return rpt.write(data, path)
