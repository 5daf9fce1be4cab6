"""``d365-anaplan map propose`` and ``d365-anaplan map explain``: the mapping assistant (read-only).

``map propose --config PARTIAL.yaml [--out FILE]`` reads both systems' metadata and writes a complete draft
configuration: one comment line per choice (setting, value, confidence, reason) and the list of what it
could not decide, then the YAML (validated against the configuration model before it is written).

``map explain --config FILE --line KEY`` shows what one record becomes, through the runs' own code:
``--flow actuals`` (default) KEY is an F&O GL line id or a voucher number of the month ``--period YYYY-MM``;
``--flow plans`` KEY is ``EXPORT:ROW`` (an export action of mapping.plans.exports and a 1-based data row).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

from devkit.commands import _common as c
from devkit.commands import exit_codes as x


def configure_parser(parser: argparse.ArgumentParser) -> None:
    subs = parser.add_subparsers(dest="map_command", metavar="KIND", required=True)
    prop = subs.add_parser("propose", help="propose a complete mapping from both systems' metadata")
    c.add_config_args(prop)
    prop.add_argument("--out", type=Path, metavar="FILE", help="write the draft here (default: stdout)")
    prop.add_argument("--no-samples", action="store_true", help="do not run exports for sample rows")
    exp = subs.add_parser("explain", help="show which file row and cell (or F&O line) one record becomes")
    c.add_config_args(exp)
    exp.add_argument("--line", required=True, metavar="KEY",
                     help="actuals: a GL line id or voucher; plans: EXPORT:ROW")  # fmt: skip
    exp.add_argument("--flow", choices=("actuals", "plans"), default="actuals")
    exp.add_argument("--period", metavar="YYYY-MM", help="actuals: the month of the line")
    parser.epilog = x.EPILOG


def _raw(path: Path) -> dict[str, Any]:
    """The partial configuration as YAML data (validated by the configuration model first)."""
    import yaml

    from d365_anaplan.config import load_connection_file
    from d365_anaplan.errors import ConfigError

    load_connection_file(path)  # one clear line per problem, as every command reports them
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if "connections" in data:
        raise ConfigError(
            ["connections: map propose drafts one connection; give a file holding one"], str(path)
        )
    return dict(data)


def propose_text(partial: dict[str, Any], *, samples: bool = True) -> tuple[str, Any]:
    """Read both systems for ``partial`` and return the draft YAML text and the :class:`Proposal`."""
    from d365_anaplan.anaplan.client import AnaplanClient
    from d365_anaplan.config import parse_connection
    from d365_anaplan.dynamics.client import connect
    from d365_anaplan.secrets import SecretResolver
    from devkit.mapping.metadata import read_anaplan, read_dynamics
    from devkit.mapping.propose import propose, render

    cfg = parse_connection(copy.deepcopy(partial))
    resolver = SecretResolver(allow_local=True)
    client = AnaplanClient.from_config(cfg, resolver=resolver, max_attempts=2, sleep=lambda _s: None)
    conn = connect(cfg, resolver, sleep=lambda _s: None, reuse_tokens=False)
    proposal = propose(partial, read_anaplan(client, run_exports=samples), read_dynamics(cfg, conn))
    parse_connection(copy.deepcopy(proposal.config))  # the draft must be a valid configuration
    return render(proposal), proposal


def run(args: argparse.Namespace) -> int:
    c.quiet_handlers(False)
    if args.map_command == "propose":
        text, proposal = propose_text(_raw(args.config), samples=not args.no_samples)
        if args.out:
            args.out.write_text(text, encoding="utf-8")
            print(f"wrote {args.out}: {len(proposal.choices)} choices, {len(proposal.undecided)} undecided")
        else:
            sys.stdout.write(text)
        return x.EXIT_OK
    return _explain(args)


def _explain(args: argparse.Namespace) -> int:
    from d365_anaplan.anaplan.client import AnaplanClient
    from d365_anaplan.dynamics.client import connect
    from d365_anaplan.flows.calendar import parse_period
    from d365_anaplan.secrets import SecretResolver
    from d365_anaplan.steps.mapping import MapSource
    from devkit.mapping.explain import explain_actuals, explain_plan_row

    cfg = c.load_config(args)
    source = MapSource(base_dir=Path(args.config).resolve().parent)  # CSV maps: relative to the config file
    resolver = SecretResolver(allow_local=True)
    client = AnaplanClient.from_config(cfg, resolver=resolver, max_attempts=2, sleep=lambda _s: None)
    conn = connect(cfg, resolver, sleep=lambda _s: None, reuse_tokens=False)
    if args.flow == "plans":
        export, _, row = str(args.line).rpartition(":")
        if not export or not row.isdigit():
            print("map explain: --flow plans needs --line EXPORT:ROW (a 1-based data row)", file=sys.stderr)
            return x.EXIT_USAGE
        print(explain_plan_row(cfg, conn, client, export, int(row), source).text())
        return x.EXIT_OK
    if not args.period:
        print("map explain: --flow actuals needs --period YYYY-MM (the month of the line)", file=sys.stderr)
        return x.EXIT_USAGE
    found = explain_actuals(
        cfg, conn, client, str(args.line), parse_period(args.period, field="--period"), source
    )
    if not found:
        print(f"map explain: no GL line or voucher {args.line!r} in {args.period}", file=sys.stderr)
        return x.EXIT_FAILED
    for item in found:
        print(item.text(cfg.mapping.actuals.import_action))
    return x.EXIT_OK
