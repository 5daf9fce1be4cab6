"""``d365-anaplan replay RUN --config FILE``: run a past run's flow again from its staged files.

The flow (actuals or plans), the periods and dry-run mode come from the original run in the local ledger
(``--write`` replays a dry run for real); the new run gets
its own copy of the original's staged inputs, so nothing is extracted from the source system again and the
original run stays untouched. Journals are keyed by content, so a replayed plans run resumes the same F&O
journals and never writes a line twice.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from devkit.commands import _common as c
from devkit.commands.deployed import add_stack_args
from devkit.commands.exit_codes import EPILOG
from devkit.commands.run import run_in


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN", help="the run to replay (its id, or a unique prefix)")
    c.add_config_args(parser, required=False)
    add_stack_args(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run",
        action="store_true",
        help="stop before anything is written to either system (a replay of a dry run is one anyway)",
    )
    mode.add_argument(
        "--write",
        action="store_true",
        help="replay a dry run for real (without it, a replay of a dry run stays a dry run)",
    )
    parser.add_argument(
        "--wait-scale", type=float, default=0.0, metavar="X", help="scale Wait states (default 0)"
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds before giving up (default 1800)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines, only the result")
    c.add_state_args(parser)
    parser.epilog = EPILOG


@c.guarded
def run(args: argparse.Namespace) -> int:
    from d365_anaplan.ledger.audit import RunLedger
    from devkit import local_state

    c.quiet_handlers(args.verbose)
    if args.stack:
        return _replay_on_stack(args)
    if args.config is None:
        print(
            "d365-anaplan replay: --config FILE (local) or --stack NAME (deployed) is required",
            file=sys.stderr,
        )
        return c.EXIT_USAGE
    cfg = c.load_config(args)
    directory = c.state_dir(args)
    if not local_state.exists(directory):
        print(
            f"d365-anaplan replay: no local state in {directory} (nothing has run here yet)", file=sys.stderr
        )
        return c.EXIT_USAGE
    with c.local_engine(directory, wait_scale=args.wait_scale) as engine:
        ledger = RunLedger(engine.resource_name("LedgerTable"))
        matches = [r for r in ledger.all_runs() if r.run_id.startswith(args.run_id)]
        if len(matches) != 1:
            why = "no run" if not matches else f"{len(matches)} runs"
            print(f"d365-anaplan replay: {why} matching {args.run_id!r} in {directory}", file=sys.stderr)
            return c.EXIT_USAGE
        original = matches[0]
        if original.connection != cfg.name:
            print(
                f"d365-anaplan replay: run {original.run_id} belongs to connection {original.connection!r}, "
                f"the config names {cfg.name!r}",
                file=sys.stderr,
            )
            return c.EXIT_USAGE
        payload: dict[str, object] = {
            "connection": cfg.name,
            "trigger": "replay",
            "replay_of": original.run_id,
        }
        _mode(args, original, payload)
        return run_in(engine, args, cfg, original.flow, payload)


def _mode(args: argparse.Namespace, original: Any, payload: dict[str, object]) -> None:
    """--dry-run / --write into the payload; a replay of a dry run stays one unless --write (said out loud)."""
    if args.dry_run:
        payload["dry_run"] = True
    elif args.write:
        payload["dry_run"] = False  # asked for: a dry run replayed for real
    if (original.detail.get("request") or {}).get("dry_run") and not args.write:
        print(f"run {original.run_id} was a dry run: the replay is one too (--write replays it for real)")


def _replay_on_stack(args: argparse.Namespace) -> int:
    from devkit.commands.deployed import Deployed, StackError
    from devkit.commands.start import start_and_follow

    try:
        ledger = Deployed.resolve(args).ledger()
    except StackError as exc:
        print(f"d365-anaplan: {exc}", file=sys.stderr)
        return c.EXIT_USAGE
    matches = [r for r in ledger.all_runs() if r.run_id.startswith(args.run_id)]
    if len(matches) != 1:
        why = "no run" if not matches else f"{len(matches)} runs"
        print(f"d365-anaplan replay: {why} matching {args.run_id!r} in stack {args.stack}", file=sys.stderr)
        return c.EXIT_USAGE
    original = matches[0]
    payload: dict[str, object] = {
        "connection": original.connection,
        "trigger": "replay",
        "replay_of": original.run_id,
    }
    _mode(args, original, payload)
    args.no_wait = False
    return start_and_follow(args, original.flow, payload)
