"""Benchmark: the actuals flow end to end on the local engine for 1,000,000 posted GL lines.

``python -m devkit.bench e2e [--lines 1000000] [--months 12] [--concurrency 4] [--distributed-from N]``

The F&O sandbox runs in a subprocess (``devkit.bench_dynamics.start_sandbox``: lazily generated GL lines),
the Anaplan sandbox in this process; the unchanged ``statemachine/actuals.asl.json`` runs on
:class:`devkit.engine.LocalEngine` with every handler in-process. Printed, from what was measured in this run:

* duration per state (from the execution history; Map iterations summed per state name);
* per Lambda function: invocations, billed seconds, GB-s at the template's ``MemorySize``, and the peak RSS
  seen while an invocation ran (sampled every 20 ms; the engine runs handlers in one process, so concurrent
  invocations share that figure: it bounds each one from above);
* HTTP requests and tokens per system (counted on ``VerifiedSession``);
* bytes and files staged (the run's ``FILE#`` ledger items), S3 requests by operation;
* ledger items per run by type, DynamoDB write requests and write units per key prefix (units from the item
  sizes moto stores: 1 WCU per started KiB per item written, twice that in a transaction), read requests;
* Step Functions state transitions (history events that enter a state; with a Distributed Map the child
  executions' states are in their own histories, not counted here);
* then, against the same sandbox, the reader beside a bare page loop (``devkit.bench_dynamics``).

``make bench-e2e`` runs it; it is not part of ``make test``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from unittest import mock

from devkit.bench_dynamics import print_reader_ratio, rss_mb, start_sandbox, stop_sandbox

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class Invocation:
    function: str
    started: float
    start_rss: float
    peak_rss: float
    seconds: float = 0.0


@dataclass
class Meters:
    """Everything counted during the flow's execution."""

    invocations: list[Invocation] = field(default_factory=list)
    active: set[int] = field(default_factory=set)
    http: Counter[tuple[str, str]] = field(default_factory=Counter)
    s3_ops: Counter[str] = field(default_factory=Counter)
    dynamo_reads: Counter[str] = field(default_factory=Counter)
    dynamo_writes: Counter[str] = field(default_factory=Counter)  # requests by operation
    items_written: Counter[str] = field(default_factory=Counter)  # items by key prefix
    wcu: Counter[str] = field(default_factory=Counter)  # write units by key prefix
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    # -- Lambda invocations and their memory -------------------------------------------------------------
    def wrap(self, function: str) -> Callable[[Handler], Handler]:
        def wrapper(fn: Handler) -> Handler:
            def run(event: dict[str, Any], ctx: Any) -> Any:
                rss = rss_mb()
                inv = Invocation(function, time.perf_counter(), rss, rss)
                with self.lock:
                    self.invocations.append(inv)
                    self.active.add(id(inv))
                try:
                    return fn(event, ctx)
                finally:
                    inv.seconds = time.perf_counter() - inv.started
                    inv.peak_rss = max(inv.peak_rss, rss_mb())
                    with self.lock:
                        self.active.discard(id(inv))

            return run

        return wrapper

    def sample(self) -> None:
        while not self.stop.wait(0.02):
            rss = rss_mb()
            with self.lock:
                for inv in self.invocations[-64:]:
                    if id(inv) in self.active:
                        inv.peak_rss = max(inv.peak_rss, rss)

    # -- HTTP ------------------------------------------------------------------------------------------
    def http_counter(self, fo_origin: str) -> Callable[..., Any]:
        from d365_anaplan.http import VerifiedSession

        original = VerifiedSession.send
        meters = self

        def send(session: Any, request: Any, **kwargs: Any) -> Any:
            url = str(request.url)
            path = url.split("?", 1)[0]
            system = "F&O" if url.lower().startswith(fo_origin) else "Anaplan"
            if (
                path.endswith("/oauth2/v2.0/token")
                or "/token/authenticate" in path
                or "/token/refresh" in path
            ):
                kind = "tokens"
            elif "openid-configuration" in path or "/discovery/" in path:
                kind = "msal discovery"
            else:
                kind = "requests"
            with meters.lock:
                meters.http[(system, kind)] += 1
            return original(session, request, **kwargs)

        return send

    # -- AWS calls -------------------------------------------------------------------------------------
    def botocore_event(self, event_name: str, **_kwargs: Any) -> None:
        _, service, op = event_name.split(".", 2)
        with self.lock:
            if service == "s3":
                self.s3_ops[op] += 1
            elif service == "dynamodb" and not _is_write(op):
                self.dynamo_reads[op] += 1

    def dynamo_meter(self, original: Callable[[Any], Any]) -> Callable[[Any], Any]:
        meters = self

        def call_action(handler: Any) -> Any:
            result = original(handler)
            op = str(handler.headers.get("X-Amz-Target", "")).rsplit(".", 1)[-1]
            if _is_write(op):
                meters.count_write(handler, op)
            return result

        return call_action

    def count_write(self, handler: Any, op: str) -> None:
        body = handler.body or {}
        backend = handler.dynamodb_backend
        writes: list[tuple[str, dict[str, Any], int]] = []  # (table, key, factor)
        if op == "TransactWriteItems":
            for entry in body.get("TransactItems", []):
                for kind in ("Put", "Update", "Delete", "ConditionCheck"):
                    if kind in entry and kind != "ConditionCheck":
                        e = entry[kind]
                        key = e.get("Key") or {
                            k: e["Item"][k] for k in ("pk", "sk") if k in e.get("Item", {})
                        }
                        writes.append((e["TableName"], key, 2))
        elif op in ("PutItem", "UpdateItem", "DeleteItem"):
            key = body.get("Key") or {k: body["Item"][k] for k in ("pk", "sk") if k in body.get("Item", {})}
            writes.append((body["TableName"], key, 1))
        with self.lock:
            self.dynamo_writes[op] += 1
        for table, key, factor in writes:
            item = backend.get_item(table, key) if key and op != "DeleteItem" else None
            size = max(1, item.size()) if item is not None else 1  # a deleted item costs a unit too
            pk = next(iter((key.get("pk") or {"S": table}).values()), table) if key else table
            prefix = str(pk).split("#", 1)[0] + ("#" if "#" in str(pk) else "")
            with self.lock:
                self.items_written[prefix] += 1
                self.wcu[prefix] += factor * math.ceil(size / 1024)


