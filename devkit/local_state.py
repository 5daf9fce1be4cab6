"""Local state between CLI invocations: the moto ledger and buckets on disk.

A :class:`~devkit.engine.LocalEngine` lives in one process (moto keeps everything in memory). The CLI runs one
command per process, so ``audit RUN`` and ``replay RUN`` after ``run`` need what the run left behind. After a
run :func:`dump` writes the DynamoDB tables and S3 buckets of the template to a directory (default
``.local/state/``); before the next command :func:`load` puts them into a fresh engine.

What is kept: the ledger table (runs, steps, files, tasks, journals, lines, watermarks) and every object of the staging and config buckets. What is not: Secrets Manager
(credentials never go to disk; each command installs the connection from its config file again), model
leases and their owner pointers (the process that held them is gone), the encrypted Anaplan token cache
(its KMS key died with the old engine).

Layout::

    <state_dir>/state.json                     version, when, what was saved
    <state_dir>/tables/<LogicalId>.jsonl       one DynamoDB item (typed JSON, binary as base64) per line
    <state_dir>/buckets/<LogicalId>/<key>      one file per S3 object
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

from devkit.engine import REGION, LocalEngine

DEFAULT_STATE_DIR = Path(".local/state")
FORMAT_VERSION = 1
# Logical ids of the template resources that carry state between invocations.
TABLES = ("LedgerTable",)
BUCKETS = ("StagingBucket", "ConfigBucket")
# Ledger partitions that belong to a live process or to its KMS key, not to the audit trail.
_SKIPPED_PREFIXES = ("LEASE#", "OWNER#", "TOKEN#")


class StateError(RuntimeError):
    """The state directory cannot be read or written (the message names the file)."""


@dataclass
class StateSummary:
    directory: Path
    items: dict[str, int] = field(default_factory=dict)  # logical id -> items
    objects: dict[str, int] = field(default_factory=dict)  # logical id -> objects
    saved_at: str | None = None

    def describe(self) -> str:
        tables = ", ".join(f"{k} {v}" for k, v in self.items.items())
        buckets = ", ".join(f"{k} {v}" for k, v in self.objects.items())
        return f"{self.directory}: items ({tables}); objects ({buckets})"


def default_state_dir() -> Path:
    """``$D365_ANAPLAN_STATE_DIR`` when set, else ``.local/state`` under the current directory."""
    env = os.environ.get("D365_ANAPLAN_STATE_DIR")
    return Path(env) if env else DEFAULT_STATE_DIR


# --- typed JSON for DynamoDB items ---------------------------------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return {"__b64__": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__b64__"}:
            return base64.b64decode(value["__b64__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _keep(logical_id: str, item: dict[str, Any]) -> bool:
    if logical_id == "LedgerTable":
        pk = item.get("pk", {}).get("S", "")
        return not pk.startswith(_SKIPPED_PREFIXES)
    return True


def _safe_key(key: str) -> bool:
    parts = key.split("/")
    return bool(key) and not key.startswith("/") and ".." not in parts and "" not in parts[:-1]


# --- dump and load -------------------------------------------------------------------------------------------


def dump(engine: LocalEngine, directory: Path | str | None = None) -> StateSummary:
    """Write the engine's tables and buckets to ``directory``, replacing what was there (atomically)."""
    import boto3

    target = Path(directory) if directory is not None else default_state_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    summary = StateSummary(target, saved_at=datetime.now(UTC).isoformat(timespec="seconds"))
    try:
        work = Path(tempfile.mkdtemp(prefix=".state-", dir=target.parent))
    except OSError as exc:
        raise StateError(f"cannot write the state directory {target.parent}: {exc.strerror}") from None
    try:
        ddb = boto3.client("dynamodb", region_name=REGION)
        (work / "tables").mkdir()
        for lid in TABLES:
            name = engine.resource_name(lid)
            desc = ddb.describe_table(TableName=name)["Table"]
            schema = {
                "TableName": name,
                "AttributeDefinitions": desc["AttributeDefinitions"],
                "KeySchema": desc["KeySchema"],
                "GlobalSecondaryIndexes": [
                    {k: g[k] for k in ("IndexName", "KeySchema", "Projection")}
                    for g in desc.get("GlobalSecondaryIndexes", [])
                ],
            }
            (work / "tables" / f"{lid}.schema.json").write_text(
                json.dumps(schema, indent=1), encoding="utf-8"
            )
            count = 0
            with (work / "tables" / f"{lid}.jsonl").open("w", encoding="utf-8") as out:
                for page in ddb.get_paginator("scan").paginate(TableName=name, ConsistentRead=True):
                    for item in page.get("Items", []):
                        if _keep(lid, item):
                            out.write(json.dumps(_encode(item), separators=(",", ":")) + "\n")
                            count += 1
            summary.items[lid] = count
        s3 = boto3.client("s3", region_name=REGION)
        for lid in BUCKETS:
            bucket = engine.resource_name(lid)
            root = work / "buckets" / lid
            root.mkdir(parents=True)
            count = 0
            for listing in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for obj in listing.get("Contents", []):
                    key = str(obj["Key"])
                    if not _safe_key(key):
                        continue
                    path = root / key
                    path.parent.mkdir(parents=True, exist_ok=True)
                    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
                    try:
                        with path.open("wb") as out_file:
                            shutil.copyfileobj(body, out_file, 1 << 20)
                    finally:
                        body.close()
                    count += 1
            summary.objects[lid] = count
        manifest = {
            "version": FORMAT_VERSION,
            "saved_at": summary.saved_at,
            "items": summary.items,
            "objects": summary.objects,
        }
        (work / "state.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        old = None
        if target.exists():
            old = target.with_name(f"{target.name}.old-{os.getpid()}")
            target.rename(old)
        work.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return summary


def exists(directory: Path | str | None = None) -> bool:
    target = Path(directory) if directory is not None else default_state_dir()
    return (target / "state.json").is_file()


def load(engine: LocalEngine, directory: Path | str | None = None) -> StateSummary | None:
    """Put a saved state into a fresh engine. Returns None when ``directory`` holds no state yet."""
    import boto3

    source = Path(directory) if directory is not None else default_state_dir()
    manifest_path = source / "state.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StateError(f"{manifest_path}: not a state file ({exc})") from None
    if manifest.get("version") != FORMAT_VERSION:
        raise StateError(
            f"{manifest_path}: state format {manifest.get('version')!r}, this build reads {FORMAT_VERSION}; "
            f"remove {source} to start afresh"
        )
    summary = StateSummary(source, saved_at=manifest.get("saved_at"))
    _load_tables(source, summary, {lid: engine.resource_name(lid) for lid in TABLES})
    s3 = boto3.client("s3", region_name=REGION)
    for lid in BUCKETS:
        root = source / "buckets" / lid
        if not root.is_dir():
            continue
        bucket = engine.resource_name(lid)
        count = 0
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = path.relative_to(root).as_posix()
            with path.open("rb") as body:
                s3.upload_fileobj(body, bucket, key)
            count += 1
        summary.objects[lid] = count
    return summary


def _load_tables(source: Path, summary: StateSummary, names: dict[str, str]) -> None:
    import boto3

    ddb = boto3.client("dynamodb", region_name=REGION)
    for lid, name in names.items():
        path = source / "tables" / f"{lid}.jsonl"
        if not path.is_file():
            continue
        batch: list[dict[str, Any]] = []
        count = 0

        def flush(requests: list[dict[str, Any]], table: str = name) -> None:
            pending: dict[str, Any] = {table: requests}
            while pending:
                pending = ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

        with path.open(encoding="utf-8") as lines:
            for n, raw in enumerate(lines, start=1):
                if not raw.strip():
                    continue
                try:
                    item = _decode(json.loads(raw))
                except ValueError as exc:
                    raise StateError(f"{path} line {n}: not JSON ({exc})") from None
                batch.append({"PutRequest": {"Item": item}})
                count += 1
                if len(batch) == 25:
                    flush(batch)
                    batch = []
        if batch:
            flush(batch)
        summary.items[lid] = count


@contextmanager
def ledger_tables(directory: Path | str | None = None) -> Iterator[dict[str, str]]:
    """Only the saved DynamoDB tables, in a bare in-memory AWS (no engine, no buckets): for reading the ledger.

    Yields logical id -> table name. Much quicker than a LocalEngine; nothing is saved afterwards.
    """
    import boto3
    from moto import mock_aws

    source = Path(directory) if directory is not None else default_state_dir()
    if not (source / "state.json").is_file():
        raise StateError(f"{source}: no saved state")
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
             "AWS_DEFAULT_REGION": REGION}  # fmt: skip
    with mock.patch.dict(os.environ, creds), mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        names: dict[str, str] = {}
        for lid in TABLES:
            schema_path = source / "tables" / f"{lid}.schema.json"
            if not schema_path.is_file():
                raise StateError(f"{schema_path}: missing (saved by an older build; run a flow again)")
            schema = json.loads(schema_path.read_text(encoding="utf-8"))
            if not schema.get("GlobalSecondaryIndexes"):
                schema.pop("GlobalSecondaryIndexes", None)
            ddb.create_table(**schema, BillingMode="PAY_PER_REQUEST")
            names[lid] = str(schema["TableName"])
        _load_tables(source, StateSummary(source), names)
        yield names


