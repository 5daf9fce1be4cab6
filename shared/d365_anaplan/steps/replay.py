"""Replay: rerun a past run from its staged S3 files, without extracting from the source system again.

The new run gets its own copy of the original run's staged inputs (server-side S3 copies, nothing passes
through memory), so everything after extraction runs exactly as it did, and the original run's files and
ledger stay untouched. The original must be a run of the same connection and flow.
"""

from __future__ import annotations

from typing import Any

from d365_anaplan.errors import BadInputData, RecordNotFound
from d365_anaplan.staging import run_key
from d365_anaplan.steps.context import StepContext
from d365_anaplan.vocabulary import Flow

FOLDERS: dict[str, tuple[str, ...]] = {"actuals": ("master", "gl"), "plans": ("exports",)}


def original_request(ctx: StepContext, original: str, flow: Flow) -> dict[str, Any]:
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


def replay_staged(ctx: StepContext, original: str, flow: Flow) -> dict[str, Any]:
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


def replay_failed_lines(ctx: StepContext, original: str, *, dry_run: bool = False) -> dict[str, Any]:
    """Write again the journal lines that F&O rejected in run ``original``, from the ledger alone.

    A voucher is rejected whole (its changeset rolls back), so the failed lines form whole vouchers and
    still balance. They go through the flow's writer entry point to the configured target (journal or budget
    register entry), resumed by its key; lines already in F&O are skipped, so replaying twice writes nothing
    twice. Outcomes are recorded in this run, and the original's lines are marked
    ``REPLAYED`` once they land.
    """
    from d365_anaplan.errors import DynamicsValidationError
    from d365_anaplan.ledger.audit import JournalLineEntry
    from d365_anaplan.steps.plans import entry_header, line_input

    original_request(ctx, original, "plans")
    _refuse_after_a_later_run(ctx, original)
    failed = [line for line in ctx.ledger.failed_journal_lines(original) if line.payload]
    journals = {j.journal_key: j for j in ctx.ledger.journals(original)}
    by_journal: dict[str, list[Any]] = {}
    for line in failed:
        by_journal.setdefault(line.journal_key, []).append(line)
    summary: dict[str, Any] = {"replay_of": original, "lines": len(failed), "written": 0, "journals": []}
    problems: list[str] = []
    for journal_key, lines in sorted(by_journal.items()):
        detail = journals[journal_key].detail if journal_key in journals else {}
        header = entry_header(
            {
                **detail,
                **dict(lines[0].payload.get("header") or {}),
                "journal_key": journal_key,
                "journal_name": str(detail.get("journal_name") or ctx.cfg.dynamics.journal.journal_name),
            }
        )
        company = str(lines[0].payload["company"])
        inputs = [line_input(line.payload) for line in lines]
        if dry_run:  # the same writer validates and builds the lines, and sends nothing
            planned = ctx.dynamics.writer.write(company, inputs, header, dry_run=True)
            summary["journals"].append(
                {
                    "journal_key": journal_key,
                    "company": company,
                    "lines": planned.lines_planned,
                    "description": header.description,
                }
            )
            continue
        # The same writer entry point as the flow: the configured target, the same entry resumed by its key.
        result = ctx.dynamics.writer.write(company, inputs, header)
        errors = {e.source: e.message for e in result.errors}
        mine, theirs = [], []
        for line, entry in zip(lines, inputs, strict=True):
            error = errors.get(entry.source)
            status = "FAILED" if error else "WRITTEN"
            fo_ids = None if error else {"journal_batch_number": result.journal_batch_number}
            mine.append(JournalLineEntry(journal_key, line.line_key, status, fo_ids, error, line.payload))
            if not error:
                theirs.append(
                    JournalLineEntry(journal_key, line.line_key, "REPLAYED", {"replayed_in": ctx.run_id})
                )
        ctx.ledger.record_journal_lines(ctx.run_id, mine)
        ctx.ledger.record_journal_lines(original, theirs)
        ctx.ledger.record_journal(
            ctx.run_id,
            journal_key,
            "FAILED" if errors else "WRITTEN",
            result.journal_batch_number,
            {"replay_of": original, "written": result.lines_written, "skipped": result.lines_skipped},
        )
        summary["written"] += result.lines_written
        summary["journals"].append(
            {
                "journal_key": journal_key,
                "company": company,
                "lines": len(inputs),
                "journal_batch_number": result.journal_batch_number,
                "rejected": len(errors),
            }
        )
        if errors:
            problems.append(
                f"{journal_key}: {len(errors)} line(s) rejected again; first: {next(iter(errors.values()))}"
            )
    ctx.ledger.record_step(ctx.run_id, "ReplayFailedLines", "FAILED" if problems else "SUCCEEDED", summary)
    if problems:
        raise DynamicsValidationError("; ".join(problems))
    return summary


def _refuse_after_a_later_run(ctx: StepContext, original: str) -> None:
    """A later plans run read back what F&O held and wrote the differences itself, the rejected cells
    included: replaying the original's lines then would write them twice. Refuse, naming that run."""
    started = ctx.ledger.get_run(original).started_at
    for run in ctx.ledger.list_runs(ctx.connection, since=started):
        raw = run.detail.get("request")
        request: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if run.flow != "plans" or run.run_id in (original, ctx.run_id) or request.get("dry_run"):
            continue
        if request.get("failed_lines_only"):
            continue
        raise BadInputData(
            f"replay_of: plans run {run.run_id} started after {original} and brought F&O to the approved plan "
            "itself (it writes the differences to what F&O holds), so the rejected lines of the earlier run are "
            "not replayed (they would count twice); run the plans flow again instead"
        )
