"""``d365-anaplan start actuals|plans --stack NAME --connection NAME``: start a flow of a deployed stack.

The execution input is what a manual start in the console takes (``periods``, ``dry_run``); the command
follows the execution and prints what ``run`` prints locally (``--no-wait`` only starts it).
"""

from __future__ import annotations

import argparse
import sys
import time

from devkit.commands import _common as c
from devkit.commands.deployed import Deployed, StackError, add_stack_args
from devkit.commands.exit_codes import EPILOG


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "flow", choices=sorted(c.FLOWS), help="actuals (F&O -> Anaplan) or plans (Anaplan -> F&O)"
    )
    add_stack_args(parser, required=True)
    parser.add_argument(
        "--connection", required=True, metavar="NAME", help="the connection (connections/NAME.yaml)"
    )
    parser.add_argument("--from", dest="period_from", metavar="PERIOD", help="first period, YYYY-MM")
    parser.add_argument("--to", dest="period_to", metavar="PERIOD", help="last period, YYYY-MM")
    parser.add_argument(
        "--dry-run", action="store_true", help="stop before anything is written to either system"
    )
    parser.add_argument(
        "--accept-drift",
        action="store_true",
        help="accept changed model metadata since the last successful run (execution input accept_drift)",
    )
    parser.add_argument(
        "--accept-failed-reconcile",
        action="store_true",
        help="plans: write although the last plans run failed ReconcilePlan (execution input "
        "accept_failed_reconcile)",
    )
    parser.add_argument("--no-wait", action="store_true", help="start the execution and return")
    parser.add_argument(
        "--timeout", type=float, default=4 * 3600.0, help="seconds to follow it (default 4 h)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines, only the result")
    parser.epilog = EPILOG


def run(args: argparse.Namespace) -> int:
    from devkit.commands.run import periods_of

    try:
        periods = periods_of(args)
    except ValueError as exc:
        print(f"d365-anaplan start: {exc}", file=sys.stderr)
        return c.EXIT_USAGE
    payload: dict[str, object] = {"connection": args.connection, "trigger": "manual"}
    if periods:
        payload["periods"] = periods
    if args.dry_run:
        payload["dry_run"] = True
    if args.accept_drift:
        payload["accept_drift"] = True
    if args.accept_failed_reconcile:
        payload["accept_failed_reconcile"] = True
    return start_and_follow(args, args.flow, payload)


def start_and_follow(args: argparse.Namespace, flow: str, payload: dict[str, object]) -> int:
    """Start ``flow`` on the stack (run id = execution name), follow it and report it like a local run."""
    from devkit.commands.run import report

    try:
        deployed = Deployed.resolve(args)
    except StackError as exc:
        print(f"d365-anaplan: {exc}", file=sys.stderr)
        return c.EXIT_USAGE
    flows = deployed.flows()
    run_id = c.new_run_id()
    started = time.monotonic()
    what = f"replay of {payload['replay_of']}" if payload.get("replay_of") else "run"
    print(
        f"{flow} {what} {run_id} for connection {payload['connection']!r} (stack {deployed.stack})",
        flush=True,
    )
    where = f" --stack {deployed.stack}"
    if args.no_wait:
        arn = flows.start_execution(c.FLOWS[flow], payload, run_id)
        print(f"started {arn}\nfollow: d365-anaplan audit {run_id}{where}")
        return c.EXIT_OK
    result = c.follow(flows, c.FLOWS[flow], payload, name=run_id, progress=c.Progress(show=not args.quiet),
                      timeout=args.timeout, poll=2.0)  # fmt: skip
    return report(deployed.ledger(), flows, result, flow, run_id, started, None, where)
