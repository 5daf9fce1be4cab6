"""``d365-anaplan runs [--stack NAME]``: the runs in the ledger (local state, or a deployed stack's table);
the same listing as ``audit`` without RUN."""

from __future__ import annotations

import argparse

from devkit.commands import _common as c
from devkit.commands.deployed import add_stack_args
from devkit.commands.exit_codes import EPILOG


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    c.add_state_args(parser)
    add_stack_args(parser)
    parser.epilog = EPILOG


def run(args: argparse.Namespace) -> int:
    from devkit.commands import audit

    args.run_id, args.trace, args.events = None, None, False
    return int(audit.run(args))
