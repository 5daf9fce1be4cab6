"""``d365-anaplan audit [RUN]``: a run's ledger as tables - steps, files, tasks, journals, failures.

Reads the local state directory (what ``run``/``replay``/``demo`` left behind), or with ``--stack NAME`` the
ledger table of a deployed stack (same output). Without RUN it lists the runs
it holds (dry runs marked, runs other processes are executing now shown as in progress). RUN may be a unique
prefix of a run id; ``--trace`` takes a key as the tables show it (a file as ``actuals/actuals.csv``) or whole.
Details are never cut: ``--json`` gives the same facts machine-readable.
"""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal
from typing import Any

from devkit.commands import _common as c
from devkit.commands.deployed import add_stack_args


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
    add_stack_args(parser)
    parser.epilog = "exit codes: 0 the run succeeded or is in progress (or the list was printed), 1 the run failed or was aborted, 2 no such run or no local state"


def _plain(value: Any) -> Any:
    """Ledger numbers come back as Decimal: whole ones print as numbers, others as exact text."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _text(value: Any) -> str:
    """A detail as one line of compact JSON (or the text itself), whole."""
    return value if isinstance(value, str) else json.dumps(_plain(value), default=str, separators=(",", ":"))


def _dry(record: Any, ledger: Any = None) -> bool:
    """A dry run: asked for, or a replay of a dry run (the PeriodWindow step records what the run decided)."""
    if (record.detail.get("request") or {}).get("dry_run"):
        return True
    if ledger is not None:
        return any(s.step == "PeriodWindow" and s.detail.get("dry_run") for s in ledger.steps(record.run_id))
    return False


def _periods(ledger: Any, record: Any) -> str:
    periods = (record.detail.get("request") or {}).get("periods") or {}
    if periods.get("from"):
        return f"{periods['from']}..{periods.get('to') or periods['from']}"
    for step in ledger.steps(record.run_id):
        if step.step == "PeriodWindow" and step.detail.get("from"):
            return f"{step.detail['from']}..{step.detail['to']}"
    return ""


def _status(record: Any, ledger: Any) -> str:
    return f"{record.status} (dry run)" if _dry(record, ledger) else str(record.status)


_FAILED = ("FAILED", "ABORTED")


@c.guarded
def run(args: argparse.Namespace) -> int:
    from d365_anaplan.ledger.audit import RunLedger
    from devkit import local_state

    c.quiet_handlers(args.verbose)
    if getattr(args, "stack", None):
        from devkit.commands.deployed import Deployed, StackError

        try:
            deployed = Deployed.resolve(args)
        except StackError as exc:
            print(f"d365-anaplan: {exc}", file=sys.stderr)
            return c.EXIT_USAGE
        return _report(args, deployed.ledger(), f"stack {deployed.stack}", [])
    directory = c.state_dir(args)
    live = local_state.runs_in_progress(directory)
    if not local_state.exists(directory) and live and _show_live(args, live, directory):
        return c.EXIT_OK  # nothing saved yet, but a first run is executing
    if not local_state.exists(directory):
        print(
            f"d365-anaplan audit: no local state in {directory} (run a flow first, or pass --state-dir)",
            file=sys.stderr,
        )
        return c.EXIT_USAGE
    with local_state.ledger_tables(directory) as tables:
        return _report(args, RunLedger(tables["LedgerTable"]), str(directory), live)


def _report(args: argparse.Namespace, ledger: Any, directory: str, live: list[dict[str, Any]]) -> int:
    """The listing, one run, or one record's trace - from a local state directory or a deployed stack."""
    from d365_anaplan.errors import RecordNotFound

    runs = ledger.all_runs()
    if not args.run_id:
        if args.json:
            listed = [
                {**_run_json(r), "dry_run": _dry(r, ledger), "periods": _periods(ledger, r)} for r in runs
            ]
            listed += [{**i, "status": "RUNNING", "in_progress": True} for i in live]
            print(json.dumps(_plain(listed), indent=2, default=str))
            return c.EXIT_OK
        print(f"runs in {directory}:")
        rows = [
            [
                r.run_id,
                r.connection,
                r.flow,
                r.trigger,
                _status(r, ledger),
                _periods(ledger, r),
                r.started_at.isoformat(timespec="seconds"),
            ]
            for r in runs
        ]
        rows += _live_rows(live)
        c.table(rows, ["run", "connection", "flow", "trigger", "status", "periods", "started (UTC)"])
        return c.EXIT_OK  # fmt: skip
    running = [i for i in live if str(i["run_id"]).startswith(args.run_id)]
    matches = [r for r in runs if r.run_id.startswith(args.run_id)]
    if len(running) == 1 and not matches:
        info = running[0]
        if args.json:
            print(json.dumps({**info, "status": "RUNNING", "in_progress": True}, indent=2, default=str))
        else:
            print(f"run {info['run_id']}\n  connection {info.get('connection')}, flow {info.get('flow')}\n"
                  f"  status RUNNING: in progress in process {info['pid']} since {info.get('started_at')}; "
                  "its ledger is here once that command ends")  # fmt: skip
        return c.EXIT_OK
    if len(matches) != 1:
        why = "no run" if not matches else f"{len(matches)} runs"
        print(f"d365-anaplan audit: {why} matching {args.run_id!r} in {directory}", file=sys.stderr)
        return c.EXIT_USAGE
    record = matches[0]
    run_id = record.run_id
    if args.trace:
        key = _trace_key(ledger, run_id, args.trace)
        try:
            events = ledger.trace(run_id, key)
        except RecordNotFound as exc:
            print(f"d365-anaplan audit: {exc}", file=sys.stderr)
            return c.EXIT_USAGE
        if args.json:
            from dataclasses import asdict

            print(json.dumps(_plain([asdict(e) for e in events]), indent=2, default=str))
        else:
            c.table([[e.at.isoformat(timespec="seconds"), e.kind, e.key, e.status, _text(e.detail)] for e in events],
                    ["at", "kind", "key", "status", "detail"])  # fmt: skip
        return c.EXIT_FAILED if record.status in _FAILED else c.EXIT_OK
    if args.json:
        print(json.dumps(_plain(_ledger_json(ledger, record)), indent=2, default=str))
    else:
        _print(ledger, record, events=args.events)
    return c.EXIT_FAILED if record.status in _FAILED else c.EXIT_OK


