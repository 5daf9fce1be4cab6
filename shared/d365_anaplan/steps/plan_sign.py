"""How F&O shows revenue on ``BudgetRegisterEntryLines`` (UNCONFIRMED: as entered, or stored sign-flipped),
verified against the connector's own revenue lines before anything is written. A wrong
``dynamics.journal.budget_revenue_read_sign`` makes the read-back of revenue cells wrong, so every run would
write the same revenue difference again (the budget grows run after run): PlanJournals refuses to write, and
``check`` reports the same line (both call :func:`verify_revenue_sign`)."""

from __future__ import annotations

from typing import Any

from d365_anaplan.config import ConnectionConfig
from d365_anaplan.errors import ConfigError
from d365_anaplan.flows.journal_keys import export_tag


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
