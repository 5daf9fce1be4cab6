"""Replay: rerun a past run from its staged S3 files, without extracting from the source system again.

The new run gets its own copy of the original run's staged inputs (server-side S3 copies, nothing passes
through memory), so everything after extraction runs exactly as it did, and the original run's files and
ledger stay untouched. The original must be a run of the same connection and flow.
"""

from __future__ import annotations

from typing import Any, Literal

from d365_anaplan.errors import BadInputData, RecordNotFound
from d365_anaplan.staging import run_key
from d365_anaplan.steps.context import StepContext

FOLDERS: dict[str, tuple[str, ...]] = {"actuals": ("master", "gl"), "plans": ("exports",)}


def original_request(ctx: StepContext, original: str, flow: Literal["actuals", "plans"]) -> dict[str, Any]:
    """The original run's request, after checking it is a run of this connection and flow."""
    try:
        run = ctx.ledger.get_run(original)
    except RecordNotFound:
        raise BadInputData(f"replay_of: no run {original!r} in the ledger") from None
    if run.connection != ctx.connection or run.flow != flow:
        raise BadInputData(
            f"replay_of: run {original!r} is a {run.flow} run of connection {run.connection!r}, "
            f"not a {flow} run of {ctx.connection!r}"
        )
    request = run.detail.get("request")
    return request if isinstance(request, dict) else {}


def replay_staged(ctx: StepContext, original: str, flow: Literal["actuals", "plans"]) -> dict[str, Any]:
    """Copy the original run's staged inputs into this run and describe them as the extraction would."""
    original_request(ctx, original, flow)
    bucket = ctx.env.staging_bucket
    copied = 0
    for folder in FOLDERS[flow]:
        source_prefix = run_key(ctx.connection, original, folder, "x")[:-1]
        paginator = ctx.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=source_prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                target = ctx.key(folder, key[len(source_prefix) :])
                ctx.s3.copy({"Bucket": bucket, "Key": key}, bucket, target)
                copied += 0 if key.endswith(".manifest.json") else 1
    if not copied:
        raise BadInputData(
            f"replay_of: run {original!r} has no staged files left to replay (expired or never staged)"
        )
    out: dict[str, Any] = {"replay_of": original, "files": copied}
    if flow == "actuals":
        imports = []
        for step in ctx.ledger.steps(original):
            if step.step == "ExtractMasterData" and step.detail.get("imports"):
                for item in step.detail["imports"]:
                    name = str(item["key"]).rsplit("/", 1)[-1]
                    imports.append(
                        {
                            "action": str(item["action"]),
                            "key": ctx.key("master", name),
                            "rows": int(item["rows"]),
                        }
                    )
        out["imports"] = imports
        out["caveats"] = []
    else:
        exports = []
        for export in ctx.cfg.mapping.plans.exports:
            key = ctx.key("exports", f"{export.export_action}.csv")
            try:
                ctx.s3.head_object(Bucket=bucket, Key=key)
            except ctx.s3.exceptions.ClientError:
                continue
            exports.append({"action": export.export_action, "file_key": key})
        out["exports"] = exports
    ctx.ledger.record_step(
        ctx.run_id, "ReplayStaged", "SUCCEEDED", {k: v for k, v in out.items() if k != "caveats"}
    )
    return out
