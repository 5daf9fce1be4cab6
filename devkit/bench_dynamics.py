"""Benchmark: read posted GL lines from the F&O sandbox into a staged S3 file.

``python -m devkit.bench_dynamics [--lines 1000000] [--months 12] [--route bi|published]``

The sandbox runs in a subprocess (``d365-anaplan sandbox dynamics``); this process reads the lines with
the layer's reader (msal token flow, OData paging, BI-entity join, dimension parsing) and streams them as
CSV into S3 (moto ``mock_aws``) through :class:`d365_anaplan.staging.S3StreamWriter`. Printed: rows/s,
requests made, and peak RSS at 100k lines and at the end (it must stay flat); then the reader alone beside a
bare sequential page loop against the same sandbox (msal token, requests, ``json.loads``, following
``@odata.nextLink``; no ``$select``, as a plain loop reads), run reader, bare, bare, reader, and their ratio. The
reader's worker walks the header and line pages one page ahead of the work on the lines (one request in
flight), so the sandbox's time and the reader's own overlap: never below 1.0x on a machine with a core to
spare; with every core busy the two add up and the ratio tends to the ratio of CPU seconds, also printed.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import yaml

# moto keeps object data in spooled temporary files; keep the in-memory part small so the benchmark
# measures the reader, not moto's buffers.
os.environ.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(1024 * 1024))
for _k, _v in (
    ("AWS_ACCESS_KEY_ID", "bench"),
    ("AWS_SECRET_ACCESS_KEY", "bench"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
):
    os.environ.setdefault(_k, _v)

CHECKPOINTS = (100_000, 250_000, 500_000, 1_000_000)


def rss_mb() -> float:
    """Current resident set size of this process in MiB (like ru_maxrss / 1024)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def process_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def start_sandbox(lines: int, months: int, publish: bool) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    cmd = [
        sys.executable,
        "-m",
        "devkit.cli",
        "sandbox",
        "dynamics",
        "--port",
        "0",
        "--lines",
        str(lines),
        "--months",
        str(months),
    ]
    if publish:
        cmd.append("--publish-gl-entity")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    assert proc.stdout is not None
    text: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("# serving"):
            return proc, yaml.safe_load("".join(text))
        text.append(line)
    proc.kill()
    raise SystemExit("the sandbox did not start: " + "".join(text))