def _trace_key(ledger: Any, run_id: str, key: str) -> str:
    """A file key as the files table shows it (relative to the run) becomes the staged S3 key."""
    for f in ledger.files(run_id):
        if f.key.split(f"{run_id}/", 1)[-1] == key:
            return str(f.key)
    return key


def _run_json(r: Any) -> dict[str, Any]:
    return {k: getattr(r, k) for k in ("run_id", "connection", "flow", "trigger", "status", "started_at",
                                       "finished_at", "cause", "summary", "redriven")}  # fmt: skip


def _ledger_json(ledger: Any, record: Any) -> dict[str, Any]:
    from dataclasses import asdict

    rid = record.run_id
    return {
        "run": {**_run_json(record), "dry_run": _dry(record, ledger), "periods": _periods(ledger, record)},
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
    periods = _periods(ledger, record)
    if periods:
        w(f"  periods {periods}{'' if request.get('periods') else ' (chosen by the close gate)'}\n")
    if _dry(record, ledger):
        w("  dry run: nothing was written to either system\n")
    if request.get("replay_of"):
        w(f"  replay of {request['replay_of']}\n")
    if record.redriven:
        w(f"  redriven {record.redriven} time(s)\n")
    if record.cause:
        w(f"  cause: {record.cause.get('Error')}: {c._cause_message(str(record.cause.get('Cause', '')))}\n")

    steps = ledger.steps(rid)
    w(f"\nsteps ({len(steps)})\n")
    c.table(
        [[s.step, str(s.attempt), s.status, _text(s.detail)] for s in steps],
        ["step", "try", "status", "detail"],
    )
    files = ledger.files(rid)
    w(f"\nfiles ({len(files)})\n")
    c.table([[f.key.split(f"{rid}/", 1)[-1], f.step, f"{f.rows:,}", f"{f.bytes:,}", f.sha256[:12]] for f in files],
            ["file", "step", "rows", "bytes", "sha256"])  # fmt: skip
    tasks = ledger.tasks(rid)
    w(f"\nAnaplan tasks ({len(tasks)})\n")
    c.table(
        [[t.task_id, t.action_kind, t.action_id, t.state, _text(t.result or {})] for t in tasks],
        ["task", "kind", "action", "state", "result"],
    )
    journals = ledger.journals(rid)
    company_of = {str(j.get("key")): str(j.get("company", "")) for s in steps if s.step == "PlanJournals"
                  for j in s.detail.get("journals") or []}  # fmt: skip
    w(f"\nF&O journals ({len(journals)})\n")
    c.table(
        [[j.journal_key, j.status, j.fo_journal_batch or "", str(j.detail.get("company") or company_of.get(j.journal_key, "")),
          str(j.detail.get("lines", j.detail.get("written", ""))), _text(j.detail)] for j in journals],
        ["journal", "status", "F&O batch", "company", "lines", "detail"],
    )  # fmt: skip
    failed = ledger.failed_journal_lines(rid)
    w(f"\nfailed journal lines ({len(failed)})\n")
    if failed:
        c.table(
            [[f.line_key, f.journal_key, _text(f.error or "")] for f in failed],
            ["line", "journal", "error"],
        )
    if events:
        items = ledger.run_items(rid)
        w(f"\nevents ({len(items)})\n")
        c.table([[e.at.isoformat(timespec="seconds"), e.kind, e.key, e.status, _text(e.detail)]
                 for e in items], ["at", "kind", "key", "status", "detail"])  # fmt: skip


def _live_rows(live: list[dict[str, Any]]) -> list[list[str]]:
    return [[str(i["run_id"]), str(i.get("connection", "")), str(i.get("flow", "")), str(i.get("trigger", "")),
             f"RUNNING{' (dry run)' if i.get('dry_run') else ''} (in progress, pid {i['pid']})", "",
             str(i.get("started_at", ""))[:19]] for i in live]  # fmt: skip


def _show_live(args: argparse.Namespace, live: list[dict[str, Any]], directory: Any) -> bool:
    """Runs in progress when nothing is saved yet; False when RUN names none of them."""
    if args.run_id:
        live = [i for i in live if str(i["run_id"]).startswith(args.run_id)]
        if len(live) != 1:
            return False
    if args.json:
        print(
            json.dumps([{**i, "status": "RUNNING", "in_progress": True} for i in live], indent=2, default=str)
        )
        return True
    print(f"runs in {directory}:")
    c.table(_live_rows(live), ["run", "connection", "flow", "trigger", "status", "periods", "started (UTC)"])
    return True
