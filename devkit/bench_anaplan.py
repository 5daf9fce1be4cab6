"""Benchmark: stream a generated 200 MB actuals CSV to the Anaplan sandbox.

``python -m devkit.bench_anaplan [--size-mb 200] [--chunk-mb 10] [--no-sdk]`` (or ``python -m devkit.bench anaplan``)

The sandbox runs in a subprocess (``d365-anaplan sandbox anaplan``) so its buffers do not count; this process
uploads with the layer's client (gzip chunks, ``chunkCount: -1`` + ``/complete``) from a file on disk and
prints throughput, peak RSS growth (must stay under 100 MB), compression ratio and requests made, then the
same upload by ``anaplan-sdk`` 0.5.22 (``upload_file_stream``; its chunks gzip too) for comparison.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

HEADER = b"Entity,Account,BusinessUnit,CostCenter,Department,Period,Version,Amount\n"
RSS_LIMIT_MB = 100.0


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 1e6


class PeakRss:
    """Samples this process's RSS every 5 ms while active."""

    def __init__(self) -> None:
        self.base = rss_mb()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> PeakRss:
        self.base = rss_mb()
        self.peak = self.base
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())

    @property
    def growth(self) -> float:
        return self.peak - self.base


def generate(path: Path, size_mb: int, seed: int = 7) -> int:
    """Write a realistic actuals CSV of about ``size_mb`` MB (never held in memory)."""
    rng = random.Random(seed)
    entities = ["USMF", "DEMF"]
    accounts = [
        "110110",
        "130100",
        "401100",
        "401200",
        "501100",
        "501200",
        "601100",
        "606100",
        "606300",
        "607100",
    ]
    units = ["001", "002", "003", "004"]
    centres = ["OU_3566", "OU_3567", "OU_3568", "OU_4803"]
    depts = ["022", "023", "024", "025"]
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    prefixes = [
        f"{e},{a},{u},{c},{d},{m} 25,Actual,"
        for e in entities
        for a in accounts
        for u in units
        for c in centres
        for d in depts
        for m in months
    ]
    target = size_mb * 1_000_000
    written = 0
    with path.open("wb") as fh:
        fh.write(HEADER)
        written += len(HEADER)
        while written < target:
            picks = rng.choices(prefixes, k=20_000)
            cents = [rng.randrange(-(10**8), 10**8) for _ in range(20_000)]
            block = "".join(
                f"{p}{c // 100}.{abs(c) % 100:02d}\n" for p, c in zip(picks, cents, strict=True)
            ).encode()
            fh.write(block)
            written += len(block)
    return written


def start_sandbox(state_dir: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    cmd = [
        sys.executable,
        "-m",
        "devkit.cli",
        "sandbox",
        "anaplan",
        "--state-dir",
        str(state_dir),
        "--task-delay",
        "0.05",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("# serving:"):
            return proc, yaml.safe_load("".join(lines))
        lines.append(line)
    raise RuntimeError("the sandbox did not start:\n" + "".join(lines))


def timed(fn: Callable[[], Any]) -> tuple[Any, float, PeakRss]:
    with PeakRss() as rss:
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
    return result, elapsed, rss


def file_chunks(path: Path, size: int) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while piece := fh.read(size):
            yield piece


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_anaplan", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--chunk-mb", type=int, default=10)
    parser.add_argument("--no-sdk", action="store_true", help="skip the anaplan-sdk comparison")
    args = parser.parse_args(argv)

    from d365_anaplan.anaplan.authenticators import BasicAuthenticator
    from d365_anaplan.anaplan.client import AnaplanClient
    from d365_anaplan.anaplan.tokens import InMemoryTokenCache
    from d365_anaplan.config import AnaplanSettings
    from d365_anaplan.http import VerifiedSession

    with tempfile.TemporaryDirectory(prefix="bench-anaplan-") as tmp:
        work = Path(tmp)
        csv_path = work / "actuals.csv"
        t0 = time.perf_counter()
        size = generate(csv_path, args.size_mb)
        print(f"generated {size / 1e6:.1f} MB of actuals CSV in {time.perf_counter() - t0:.1f} s")
        proc, fragment = start_sandbox(work / "sandbox")
        try:
            ana = fragment["anaplan"]
            ca_bundle = fragment["tls"]["ca_bundle"]
            settings = AnaplanSettings.model_validate({**ana, "chunk_size_mb": args.chunk_mb})
            session = VerifiedSession(ca_bundle=ca_bundle, timeout=300)
            authn = BasicAuthenticator(settings.auth_url, ana["auth"]["username"], ana["auth"]["password"])
            client = AnaplanClient(settings, authn, session=session, token_cache=InMemoryTokenCache())
            client.find_import("Load GL Actuals")  # metadata warm-up (not timed)
            client.requests_made = 0

            def ours() -> Any:
                with csv_path.open("rb") as fh:
                    return client.upload_for_import("Load GL Actuals", fh)

            result, elapsed, rss = timed(ours)
            print("\nd365_anaplan client (streamed, gzip chunks, chunkCount -1 + /complete)")
            print(
                f"  uploaded        {result.bytes_read / 1e6:.1f} MB in {result.chunks} chunks of {args.chunk_mb} MB"
            )
            print(f"  throughput      {result.bytes_read / 1e6 / elapsed:.1f} MB/s ({elapsed:.1f} s)")
            print(
                f"  compression     {result.compression_ratio:.2f}x ({result.bytes_sent / 1e6:.1f} MB on the wire)"
            )
            print(
                f"  requests made   {client.requests_made} (incl. import metadata; retries {client.retries})"
            )
            counters = session.get(ana["api_url"].removesuffix("/2/0") + "/_sandbox/counters").json()
            print(
                f"  sandbox saw     {counters.get('chunks_received', 0)} chunks, "
                f"{counters.get('chunk_bytes_received', 0) / 1e6:.1f} MB, {counters.get('tokens_minted', 0)} token(s) minted"
            )
            verdict = "OK" if rss.growth < RSS_LIMIT_MB else f"OVER the {RSS_LIMIT_MB:.0f} MB budget"
            print(
                f"  peak RSS growth {rss.growth:.1f} MB (base {rss.base:.1f} MB, peak {rss.peak:.1f} MB) {verdict}"
            )

            if not args.no_sdk:
                from devkit.sandbox.anaplan.sdk_bridge import sdk_client_for

                sdk = sdk_client_for(
                    api_base=ana["api_url"].removesuffix("/2/0"),
                    auth_base=ana["auth_url"],
                    ca_bundle=ca_bundle,
                    username=ana["auth"]["username"],
                    password=ana["auth"]["password"],
                    workspace_id=ana["workspace_id"],
                    model_id=ana["model_id"],
                    timeout=300,
                )
                file_id = int(client.find_import("Load GL Actuals").import_data_source_id or 0)
                chunk = args.chunk_mb * 1_000_000
                _, sdk_elapsed, sdk_rss = timed(
                    lambda: sdk.upload_file_stream(file_id, file_chunks(csv_path, chunk))
                )
                transport = sdk._http._client._transport
                print("\nanaplan-sdk 0.5.22 upload_file_stream (same file, same chunk size; gzip chunks)")
                print(f"  throughput      {size / 1e6 / sdk_elapsed:.1f} MB/s ({sdk_elapsed:.1f} s)")
                print(f"  requests made   {transport.rewritten}")
                print(
                    f"  peak RSS growth {sdk_rss.growth:.1f} MB (base {sdk_rss.base:.1f} MB, peak {sdk_rss.peak:.1f} MB)"
                )
            return 0 if rss.growth < RSS_LIMIT_MB else 1
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
