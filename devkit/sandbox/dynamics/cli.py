"""``d365-anaplan sandbox dynamics``: serve the F&O sandbox (Entra look-alike + OData) over HTTPS.

Prints the connection settings a client needs as a YAML fragment of the connection configuration and
serves until interrupted; ``--print-config`` prints the same and exits.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from devkit.sandbox.dynamics import books, seed
from devkit.sandbox.dynamics.app import DynamicsSandbox, SandboxConfig
from devkit.sandbox.dynamics.customers import CUSTOMERS, seeded
from devkit.sandbox.server import SandboxServer
from devkit.sandbox.tls import SHARED_CA_DIR, PersistentCA, SandboxCA, default_ca


@dataclass
class RunningSandbox:
    app: DynamicsSandbox
    server: SandboxServer
    ca_bundle: str

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def connection_settings(self, companies: list[str] | None = None) -> dict[str, Any]:
        """The ``dynamics``/``tls``/``security`` part of a connection config for this sandbox."""
        host = f"{self.server.host}:{self.server.port}"
        return {
            "dynamics": {
                "environment_url": self.app.environment_url,
                "authority_host": self.app.authority_host,
                "tenant_id": self.app.config.tenant_id,
                "client_id": self.app.config.client_id,
                "client_secret": self.app.config.client_secret,
                "companies": companies or list(seed.COMPANIES),
                "journal": {
                    "target": "budget_register",
                    "journal_name": "Budget",
                    "budget_model": "FY2025",
                    "budget_code": "Original",
                    "revision_budget_code": "Revision",
                },
            },
            "tls": {"ca_bundle": self.ca_bundle},
            "security": {"allowed_hosts": [host]},
            "ledger": self.ledger_settings(),
        }

    def ledger_settings(self) -> dict[str, Any]:
        """How this sandbox's display values are ordered: the integration format's order, or each account
        structure's own (whose segment order no entity publishes, so the connection must be told)."""
        if self.app.config.ledger_account_order == "structure":
            return {"account_structures": {k: list(v) for k, v in books.ACCOUNT_STRUCTURES.items()}}
        return {"display_value_order": "format"}

    def config_yaml(self) -> str:
        return yaml.safe_dump(self.connection_settings(), sort_keys=False)

    def stop(self) -> None:
        self.server.stop()


def start(
    config: SandboxConfig | None = None,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    ca: SandboxCA | None = None,
) -> RunningSandbox:
    """Start the sandbox in a background thread (tests import this)."""
    app = DynamicsSandbox(config)
    the_ca = ca or default_ca()
    server = SandboxServer(app, host=host, port=port, ca=the_ca)
    app.bind(server.base_url)
    server.start()
    return RunningSandbox(app, server, str(the_ca.ca_bundle))


@contextmanager
def running(config: SandboxConfig | None = None, **kwargs: Any) -> Iterator[RunningSandbox]:
    sb = start(config, **kwargs)
    try:
        yield sb
    finally:
        sb.stop()


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument(
        "--lines", type=int, default=20_000, help="posted GL lines to generate (up to 1,000,000)"
    )
    parser.add_argument("--months", type=int, default=12, help="months of posted GL")
    parser.add_argument("--start", default="2025-01-01", help="first accounting date (YYYY-MM-DD)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the GL generator")
    parser.add_argument(
        "--publish-gl-entity",
        action="store_true",
        help="also publish GeneralJournalAccountEntries (a customer extension)",
    )
    parser.add_argument(
        "--load-budget", type=int, default=None, help="requests per second before resource-based 429s"
    )
    parser.add_argument("--token-lifetime", type=int, default=3599, help="access-token lifetime in seconds")
    parser.add_argument(
        "--ca-dir",
        type=Path,
        default=None,
        help="where the sandbox CA lives; kept across runs (default ~/.cache/d365-anaplan/sandbox-ca, the CA "
        "'sandbox anaplan' uses too: one tls.ca_bundle reaches both)",
    )
    parser.add_argument("--print-config", action="store_true", help="print the connection settings and exit")
    parser.add_argument(
        "--customer",
        choices=("demo", *CUSTOMERS),
        default="demo",
        help="whose F&O setup to serve: the demo manufacturer, or another customer's companies, chart of "
        "accounts and dimension values (devkit/sandbox/dynamics/customers.py)",
    )


def run(args: argparse.Namespace) -> int:
    if args.customer != "demo":
        with seeded(CUSTOMERS[args.customer]):
            return _serve(args)
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    try:
        start_date = date.fromisoformat(args.start)
    except ValueError:
        print(f"--start: {args.start!r} is not a date (YYYY-MM-DD)", file=sys.stderr)
        return 2
    if not 0 <= args.lines <= 1_000_000:
        print("--lines must be between 0 and 1,000,000", file=sys.stderr)
        return 2
    config = SandboxConfig(
        gl_lines=args.lines,
        months=args.months,
        start=start_date,
        gl_seed=args.seed,
        publish_gl_entity=args.publish_gl_entity,
        load_budget=args.load_budget,
        token_lifetime=args.token_lifetime,
        default_company=seed.DEFAULT_COMPANY,
    )
    sb = start(config, port=args.port, ca=PersistentCA(directory=args.ca_dir or SHARED_CA_DIR))
    try:
        print("# F&O sandbox (dev only): connection settings")
        print(sb.config_yaml(), end="", flush=True)
        if args.print_config:
            return 0
        print(
            f"# serving {sb.app.gl.line_count} posted GL lines on {sb.base_url} - Ctrl+C to stop", flush=True
        )
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sb.stop()
    return 0
