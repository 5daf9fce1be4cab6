"""``d365-anaplan sandbox anaplan``: serve the Anaplan sandbox over HTTPS and print how to reach it."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=0, help="auth port; OAuth is PORT+1 and the API PORT+2 (0: free ports)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--ca-dir",
        "--state-dir",
        dest="ca_dir",
        type=Path,
        default=None,
        help="where the sandbox CA, the client certificate and the refresh token live (default "
        "~/.cache/d365-anaplan/sandbox-ca, the CA 'sandbox dynamics' uses too: one tls.ca_bundle reaches both)",
    )
    parser.add_argument(
        "--auth-mode",
        choices=("basic", "certificate", "device"),
        default="basic",
        help="auth shown in the printed config",
    )
    parser.add_argument("--task-delay", type=float, default=0.5, help="seconds a task stays IN_PROGRESS")
    parser.add_argument("--token-lifetime", type=float, default=2100.0, help="auth token lifetime in seconds")
    parser.add_argument("--rate-limit", type=int, default=600, help="tenant requests per minute (0: off)")
    parser.add_argument(
        "--device-interval", type=int, default=5, help="device-grant poll interval in seconds"
    )
    parser.add_argument("--print-config", action="store_true", help="print the connection settings and exit")


def run(args: argparse.Namespace) -> int:
    from devkit.sandbox.anaplan.harness import start
    from devkit.sandbox.tls import SHARED_CA_DIR

    running = start(
        port=args.port,
        host=args.host,
        state_dir=args.ca_dir or SHARED_CA_DIR,
        task_run_delay_s=args.task_delay,
        token_lifetime_s=args.token_lifetime,
        rate_limit_per_minute=args.rate_limit,
        device_interval_s=args.device_interval,
    )
    try:
        print(running.config_yaml(args.auth_mode), flush=True)
        if args.print_config:
            return 0
        admin = running.servers["api"].base_url + "/_sandbox"
        print(f"# admin: GET {admin}/counters, POST {admin}/faults (see AnaplanSandbox.admin)", flush=True)
        print(
            f"# serving: auth {running.auth_url}  oauth {running.oauth_url}  api {running.api_url}  (Ctrl-C to stop)",
            flush=True,
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        counters = ", ".join(f"{k}={v}" for k, v in sorted(running.app.counters.items()))
        print(f"# requests: {counters}", flush=True)
        return 0
    finally:
        running.stop()
