"""The ``d365-anaplan`` command line (dev kit; not deployed).

Each sub-command lives in its own module exposing ``configure_parser(parser)`` and ``run(args) -> int``;
this file only wires them together, imports lazily, and maps errors to the exit codes of
``devkit.commands.exit_codes`` (0 success, 1 the job failed, 2 usage/configuration, 3 unreachable,
4 credentials refused, 130 interrupted).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from devkit.commands.exit_codes import EPILOG, EXIT_INTERRUPTED, EXIT_USAGE

# command -> (module, help). Nested commands use "group sub".
COMMANDS: dict[str, tuple[str, str]] = {
    "sandbox anaplan": (
        "devkit.sandbox.anaplan.cli",
        "serve the Anaplan sandbox (auth, OAuth and /2/0 API) over HTTPS",
    ),
    "sandbox dynamics": (
        "devkit.sandbox.dynamics.cli",
        "serve the F&O sandbox (Entra look-alike and OData) over HTTPS",
    ),
    "anaplan-login": ("devkit.anaplan_login", "one-time OAuth device-grant login; stores the refresh token"),
    "demo": ("devkit.demo", "start both sandboxes, run both flows, reconcile and write an HTML report"),
    "check": (
        "devkit.commands.check",
        "read-only checks of the systems a connection names (pass/fail table)",
    ),
    "run": ("devkit.commands.run", "run the actuals or plans state machine on the local engine"),
    "replay": ("devkit.commands.replay", "run a past run's flow again from its staged files"),
    "audit": ("devkit.commands.audit", "show a run's ledger: steps, files, tasks, journals, failures"),
    "runs": (
        "devkit.commands.runs",
        "list the runs in the ledger (local, or a deployed stack's with --stack)",
    ),
    "start": ("devkit.commands.start", "start a flow of a deployed stack (--stack) and follow it"),
    "map": (
        "devkit.commands.map",
        "mapping assistant: propose a mapping from both systems, explain one record",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="d365-anaplan",
        description="Dynamics 365 F&O <-> Anaplan connector (local tools)",
        epilog=f"'d365-anaplan COMMAND --help' describes each command. {EPILOG[0].upper()}{EPILOG[1:]}.",
    )
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for name, (module, help_text) in COMMANDS.items():
        parts = name.split()
        target = subs
        if len(parts) == 2:
            if parts[0] not in groups:
                group = subs.add_parser(parts[0], help=f"{parts[0]} commands")
                groups[parts[0]] = group.add_subparsers(dest="subcommand", metavar="KIND", required=True)
            target = groups[parts[0]]
        sub = target.add_parser(parts[-1], help=help_text, description=help_text)
        sub.set_defaults(_module=module)
        try:
            importlib.import_module(module).configure_parser(sub)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
            sub.set_defaults(_missing=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from d365_anaplan.errors import ConfigError, SecretUnavailable

    args = build_parser().parse_args(argv)
    if getattr(args, "_missing", False):
        print(f"d365-anaplan: '{args.command}' is not available in this build", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(importlib.import_module(args._module).run(args))
    except (ConfigError, SecretUnavailable) as exc:
        print(f"d365-anaplan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("d365-anaplan: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
