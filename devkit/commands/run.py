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
from typing import TYPE_CHECKING

from devkit.commands import _common as c
from devkit.commands._describe import collect, print_facts

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
    parser.epilog = "exit codes: 0 succeeded, 1 the run failed, 2 usage or configuration error, 3 a system was unreachable or refused us"


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
    progress = c.Progress(show=not args.quiet)
    result = c.follow(engine, c.FLOWS[flow], payload, name=run_id, progress=progress, timeout=args.timeout)
    ledger = RunLedger(engine.resource_name("LedgerTable"))
    facts = collect(ledger, run_id, result.output, flow, result.status)
    print_facts(facts)
    failure = c.run_failure(engine, result)
    elapsed = time.monotonic() - started
    if failure is not None:
        print(f"\nFAILED after {elapsed:.1f}s: {failure.error}: {failure.message}")
        print(f"see: d365-anaplan audit {run_id}")
        return failure.exit_code()
    print(f"\n{result.status} in {elapsed:.1f}s - details: d365-anaplan audit {run_id}")
    return c.EXIT_OK
