"""Opening a run: validate the request, record it, and hand later states everything they need.

The returned object is normalised (every key present) so the state machines never read an optional input
field. A replay takes the original run's periods, so it reruns exactly what the original covered.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from d365_anaplan.config import ConnectionConfig
from d365_anaplan.errors import BadInputData, ConfigError, RecordNotFound
from d365_anaplan.ledger.audit import RunLedger
from d365_anaplan.ledger.drift import Fingerprints
from d365_anaplan.ledger.lease import ModelLease
from d365_anaplan.ledger.watermarks import Watermarks
from d365_anaplan.observability import logger, metrics
from d365_anaplan.runtime import load_connection, model_key_of, run_id_of, settings
from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.gate import close_gate
from d365_anaplan.steps.replay import original_request
from d365_anaplan.vocabulary import Flow, PeriodWindow


class RunRequest(BaseModel):
    """The execution input (schedule, console or CLI); unknown keys are refused with their names."""

    model_config = ConfigDict(extra="forbid")

    connection: str
    trigger: Literal["schedule", "manual", "replay"] = "manual"
    periods: PeriodWindow | None = None
    dry_run: bool = False
    replay_of: str | None = None
    failed_lines_only: bool = False  # plans: write again only the lines F&O rejected in run ``replay_of``
    accept_drift: bool = False  # accept changed model metadata (MetadataDrift) and record the new fingerprint
    # plans: write although the connection's last plans run failed ReconcilePlan (the cause is fixed and checked)
    accept_failed_reconcile: bool = False


def open_run(
    ledger: RunLedger, *, connection: str, flow: Flow, execution: str, run_id: str, request: dict[str, Any]
) -> dict[str, Any]:
    req = RunRequest.model_validate(request)
    if req.failed_lines_only and (flow != "plans" or not req.replay_of):
        raise BadInputData("failed_lines_only: needs replay_of naming a plans run, on the plans flow")
    if req.connection != connection:
        raise BadInputData(
            f"request.connection {req.connection!r} differs from the run's connection {connection!r}"
        )
    trigger = "replay" if req.replay_of else req.trigger
    run = ledger.start_run(run_id, connection, flow, trigger, {"request": request, "execution": execution})
    cfg = load_connection(connection)
    if flow == "plans" and not cfg.mapping.plans.exports:
        raise ConfigError(
            ["mapping.plans.exports: no export is configured, so the plans flow has nothing to load"]
        )
    periods = req.periods.model_dump(by_alias=True) if req.periods else None
    dry_run = req.dry_run
    if req.replay_of:
        ctx = StepContext(connection, execution)
        original = original_request(ctx, req.replay_of, flow)
        periods = original.get("periods") or periods
        if not periods:
            raise BadInputData(
                f"replay_of: run {req.replay_of!r} named no periods; replay it with an explicit periods range"
            )
        if "dry_run" not in request and original.get("dry_run"):
            dry_run = True  # a replay of a dry run stays a dry run unless the request says dry_run: false
    record_window(ledger, run.run_id, cfg, connection=connection, flow=flow, periods=periods, dry_run=dry_run)
    return {
        "run_id": run.run_id,
        "model_key": model_key_of(cfg),
        "companies": cfg.dynamics.companies,
        "periods": periods,
        "dry_run": dry_run,
        "replay_of": req.replay_of,
        "failed_lines_only": req.failed_lines_only,
        "accept_drift": req.accept_drift,
        "accept_failed_reconcile": req.accept_failed_reconcile,
        "verify_export": cfg.mapping.actuals.verify_export,
        "exports": [e.model_dump() for e in cfg.mapping.plans.exports],
        "status": run.status,
    }


def record_window(
    ledger: RunLedger,
    run_id: str,
    cfg: ConnectionConfig,
    *,
    connection: str,
    flow: Flow,
    periods: dict[str, Any] | None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> dict[str, Any] | None:
    """Record (step ``PeriodWindow``) the periods this run will cover, decided as the close gate decides them:
    the requested range, the plan horizon (current and next fiscal year) or the actuals months due, and whether
    the run is a dry run (a replay of a dry run is one). A range the gate will refuse is not recorded here; the
    gate fails the run with its own message."""
    first = (periods or {}).get("from")
    last = (periods or {}).get("to")
    try:
        gate = close_gate(
            cfg.close_calendar,
            connection=connection,
            flow=flow,
            now=now or datetime.now(UTC),
            first=first,
            last=last,
            watermarks=Watermarks(ledger.table_name, client=ledger.client),
        )
    except BadInputData:
        return None
    window = {
        **(gate["window"] or {"from": None, "to": None}),
        "reason": gate["reason"],
        "months": len(gate["periods"]),
        "dry_run": dry_run,
    }
    ledger.record_step(run_id, "PeriodWindow", "SUCCEEDED", window)
    return window


# --- the run ledger's operations (functions/run_ledger) ---------------------------------------------------


class StartEvent(BaseModel):
    op: Literal["start"]
    connection: str
    flow: Flow
    execution: str
    request: dict[str, Any] = Field(default_factory=dict)


class FinishEvent(BaseModel):
    op: Literal["finish"]
    connection: str
    flow: Flow
    execution: str
    status: Literal["SUCCEEDED", "SKIPPED"]
    summary: dict[str, Any] = Field(default_factory=dict)
    watermark: str | None = None  # e.g. "2025-03": the last period this run completed
    dry_run: bool = False


class FailureInfo(BaseModel):
    Error: str = "Unknown"
    Cause: str = ""


class FailEvent(BaseModel):
    op: Literal["fail"]
    connection: str
    flow: Flow
    execution: str
    error: FailureInfo = FailureInfo()


def run_ledger_op(ev: StartEvent | FinishEvent | FailEvent) -> dict[str, Any]:
    """Open a run, close it (advancing the watermark on success), or record its failure."""
    run_id = run_id_of(ev.execution)
    logger.append_keys(run_id=run_id, connection=ev.connection, flow=ev.flow, op=ev.op)
    env = settings()
    ledger = RunLedger(env.ledger_table)
    if isinstance(ev, StartEvent):
        return open_run(
            ledger,
            connection=ev.connection,
            flow=ev.flow,
            execution=ev.execution,
            run_id=run_id,
            request=ev.request,
        )
    if isinstance(ev, FinishEvent):
        ledger.finish_run(run_id, ev.status, summary=ev.summary)
        if ev.status == "SUCCEEDED" and ev.watermark and not ev.dry_run:
            Watermarks(env.ledger_table).advance(ev.connection, ev.flow, ev.watermark, run_id)
        if ev.status == "SUCCEEDED" and not ev.dry_run:
            # the metadata fingerprint the run's pre-check staged becomes what the next run compares with
            Fingerprints(env.ledger_table).promote(ev.connection, ev.flow, run_id)
        metrics.add_metric(name=f"Runs{ev.status.title()}", unit="Count", value=1)
        return {"run_id": run_id, "status": ev.status, "watermark": ev.watermark}
    # failure path: never raise past this point if it can be helped - the execution must end with the cause
    # recorded and the lease released.
    released = ModelLease(env.ledger_table).release_owned_by(ev.execution)
    cause = {"Error": ev.error.Error, "Cause": ev.error.Cause[:4000]}
    try:
        ledger.get_run(run_id)
    except RecordNotFound:
        ledger.start_run(run_id, ev.connection, ev.flow, "unknown", {"execution": ev.execution})
    ledger.finish_run(run_id, "FAILED", cause=cause)
    metrics.add_metric(name="RunsFailed", unit="Count", value=1)
    logger.warning("run failed", extra={"error": ev.error.Error, "released": released})
    return {"run_id": run_id, "status": "FAILED", "error": ev.error.Error, "released": released}


def close_ended_execution(
    execution: str, status: str, error: str | None, cause: str | None
) -> dict[str, Any]:
    """An execution ended (EventBridge status change): if FAILED, TIMED_OUT or ABORTED without reaching its
    own release, release what it held and close its run as FAILED (functions/lease_janitor)."""
    if status not in ("FAILED", "TIMED_OUT", "ABORTED"):
        return {"released": [], "ignored": status}
    env = settings()
    released = ModelLease(env.ledger_table).release_owned_by(execution)
    run_id = run_id_of(execution)
    ledger = RunLedger(env.ledger_table)
    closed = False
    try:
        run = ledger.get_run(run_id)
        if run.status == "RUNNING":
            ledger.finish_run(
                run_id,
                "FAILED",
                cause={
                    "Error": error or f"States.{status}",
                    "Cause": (cause or "")[:2000],
                    "source": "lease_janitor",
                },
            )
            closed = True
    except RecordNotFound:
        pass
    logger.info("execution ended", extra={"status": status, "released": released, "run_closed": closed})
    return {"released": released, "run_closed": closed}
