"""``d365-anaplan run actuals|plans``: run a flow's real state machine on the local engine.

The connection comes from ``--config`` and is installed the way a deployment stores it (credentials in the
local Secrets Manager); the ledger and staged files are kept in the local state directory afterwards, so
``audit RUN`` and ``replay RUN`` work in later invocations.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import TYPE_CHECKING, Any

from devkit.commands import _common as c
from devkit.commands import remedies
from devkit.commands._describe import collect, print_facts
from devkit.commands.exit_codes import EPILOG

if TYPE_CHECKING:
    from devkit.engine import LocalEngine

PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "flow", choices=sorted(c.FLOWS), help="actuals (F&O -> Anaplan) or plans (Anaplan -> F&O)"
    )
    c.add_config_args(parser)
    parser.add_argument("--from", dest="period_from", metavar="PERIOD", help="first period, YYYY-MM")
    parser.add_argument("--to", dest="period_to", metavar="PERIOD", help="last period, YYYY-MM")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="stop before anything is written to either system and show what would be",
    )
    parser.add_argument(
        "--accept-drift",
        action="store_true",
        help="accept changed model metadata (import columns, export layouts, list members) since the last "
        "successful run, and record the new fingerprint (otherwise the run stops with MetadataDrift)",
    )
    parser.add_argument(
        "--accept-failed-reconcile",
        action="store_true",
        help="plans: write although the last plans run failed ReconcilePlan, once its cause is fixed and checked "
        "(otherwise the run stops with PreviousReconcileFailed)",
    )
    parser.add_argument(
        "--wait-scale",
        type=float,
        default=0.0,
        metavar="X",
        help="scale the flows' Wait states and retry back-off (0 = no waiting, 1 = real time; default 0)",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds before giving up (default 1800)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines, only the result")
    c.add_state_args(parser)
    parser.epilog = EPILOG


def periods_of(args: argparse.Namespace) -> dict[str, str] | None:
    start, end = args.period_from, args.period_to
    for name, value in (("--from", start), ("--to", end)):
        if value is not None and not PERIOD.match(value):
            raise ValueError(f"{name}: {value!r} is not a period (YYYY-MM)")
    if start is None and end is None:
        return None
    start = start or end
    end = end or start
    if start > end:
        raise ValueError(f"--from {start} is after --to {end}")
    return {"from": start, "to": end}


@c.guarded
def run(args: argparse.Namespace) -> int:
    c.quiet_handlers(args.verbose)
    try:
        periods = periods_of(args)
    except ValueError as exc:
        print(f"d365-anaplan run: {exc}", file=sys.stderr)
        return c.EXIT_USAGE
    if args.wait_scale < 0:
        print("d365-anaplan run: --wait-scale must be >= 0", file=sys.stderr)
        return c.EXIT_USAGE
    cfg = c.load_config(args)
    payload: dict[str, object] = {"connection": cfg.name, "trigger": "manual"}
    if periods:
        payload["periods"] = periods
    if args.dry_run:
        payload["dry_run"] = True
    if args.accept_drift:
        payload["accept_drift"] = True
    if args.accept_failed_reconcile:
        payload["accept_failed_reconcile"] = True
    return execute(args, cfg, args.flow, payload)


def execute(args: argparse.Namespace, cfg: object, flow: str, payload: dict[str, object]) -> int:
    """Open the local engine (with the saved state) and run the flow in it."""
    with c.local_engine(c.state_dir(args), wait_scale=args.wait_scale) as engine:
        return run_in(engine, args, cfg, flow, payload)


def run_in(
    engine: LocalEngine, args: argparse.Namespace, cfg: object, flow: str, payload: dict[str, object]
) -> int:
    """Install the connection, run the flow with progress, print what moved; shared with ``replay``."""
    from d365_anaplan.ledger.audit import RunLedger

    run_id = c.new_run_id()
    started = time.monotonic()
    engine.install_connection(cfg)
    what = f"replay of {payload['replay_of']}" if payload.get("replay_of") else "run"
    print(f"{flow} {what} {run_id} for connection {payload['connection']!r} (local engine)", flush=True)
    from devkit.local_state import marking_run

    progress = c.Progress(show=not args.quiet)
    trigger = "replay" if payload.get("replay_of") else str(payload.get("trigger", "manual"))
    info = {
        "connection": payload["connection"],
        "flow": flow,
        "trigger": trigger,
        "dry_run": bool(payload.get("dry_run")),
    }
    try:
        with marking_run(c.state_dir(args), run_id, info):
            result = c.follow(
                engine, c.FLOWS[flow], payload, name=run_id, progress=progress, timeout=args.timeout
            )
    except KeyboardInterrupt:
        return abort(engine, flow, run_id, started)
    return report(RunLedger(engine.resource_name("LedgerTable")), engine, result, flow, run_id, started, cfg)


def report(
    ledger: Any,
    engine: Any,
    result: Any,
    flow: str,
    run_id: str,
    started: float,
    cfg: object | None,
    where: str = "",
) -> int:
    """What the finished run moved, or why it failed and what to do (same output locally and for a stack)."""
    facts = collect(ledger, run_id, result.output, flow, result.status)
    print_facts(facts)
    failure = c.run_failure(engine, result, ledger)
    elapsed = time.monotonic() - started
    if failure is not None:
        print(f"\nFAILED after {elapsed:.1f}s: {failure.error}: {failure.message}")
        remedy = remedies.for_failure(failure.error, failure.message, cfg)
        if remedy:
            print(f"remedy: {remedy}")
        print(f"see: d365-anaplan audit {run_id}{where}")
        return failure.exit_code()
    print(f"\n{result.status} in {elapsed:.1f}s - details: d365-anaplan audit {run_id}{where}")
    return c.EXIT_OK


def abort(engine: LocalEngine, flow: str, run_id: str, started: float) -> int:
    """Ctrl-C during a run: stop the execution, record the run as ABORTED and release the model lease it held
    (as the LeaseJanitor does for an aborted execution in AWS), so the next run is not kept waiting."""
    import signal

    from d365_anaplan.errors import RecordNotFound
    from d365_anaplan.ledger.audit import RunLedger
    from d365_anaplan.ledger.lease import ModelLease

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # finish the clean-up before the next Ctrl-C
    try:
        from contextlib import suppress

        from botocore.exceptions import ClientError

        arn = engine.execution_arn(c.FLOWS[flow], run_id)
        with suppress(ClientError):  # interrupted before the execution existed
            engine.stop_execution(arn, error="Interrupted", cause="stopped with Ctrl-C in d365-anaplan")
        table = engine.resource_name("LedgerTable")
        cause = {"Error": "Interrupted", "Cause": "stopped with Ctrl-C in d365-anaplan"}
        try:
            RunLedger(table).finish_run(run_id, "ABORTED", cause=cause)
            recorded = "recorded as ABORTED"
        except RecordNotFound:
            recorded = "not opened yet, nothing recorded"
        released = ModelLease(table).release_owned_by(arn)
        lease = f"model lease released ({', '.join(released)})" if released else "no model lease held"
        print(f"\nINTERRUPTED after {time.monotonic() - started:.1f}s: run {run_id} {recorded}; {lease}")
        print(f"see: d365-anaplan audit {run_id}", flush=True)
        return c.EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, previous)
