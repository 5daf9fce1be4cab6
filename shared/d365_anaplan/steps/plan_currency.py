"""The plan currency of every configured company, resolved against its ledger in F&O (PlanJournals and
``check`` both call :func:`resolve_plan_currencies`, so ``check`` reports the run's refusal word for word)."""

from __future__ import annotations

from typing import Any

from d365_anaplan.config import ConnectionConfig
from d365_anaplan.flows.plan_currency import plan_currencies


def resolve_plan_currencies(cfg: ConnectionConfig, reader: Any) -> dict[str, str]:
    """Company -> the currency its plan lines are written in (the ledger's accounting currency; a configured
    one that differs is refused with ConfigError)."""
    books = reader.books()
    ledger = {co.upper(): books.ledger(co).accounting_currency for co in cfg.dynamics.companies}
    return plan_currencies(cfg.dynamics.journal, cfg.dynamics.companies, ledger)