def stop_sandbox(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


class NullSink:
    """Counts bytes, rows and a SHA-256 like S3StreamWriter but keeps nothing."""

    def __init__(self) -> None:
        import hashlib

        self._hash = hashlib.sha256()
        self._bytes = 0
        self._rows = 0
        self.result: Any = None

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self._bytes += len(data)
        self._rows += data.count(b"\n")
        return len(data)

    def __enter__(self) -> NullSink:
        return self

    def __exit__(self, *exc: object) -> None:
        from d365_anaplan.staging import StagedFile

        self.result = StagedFile(
            bucket="(null)", key="(null)", bytes=self._bytes, rows=self._rows, sha256=self._hash.hexdigest()
        )


def csv_field(value: str) -> str:
    if any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def reader_throughput(conn: Any, start: date, end: date) -> tuple[int, float, int]:
    """(lines, seconds, requests) of the layer's reader reading every GL line of [start, end), kept nowhere."""
    before = conn.client.requests_made
    t0 = time.perf_counter()
    n = sum(1 for _ in conn.reader.gl_lines(start, end))
    return n, time.perf_counter() - t0, conn.client.requests_made - before


def bare_page_loop(conn: Any, start: date, end: date, page_size: int) -> tuple[int, float, int]:
    """(line rows, seconds, pages) of the plainest sequential read of the same data the reader reads: an msal
    token, then GET, ``json.loads``, follow ``@odata.nextLink`` - each page of journal headers of [start, end),
    then that page's lines - one request at a time, no parsing beyond ``json.loads``, no prefetch."""
    import json

    from d365_anaplan.dynamics import filters as F
    from d365_anaplan.dynamics.gl_rows import HEADER_SET, LINE_SET
    from d365_anaplan.dynamics.odata_shapes import Query

    def pages(first: str) -> Any:
        url: str | None = first
        while url:
            resp = conn.session.get(url, headers=headers)
            resp.raise_for_status()
            body = json.loads(resp.content)
            yield body["value"]
            url = body.get("@odata.nextLink")

    t0 = time.perf_counter()
    headers = {"Authorization": f"Bearer {conn.tokens.token()}", "Accept": "application/json",
               "Prefer": f"odata.maxpagesize={page_size}"}  # fmt: skip
    heads = Query(HEADER_SET, filter=F.between("AccountingDate", start, end), select=("SourceKey",),
                  orderby="SourceKey")  # fmt: skip
    rows = count = 0
    for head_page in pages(conn.client.first_url(heads)):
        count += 1
        keys = [r["SourceKey"] for r in head_page]
        if not keys:
            continue
        span = F.and_(F.ge("GeneralJournalEntry", min(keys)), F.le("GeneralJournalEntry", max(keys)))
        for line_page in pages(conn.client.first_url(Query(LINE_SET, filter=span))):
            count += 1
            rows += len(line_page)
    return rows, time.perf_counter() - t0, count


def cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by this process, or by process ``pid`` (the sandbox)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def print_reader_ratio(
    conn: Any, start: date, end: date, page_size: int, rounds: int = 2, *, sandbox_pid: int | None = None
) -> float:
    """Run both against the same sandbox, print them side by side, return reader rows/s ÷ bare rows/s.

    With ``rounds`` 2 they run reader, bare, bare, reader (each first once, so a warming sandbox or a change
    in the machine's load favours neither); the ratio is of the summed rows and seconds. With ``sandbox_pid``
    the CPU seconds of each side (this process and the sandbox's) are printed too: when every core is busy
    the sandbox's and the client's time add up instead of overlapping, and the wall ratio tends to the ratio of
    CPU seconds."""
    order = ["reader", "bare"] if rounds < 2 else ["reader", "bare", "bare", "reader"]
    rows = {"reader": 0, "bare": 0}
    seconds = {"reader": 0.0, "bare": 0.0}
    cpu = {"reader": 0.0, "bare": 0.0}
    for who in order:
        load = os.getloadavg()[0]
        before = cpu_seconds() + (cpu_seconds(sandbox_pid) if sandbox_pid else 0.0)
        if who == "reader":
            n, secs, reqs = reader_throughput(conn, start, end)
            text = f"reader:    {n:>10,} lines in {secs:6.1f} s = {n / secs:>9,.0f} lines/s ({reqs} requests, one ahead)"
        else:
            n, secs, pages = bare_page_loop(conn, start, end, page_size)
            text = f"bare loop: {n:>10,} rows  in {secs:6.1f} s = {n / secs:>9,.0f} rows/s  ({pages} pages, sequential)"
        used = cpu_seconds() + (cpu_seconds(sandbox_pid) if sandbox_pid else 0.0) - before
        cpu_text = f"  {used:5.1f} CPU s" if sandbox_pid else ""
        print(f"{text}{cpu_text}  load {load:.1f}")
        rows[who] += n
        seconds[who] += secs
        cpu[who] += used
    n, secs, b, bsecs = rows["reader"], seconds["reader"], rows["bare"], seconds["bare"]
    ratio = (n / secs) / (b / bsecs) if secs and bsecs and b else 0.0
    print(
        f"reader / bare loop: {ratio:.2f}x" + (" (reader, bare, bare, reader summed)" if rounds >= 2 else "")
    )
    if sandbox_pid and cpu["reader"] and b:
        print(
            f"CPU seconds per line, client + sandbox: bare / reader = "
            f"{(cpu['bare'] / b) / (cpu['reader'] / n):.2f}x (the ratio with no core to spare)"
        )
    return ratio


def run(lines: int, months: int, route: str, sink: str = "s3") -> int:
    from moto import mock_aws

    from d365_anaplan.config import parse_connection
    from d365_anaplan.dynamics.client import connect
    from d365_anaplan.secrets import SecretResolver
    from d365_anaplan.staging import S3StreamWriter, s3_client
    from devkit.sandbox.dynamics.testing import ANAPLAN_STUB

    proc, fragment = start_sandbox(lines, months, route == "published")
    try:
        fragment["dynamics"]["page_size"] = 10_000
        fragment["dynamics"]["gl_route"] = route
        cfg = parse_connection({"name": "bench", **fragment, "anaplan": ANAPLAN_STUB})
        conn = connect(cfg, SecretResolver(), reuse_tokens=False)
        start_year, end_month = 2025, months
        end = date(start_year + end_month // 12, end_month % 12 + 1, 1)
        print(f"F&O read benchmark: {lines:,} lines over {months} months, route={route}, page size 10,000")
        print(
            f"{'lines':>10} {'seconds':>8} {'rows/s':>9} {'requests':>9} {'RSS MB':>8} {'peak MB':>8} {'sandbox MB':>10}"
        )
        with mock_aws():
            s3 = s3_client()
            s3.create_bucket(Bucket="bench-staging")
            t0 = time.perf_counter()
            n = 0
            marks = list(CHECKPOINTS)
            buf: list[str] = []
            writer: Any = (
                S3StreamWriter(s3, "bench-staging", "runs/bench/1/extract/gl.csv")
                if sink == "s3"
                else NullSink()
            )
            with writer as out:
                out.write(b"company,account,dimensions,accounting_date,amount,currency,voucher,source_id\n")
                for g in conn.reader.gl_lines(date(start_year, 1, 1), end):
                    dims = ";".join(f"{k}={v}" for k, v in sorted(g.dimensions.items()))
                    buf.append(
                        f"{g.company},{g.account},{csv_field(dims)},{g.accounting_date.isoformat()},{g.amount},{g.currency},{csv_field(g.voucher)},{g.source_id}\n"
                    )
                    n += 1
                    if len(buf) >= 5000:
                        out.write("".join(buf).encode("utf-8"))
                        buf.clear()
                    if marks and n == marks[0]:
                        marks.pop(0)
                        elapsed = time.perf_counter() - t0
                        print(
                            f"{n:>10,} {elapsed:>8.1f} {n / elapsed:>9,.0f} {conn.client.requests_made:>9} {rss_mb():>8.1f} {peak_rss_mb():>8.1f} {process_rss_mb(proc.pid):>10.1f}",
                            flush=True,
                        )
                if buf:
                    out.write("".join(buf).encode("utf-8"))
                elapsed = time.perf_counter() - t0
                print(
                    f"{n:>10,} {elapsed:>8.1f} {n / elapsed:>9,.0f} {conn.client.requests_made:>9} {rss_mb():>8.1f} "
                    f"{peak_rss_mb():>8.1f} {process_rss_mb(proc.pid):>10.1f}  (all read)"
                )
            staged = out.result
            assert staged is not None
            print(
                f"after CompleteMultipartUpload: RSS {rss_mb():.1f} MB, peak {peak_rss_mb():.1f} MB "
                "(moto assembles the whole object inside this process; real S3 does not)"
            )
            print(
                f"staged s3://{staged.bucket}/{staged.key}: {staged.rows:,} rows, {staged.bytes:,} bytes, sha256 {staged.sha256[:16]}..."
            )
            print(
                f"requests: {conn.client.requests_made} OData ({conn.client.retries} retries), {conn.tokens.requests_made} token"
            )
            if staged.rows != n + 1:
                print("row count mismatch", file=sys.stderr)
                return 1
        print_reader_ratio(conn, date(start_year, 1, 1), end, 10_000, sandbox_pid=proc.pid)
    finally:
        stop_sandbox(proc)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devkit.bench_dynamics", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--route", choices=("bi", "published"), default="bi")
    parser.add_argument(
        "--sink",
        choices=("s3", "null"),
        default="s3",
        help="null: count and hash only (isolates the reader's memory from moto's)",
    )
    args = parser.parse_args(argv)
    return run(args.lines, args.months, args.route, args.sink)


if __name__ == "__main__":
    sys.exit(main())
