"""What the CLI commands share: config loading, an engine with persisted local state, progress, exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from devkit.commands.exit_codes import (
    CONFIG_ERRORS,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    UNREACHABLE_ERRORS,
    for_error,
)

if TYPE_CHECKING:
    from d365_anaplan.config import ConnectionConfig
    from devkit.engine import ExecutionResult, LocalEngine

FLOWS = {"actuals": "ActualsFlow", "plans": "PlansFlow"}
__all__ = ["CONFIG_ERRORS", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_REFUSED", "EXIT_UNREACHABLE",
           "EXIT_USAGE", "UNREACHABLE_ERRORS"]  # fmt: skip


def quiet_handlers(verbose: bool = False) -> None:
    """Keep the handlers' JSON logs and Powertools' metric warnings off the terminal unless ``verbose``."""
    if verbose:
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "INFO")
        return
    os.environ["POWERTOOLS_LOG_LEVEL"] = "ERROR"
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    import logging

    logging.getLogger("d365-anaplan").setLevel(logging.ERROR)
    # moto's ASL interpreter logs every failed state with its whole parse tree; the CLI prints the cause itself
    logging.getLogger("moto").setLevel(logging.CRITICAL)


def add_config_args(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        required=required,
        metavar="FILE",
        help="connection configuration (YAML: one connection, or several under 'connections:')",
    )
    parser.add_argument(
        "--connection", metavar="NAME", help="which connection of FILE (needed when it holds several)"
    )


def add_state_args(parser: argparse.ArgumentParser) -> None:
    from devkit.local_state import DEFAULT_STATE_DIR

    parser.add_argument(
        "--state-dir",
        dest="state_dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"local ledger and staging state kept between commands (default {DEFAULT_STATE_DIR}, "
        "or $D365_ANAPLAN_STATE_DIR)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show the handlers' logs")


def load_config(args: argparse.Namespace) -> ConnectionConfig:
    """The connection the arguments name; ConfigError (exit 2) when the file or the name is wrong."""
    from d365_anaplan.config import load_connection_file

    return load_connection_file(args.config, args.connection)


def state_dir(args: argparse.Namespace) -> Path:
    from devkit.local_state import default_state_dir

    return Path(args.state_dir) if getattr(args, "state_dir", None) else default_state_dir()


@contextmanager
def local_engine(
    state: Path | None,
    *,
    wait_scale: float = 0.0,
    save: bool = True,
    out: TextIO | None = None,
) -> Iterator[LocalEngine]:
    """A started LocalEngine with the saved local state loaded; the state is saved again on the way out."""
    out = out or sys.stdout  # resolved per call: a default bound at import would outlive a replaced stdout
    from devkit import local_state
    from devkit.engine import LocalEngine

    level = os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO")
    engine = LocalEngine(wait_scale=wait_scale, env={"POWERTOOLS_LOG_LEVEL": level, "LOG_LEVEL": level})
    lock = _lock_state(state, out) if state is not None and save else None
    engine.start()
    try:
        if state is not None:
            local_state.load(engine, state)
        yield engine
        if state is not None and save:
            summary = local_state.dump(engine, state)
            print(f"local state saved: {summary.directory}", file=out)
    finally:
        engine.stop()
        if lock is not None:
            lock.close()


def _lock_state(state: Path, out: TextIO) -> TextIO:
    """One command at a time may load-run-save a state directory (the save replaces it whole)."""
    import fcntl

    state.parent.mkdir(parents=True, exist_ok=True)
    handle = (state.parent / f".{state.name}.lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"waiting: another d365-anaplan command is using {state}", file=out, flush=True)
        fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def new_run_id() -> str:
    return str(uuid.uuid4())


# --- following an execution ------------------------------------------------------------------------------

_SHOWN_TYPES = {"TaskStateEntered", "MapStateEntered", "WaitStateEntered", "ParallelStateEntered"}


@dataclass
class Progress:
    """Prints every state the execution enters, as it happens (polls the history from this thread)."""

    out: TextIO = field(default_factory=lambda: sys.stdout)  # the stdout of the moment, not of the import
    prefix: str = ""
    started: float = 0.0
    show: bool = True
    first: float | None = None

    def elapsed(self, ev: dict[str, Any]) -> float:
        stamp: Any = ev.get("timestamp")
        if stamp is not None and hasattr(stamp, "timestamp"):
            seconds = float(stamp.timestamp())
            if self.first is None:
                self.first = seconds
            return seconds - self.first
        return time.monotonic() - self.started

    def event(self, ev: dict[str, Any]) -> None:
        elapsed = self.elapsed(ev)
        if not self.show:
            return
        kind = str(ev.get("type", ""))
        if kind in _SHOWN_TYPES:
            name = ev["stateEnteredEventDetails"]["name"]
            self.out.write(f"{self.prefix}[{elapsed:6.1f}s] {name}\n")
            self.out.flush()
        elif kind in ("TaskFailed", "LambdaFunctionFailed"):
            detail = ev.get("taskFailedEventDetails") or ev.get("lambdaFunctionFailedEventDetails") or {}
            error = detail.get("error", "")
            message = _cause_message(detail.get("cause", ""))
            self.out.write(f"{self.prefix}[{elapsed:6.1f}s]   ! {error}: {message[:300]}\n")
            self.out.flush()


def _cause_message(cause: str) -> str:
    try:
        data = json.loads(cause)
    except (TypeError, ValueError):
        return str(cause)
    if isinstance(data, dict):
        return str(data.get("errorMessage") or data.get("Cause") or data)
    return str(data)


def follow(
    engine: Any,  # LocalEngine, or DeployedFlows for a stack
    state_machine: str,
    payload: dict[str, Any],
    *,
    name: str | None = None,
    progress: Progress | None = None,
    timeout: float = 1800.0,
    poll: float = 0.4,
) -> ExecutionResult:
    """Start an execution and print its states while it runs; returns the finished result."""
    progress = progress or Progress()
    progress.started = time.monotonic()
    arn = engine.start_execution(state_machine, payload, name)
    seen = 0
    deadline = time.monotonic() + timeout
    while True:
        status = engine.status(arn)
        events = list(engine.history(arn))
        for ev in events[seen:]:
            progress.event(ev)
        seen = len(events)
        if status != "RUNNING":
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution {name or arn} still RUNNING after {timeout:.0f}s")
        time.sleep(poll)
    result: ExecutionResult = engine.wait(arn, timeout=10)
    return result


# --- outcomes --------------------------------------------------------------------------------------------


@dataclass
class Failure:
    error: str
    message: str

    def exit_code(self) -> int:
        return for_error(self.error)


def run_failure(engine: Any, result: ExecutionResult, ledger: Any = None) -> Failure | None:
    """Why a run failed: the cause the ledger recorded (the ASL's Fail state only points there)."""
    if result.status == "SUCCEEDED":
        return None
    cause: dict[str, Any] | None = None
    try:
        from d365_anaplan.ledger.audit import RunLedger

        ledger = ledger or RunLedger(engine.resource_name("LedgerTable"))
        run = ledger.get_run(result.name)
        cause = run.cause
    except Exception:  # noqa: BLE001 - fall back to the execution's own error
        cause = None
    if cause:
        return Failure(str(cause.get("Error", "Unknown")), _cause_message(str(cause.get("Cause", ""))))
    failures = result.task_failures()
    if failures:
        error, text = failures[-1]
        return Failure(error, _cause_message(text))
    return Failure(result.error or result.status, result.cause or "")


def money(value: Any) -> str:
    """``1,234,567.89`` (Decimal in, text out; no float anywhere)."""
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value))
    except Exception:  # noqa: BLE001
        return str(value)
    return f"{d:,.2f}"


def table(rows: list[list[str]], headers: list[str], out: TextIO | None = None, indent: str = "  ") -> None:
    """A plain text table (right-aligns cells that look like numbers)."""
    out = out or sys.stdout
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def numeric(cell: str) -> bool:
        return bool(cell) and cell.replace(",", "").replace(".", "").replace("-", "").isdigit()

    def fmt(row: list[str]) -> str:
        cells = [c.rjust(widths[i]) if numeric(c) else c.ljust(widths[i]) for i, c in enumerate(row)]
        return (indent + "  ".join(cells)).rstrip()

    out.write(fmt(headers) + "\n")
    out.write(indent + "  ".join("-" * w for w in widths) + "\n")
    for row in rows:
        out.write(fmt(row) + "\n")


def guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Map state-directory problems to exit 2 with a one-line message."""

    def wrapper(args: argparse.Namespace) -> int:
        from devkit.local_state import StateError

        try:
            return fn(args)
        except StateError as exc:
            print(f"d365-anaplan: {exc}", file=sys.stderr)
            return EXIT_USAGE

    return wrapper
