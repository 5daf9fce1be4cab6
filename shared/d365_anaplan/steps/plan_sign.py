"""How F&O shows revenue on ``BudgetRegisterEntryLines`` (UNCONFIRMED: as entered, or stored sign-flipped),
verified against the connector's own revenue lines before anything is written. A wrong
``dynamics.journal.budget_revenue_read_sign`` makes the read-back of revenue cells wrong, so every run would
write the same revenue difference again (the budget grows run after run): PlanJournals refuses to write, and
``check`` reports the same line (both call :func:`verify_revenue_sign`)."""

from __future__ import annotations

from typing import Any

from d365_anaplan.config import ConnectionConfig
from d365_anaplan.errors import ConfigError, PreviousReconcileFailed
from d365_anaplan.flows.journal_keys import export_tag
from d365_anaplan.steps.context import StepContext

RUNS_LOOKED_AT = 50  # the connection's newest runs searched for its last plans run that reached ReconcilePlan


def verify_revenue_sign(cfg: ConnectionConfig, writer: Any) -> str:
    """What F&O shows, compared with the setting on the first revenue line of the connector found (budget
    register target). Raises ConfigError naming both when they differ."""
    j = cfg.dynamics.journal
    for ex in cfg.mapping.plans.exports:
        for co in cfg.dynamics.companies:
            seen = writer.observed_revenue_sign(co, export_tag(cfg.name, ex.export_action))
            if seen is None:
                continue
            sign, what = seen
            if sign != j.budget_revenue_read_sign:
                raise ConfigError(
                    [
                        f"dynamics.journal.budget_revenue_read_sign: BudgetRegisterEntryLines shows revenue {sign} "
                        f"({co} {what}); configured: {j.budget_revenue_read_sign}; set it to {sign}, confirm with "
                        "`d365-anaplan check`, then rerun (nothing was written)"
                    ],
                    source="budget revenue sign",
                )
            return f"{sign}, as configured ({co} {what})"
    return f"no revenue line written yet; configured {j.budget_revenue_read_sign} (verified on the first one)"


def refuse_after_failed_reconcile(ctx: StepContext, accept: bool) -> None:
    """Refuse to write when the connection's last plans run that reached ReconcilePlan failed it on
    differences (a wrong read-back would make this run write the same differences again), unless the run
    was started with ``accept_failed_reconcile``. Runs that stopped before ReconcilePlan (dry runs, refusals)
    are passed over; a failure on lines F&O rejected is not one: rerunning writes them (README, replay)."""
    for run in ctx.ledger.list_runs(ctx.connection, newest_first=True, limit=RUNS_LOOKED_AT):
        if run.flow != "plans" or run.run_id == ctx.run_id:
            continue
        step = next((s for s in ctx.ledger.steps(run.run_id) if s.step == "ReconcilePlan"), None)
        if step is None:
            continue
        if step.status != "FAILED" or "rejected_lines" in step.detail or accept:
            return
        count = len(step.detail.get("differences") or []) + int(step.detail.get("truncated") or 0)
        raise PreviousReconcileFailed(
            f"plans run {run.run_id} failed ReconcilePlan ({count} difference(s)): writing again on the same read-back would repeat them; fix the cause (if revenue "
            "accounts differ with the sign reversed: dynamics.journal.budget_revenue_read_sign), confirm with "
            '`d365-anaplan check`, then rerun with {"accept_failed_reconcile": true} (nothing was written)'
        )
