"""``d365-anaplan audit [RUN]``: a run's ledger as tables - steps, files, tasks, journals, failures.

Reads the local state directory (what ``run``/``replay``/``demo`` left behind). Without RUN it lists the runs
it holds. RUN may be a unique prefix of a run id.
"""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal
from typing import Any

from devkit.commands import _common as c


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_id", nargs="?", metavar="RUN", help="run id (or a unique prefix); omit to list runs"
    )
    parser.add_argument("--events", action="store_true", help="also print the run's full event timeline")
    parser.add_argument(
        "--trace", metavar="KEY", help="what happened to one record (line key, S3 key, task id...)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    c.add_state_args(parser)
    parser.epilog = "exit codes: 0 the run succeeded (or the list was printed), 1 the run failed, 2 no such run or no local state"


def _plain(value: Any) -> Any:
    """Ledger numbers come back as Decimal: whole ones print as numbers, others as exact text."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _short(value: Any, width: int = 70) -> str:
    text = value if isinstance(value, str) else json.dumps(_plain(value), default=str, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


@c.guarded
def run(args: argparse.Namespace) -> int:
    from d365_anaplan.errors import RecordNotFound
    from d365_anaplan.ledger.audit import RunLedger
    from devkit import local_state

    c.quiet_handlers(args.verbose)
    directory = c.state_dir(args)
    if not local_state.exists(directory):
        print(
            f"d365-anaplan audit: no local state in {directory} (run a flow first, or pass --state-dir)",
            file=sys.stderr,
        )
        return c.EXIT_USAGE
    with local_state.ledger_tables(directory) as tables:
        ledger = RunLedger(tables["LedgerTable"])
        runs = ledger.all_runs()
        if not args.run_id:
            if args.json:
                print(json.dumps(_plain([_run_json(r) for r in runs]), indent=2, default=str))
                return c.EXIT_OK
            print(f"runs in {directory}:")
            c.table(
                [[r.run_id, r.connection, r.flow, r.trigger, r.status, r.started_at.isoformat(timespec="seconds")] for r in runs],
                ["run", "connection", "flow", "trigger", "status", "started (UTC)"],
            )  # fmt: skip
            return c.EXIT_OK
        matches = [r for r in runs if r.run_id.startswith(args.run_id)]
        if len(matches) != 1:
            why = "no run" if not matches else f"{len(matches)} runs"
            print(f"d365-anaplan audit: {why} matching {args.run_id!r} in {directory}", file=sys.stderr)
            return c.EXIT_USAGE
        record = matches[0]
        run_id = record.run_id
        if args.trace:
            try:
                events = ledger.trace(run_id, args.trace)
            except RecordNotFound as exc:
                print(f"d365-anaplan audit: {exc}", file=sys.stderr)
                return c.EXIT_USAGE
            c.table([[e.at.isoformat(timespec="seconds"), e.kind, e.key, e.status, _short(e.detail)] for e in events],
                    ["at", "kind", "key", "status", "detail"])  # fmt: skip
            return c.EXIT_OK if record.status != "FAILED" else c.EXIT_FAILED
        if args.json:
            print(json.dumps(_plain(_ledger_json(ledger, record)), indent=2, default=str))
        else:
            _print(ledger, record, events=args.events)
    return c.EXIT_FAILED if record.status == "FAILED" else c.EXIT_OK


def _run_json(r: Any) -> dict[str, Any]:
    return {k: getattr(r, k) for k in ("run_id", "connection", "flow", "trigger", "status", "started_at",
                                       "finished_at", "cause", "summary", "redriven")}  # fmt: skip


def _ledger_json(ledger: Any, record: Any) -> dict[str, Any]:
    from dataclasses import asdict

    rid = record.run_id
    return {
        "run": _run_json(record),
        "request": record.detail.get("request"),
        "steps": [asdict(s) for s in ledger.steps(rid)],
        "files": [asdict(f) for f in ledger.files(rid)],
        "tasks": [asdict(t) for t in ledger.tasks(rid)],
        "journals": [asdict(j) for j in ledger.journals(rid)],
        "failed_lines": [asdict(line) for line in ledger.failed_journal_lines(rid)],
    }


def _print(ledger: Any, record: Any, *, events: bool) -> None:
    rid = record.run_id
    w = sys.stdout.write
    duration = ""
    if record.finished_at:
        duration = f" in {(record.finished_at - record.started_at).total_seconds():.1f}s"
    w(f"run {rid}\n")
    w(f"  connection {record.connection}, flow {record.flow}, trigger {record.trigger}\n")
    w(f"  status {record.status}{duration}; started {record.started_at.isoformat(timespec='seconds')}\n")
    request = record.detail.get("request") or {}
    if request.get("periods"):
        w(f"  periods {request['periods'].get('from')}..{request['periods'].get('to')}\n")
    if request.get("dry_run"):
        w("  dry run: nothing was written to either system\n")
    if request.get("replay_of"):
        w(f"  replay of {request['replay_of']}\n")
    if record.redriven:
        w(f"  redriven {record.redriven} time(s)\n")
    if record.cause:
        w(
            f"  cause: {record.cause.get('Error')}: {c._cause_message(str(record.cause.get('Cause', '')))[:500]}\n"
        )

    steps = ledger.steps(rid)
    w(f"\nsteps ({len(steps)})\n")
    c.table(
        [[s.step, str(s.attempt), s.status, _short(s.detail)] for s in steps],
        ["step", "try", "status", "detail"],
    )
    files = ledger.files(rid)
    w(f"\nfiles ({len(files)})\n")
    c.table([[f.key.split(f"{rid}/", 1)[-1], f.step, f"{f.rows:,}", f"{f.bytes:,}", f.sha256[:12]] for f in files],
            ["file", "step", "rows", "bytes", "sha256"])  # fmt: skip
    tasks = ledger.tasks(rid)
    w(f"\nAnaplan tasks ({len(tasks)})\n")
    c.table(
        [[t.task_id, t.action_kind, t.action_id, t.state, _short(t.result or {}, 60)] for t in tasks],
        ["task", "kind", "action", "state", "result"],
    )
    journals = ledger.journals(rid)
    w(f"\nF&O journals ({len(journals)})\n")
    c.table(
        [[j.journal_key, j.status, j.fo_journal_batch or "", str(j.detail.get("company", "")),
          str(j.detail.get("lines", j.detail.get("written", ""))), _short(j.detail, 50)] for j in journals],
        ["journal", "status", "F&O batch", "company", "lines", "detail"],
    )  # fmt: skip
    failed = ledger.failed_journal_lines(rid)
    w(f"\nfailed journal lines ({len(failed)})\n")
    if failed:
        c.table(
            [[f.line_key, f.journal_key, _short(f.error or "", 80)] for f in failed],
            ["line", "journal", "error"],
        )
    if events:
        items = ledger.run_items(rid)
        w(f"\nevents ({len(items)})\n")
        c.table([[e.at.isoformat(timespec="seconds"), e.kind, _short(e.key, 40), e.status, _short(e.detail, 60)]
                 for e in items], ["at", "kind", "key", "status", "detail"])  # fmt: skip