# --- runs in progress ----------------------------------------------------------------------------------------
# The state directory is written when a command ends, so a run another process is executing right now is not in
# it yet. While it runs, that process keeps a small marker beside the state directory (never inside it: the
# save replaces the directory whole); ``audit`` lists these as in progress.


def _markers(directory: Path) -> Path:
    return directory.parent / f".{directory.name}.running"


@contextmanager
def marking_run(directory: Path, run_id: str, info: dict[str, Any]) -> Iterator[None]:
    """Mark ``run_id`` as in progress (with ``info`` and this process id) until the block ends."""
    folder = _markers(directory)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"{run_id}.json"
    started = datetime.now(UTC).isoformat(timespec="seconds")
    marker.write_text(json.dumps({**info, "run_id": run_id, "pid": os.getpid(), "started_at": started}),
                      encoding="utf-8")  # fmt: skip
    try:
        yield
    finally:
        marker.unlink(missing_ok=True)


def runs_in_progress(directory: Path) -> list[dict[str, Any]]:
    """The runs other processes are executing on ``directory`` now (markers of dead processes are dropped)."""
    folder = _markers(directory)
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            os.kill(int(info["pid"]), 0)
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # its process is gone (killed hard; Ctrl-C records the run)
            continue
        out.append(info)
    return out
