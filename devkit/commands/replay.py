"""``d365-anaplan replay RUN --config FILE``: run a past run's flow again from its staged files.

The flow (actuals or plans) and the periods come from the original run in the local ledger; the new run gets
its own copy of the original's staged inputs, so nothing is extracted from the source system again and the
original run stays untouched. Journals are keyed by content, so a replayed plans run resumes the same F&O
journals and never writes a line twice.
"""

from __future__ import annotations

import argparse
import sys

from devkit.commands import _common as c
from devkit.commands.run import run_in


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN", help="the run to replay (its id, or a unique prefix)")
    c.add_config_args(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="stop before anything is written to either system"
    )
    parser.add_argument(
        "--wait-scale", type=float, default=0.0, metavar="X", help="scale Wait states (default 0)"
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds before giving up (default 1800)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines, only the result")
    c.add_state_args(parser)
    parser.epilog = "exit codes: 0 succeeded, 1 the replay failed, 2 usage/configuration error or no such run, 3 a system was unreachable or refused us"


@c.guarded
def run(args: argparse.Namespace) -> int:
    from d365_anaplan.ledger.audit import RunLedger
    from devkit import local_state

    c.quiet_handlers(args.verbose)
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
        if args.dry_run:
            payload["dry_run"] = True
        return run_in(engine, args, cfg, original.flow, payload)