def _is_write(op: str) -> bool:
    return op in ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")


class _SandboxSettings:
    """A Stack's ``dynamics`` for an F&O sandbox running in another process (its printed settings)."""

    def __init__(self, fragment: dict[str, Any]) -> None:
        self.fragment = fragment

    def connection_settings(self) -> dict[str, Any]:
        return copy.deepcopy(self.fragment)


def _memory_mb(engine: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    glob = engine.template.raw.get("Globals", {}).get("Function", {})
    for lid, res in engine.template.of_type("AWS::Serverless::Function").items():
        out[lid] = int(res.get("Properties", {}).get("MemorySize", glob.get("MemorySize", 128)))
    return out


def _state_durations(history: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Seconds per state name (one entry per time it ran), from entered/exited event pairs."""
    open_: dict[str, list[float]] = defaultdict(list)
    out: dict[str, list[float]] = defaultdict(list)
    for e in history:
        ts = e["timestamp"].timestamp()
        if "stateEnteredEventDetails" in e:
            open_[e["stateEnteredEventDetails"]["name"]].append(ts)
        elif "stateExitedEventDetails" in e:
            name = e["stateExitedEventDetails"]["name"]
            if open_[name]:
                out[name].append(ts - open_[name].pop(0))
    return out


def run(lines: int, months: int, concurrency: int, distributed_from: int | None) -> int:
    from d365_anaplan.config import parse_connection
    from d365_anaplan.dynamics.client import connect
    from d365_anaplan.ledger.audit import RunLedger
    from d365_anaplan.secrets import SecretResolver
    from devkit.engine import LocalEngine
    from devkit.sandbox.anaplan import harness as anaplan_harness
    from devkit.sandbox.tls import SHARED_CA_DIR, PersistentCA
    from devkit.stack import Stack, anaplan_app

    os.environ.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(1024 * 1024))
    t_setup = time.perf_counter()
    proc, fragment = start_sandbox(lines, months, publish=False)
    ana = anaplan_harness.start(app=anaplan_app(task_start_delay_s=0.01, task_run_delay_s=0.02),
                                ca=PersistentCA(directory=SHARED_CA_DIR))  # fmt: skip
    meters = Meters()
    try:
        stack = Stack(_SandboxSettings(fragment), ana)  # type: ignore[arg-type]
        cfg = stack.connection()
        dyn: dict[str, Any] = {**cfg["dynamics"], "page_size": 10_000, "max_concurrency": concurrency}
        if distributed_from is not None:
            dyn["distributed_map_items"] = distributed_from
        cfg["dynamics"] = dyn
        last = f"{2025 + (months - 1) // 12:04d}-{(months - 1) % 12 + 1:02d}"
        payload = {"connection": "demo", "trigger": "manual", "periods": {"from": "2025-01", "to": last}}
        print(f"actuals flow end to end: {lines:,} posted GL lines over {months} months (2025-01..{last}), "
              f"{len(dyn['companies'])} companies, dynamics.max_concurrency={concurrency}, page size 10,000")  # fmt: skip
        print(
            f"(sandboxes up in {time.perf_counter() - t_setup:.1f} s; F&O in a subprocess, Anaplan in-process)"
        )
        with LocalEngine(wait_scale=0.0) as engine:
            import boto3
            from moto.dynamodb.responses import DynamoHandler

            from d365_anaplan.http import VerifiedSession

            boto3._get_default_session().events.register("before-call", meters.botocore_event)
            memory = _memory_mb(engine)
            for lid in memory:
                engine.wrappers[lid] = meters.wrap(lid)
            fo_origin = str(dyn["environment_url"]).lower()
            with (
                mock.patch.object(VerifiedSession, "send", meters.http_counter(fo_origin)),
                mock.patch.object(
                    DynamoHandler, "call_action", meters.dynamo_meter(DynamoHandler.call_action)
                ),
            ):
                sampler = threading.Thread(target=meters.sample, daemon=True)
                sampler.start()
                engine.install_connection(cfg)
                meters.http.clear()
                rss0 = rss_mb()
                t0 = time.perf_counter()
                result = engine.run("ActualsFlow", payload, timeout=3600)
                wall = time.perf_counter() - t0
                meters.stop.set()
                sampler.join()
            if result.status != "SUCCEEDED":
                print(
                    f"the flow ended {result.status}: {result.error}: {str(result.cause)[:800]}",
                    file=sys.stderr,
                )
                return 1
            ledger = RunLedger(engine.resource_name("LedgerTable"))
            run_id = result.name
            files = ledger.files(run_id)
            items = {
                "RUN": 1,
                "STEP": len(ledger.steps(run_id)),
                "FILE": len(files),
                "TASK": len(ledger.tasks(run_id)),
                "JOURNAL": len(ledger.journals(run_id)),
                "LINE": len(ledger.journal_lines(run_id)),
            }
            _report(result, wall, rss0, meters, memory, files, items)
        print()
        print("reader vs bare page loop, same sandbox, same run (all lines of the window):")
        conn = connect(parse_connection(cfg), SecretResolver(), reuse_tokens=False)
        print_reader_ratio(
            conn,
            date(2025, 1, 1),
            date(2025 + months // 12, months % 12 + 1, 1),
            10_000,
            sandbox_pid=proc.pid,
        )
    finally:
        meters.stop.set()
        ana.stop()
        stop_sandbox(proc)
    return 0


def _report(result: Any, wall: float, rss0: float, m: Meters, memory: dict[str, int], files: list[Any],
            items: dict[str, int]) -> None:  # fmt: skip
    out = result.output or {}
    extract = out.get("extract") or {}
    gl_lines = int((out.get("actuals") or {}).get("lines") or 0)
    print(f"SUCCEEDED in {wall:.1f} s: {gl_lines:,} GL lines, {extract.get('count')} extraction items "
          f"({'Distributed Map' if extract.get('distributed') else 'inline Map'}), "
          f"actuals file {(out.get('actuals') or {}).get('rows')} rows")  # fmt: skip
    print()
    print("duration per state (s; Map iterations summed)")
    durations = _state_durations(result.history)
    for name, secs in sorted(durations.items(), key=lambda kv: -sum(kv[1])):
        if sum(secs) >= 0.05:
            print(f"  {name:<28} {sum(secs):>8.1f}  x{len(secs):<4} max {max(secs):>7.1f}")
    transitions = sum(1 for e in result.history if "stateEnteredEventDetails" in e)
    print(f"  state transitions: {transitions}")
    print()
    print(f"Lambda per function (process RSS before the flow {rss0:.0f} MiB)")
    print(f"  {'function':<28} {'calls':>5} {'seconds':>8} {'GB-s':>8} {'peak RSS MiB':>13} {'+MiB':>6}")
    total_gbs = 0.0
    by_fn: dict[str, list[Invocation]] = defaultdict(list)
    for inv in m.invocations:
        by_fn[inv.function].append(inv)
    for fn, invs in sorted(by_fn.items(), key=lambda kv: -sum(i.seconds for i in kv[1])):
        fn_secs = sum(i.seconds for i in invs)
        gbs = sum(math.ceil(i.seconds * 1000) / 1000 for i in invs) * memory.get(fn, 128) / 1024
        total_gbs += gbs
        peak = max(i.peak_rss for i in invs)
        grow = max(i.peak_rss - i.start_rss for i in invs)
        print(f"  {fn:<28} {len(invs):>5} {fn_secs:>8.1f} {gbs:>8.1f} {peak:>13.0f} {grow:>6.0f}")
    print(f"  total: {len(m.invocations)} invocations, {total_gbs:.1f} GB-s at the template's MemorySize")
    print()
    print("HTTP per system")
    for (system, kind), n in sorted(m.http.items()):
        print(f"  {system:<8} {kind:<15} {n:>6}")
    print()
    staged = sum(f.bytes for f in files)
    print(f"staged: {len(files)} files, {staged:,} bytes ({staged / 2**20:.1f} MiB), "
          f"{sum(f.rows for f in files):,} rows")  # fmt: skip
    print("S3 requests: " + ", ".join(f"{op} {n}" for op, n in sorted(m.s3_ops.items())))
    print()
    kinds = {k: n for k, n in items.items() if n}
    print(
        f"ledger items of the run (RUN#<id>): {sum(kinds.values())} ("
        + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        + ")"
    )
    print("DynamoDB write requests: " + ", ".join(f"{op} {n}" for op, n in sorted(m.dynamo_writes.items())))
    print("  items written / write units by key prefix: "
          + ", ".join(f"{p} {m.items_written[p]}/{m.wcu[p]}" for p in sorted(m.wcu)))  # fmt: skip
    print(f"  write units in all: {sum(m.wcu.values())}")
    print("DynamoDB read requests: " + ", ".join(f"{op} {n}" for op, n in sorted(m.dynamo_reads.items())))
    summary = {
        "lines": gl_lines, "seconds": round(wall, 1), "items": extract.get("count"), "transitions": transitions,
        "invocations": len(m.invocations), "gb_s": round(total_gbs, 1), "staged_bytes": staged,
        "s3_requests": dict(m.s3_ops), "ddb_write_units": sum(m.wcu.values()),
        "ddb_writes": sum(m.dynamo_writes.values()), "ddb_reads": sum(m.dynamo_reads.values()),
    }  # fmt: skip
    print("figures (JSON): " + json.dumps(summary, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devkit.bench e2e", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=12, choices=range(1, 13), metavar="1..12")
    parser.add_argument("--concurrency", type=int, default=4, help="dynamics.max_concurrency")
    parser.add_argument("--distributed-from", type=int, default=None,
                        help="dynamics.distributed_map_items (default: the configuration's default)")  # fmt: skip
    args = parser.parse_args(argv)
    return run(args.lines, args.months, args.concurrency, args.distributed_from)


if __name__ == "__main__":
    sys.exit(main())
