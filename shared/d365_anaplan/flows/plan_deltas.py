"""The differences between the approved plan and what F&O holds from this connector, per cell."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from d365_anaplan.errors import BadInputData
from d365_anaplan.flows.calendar import month_start, period_key
from d365_anaplan.flows.journal_keys import cell_text
from d365_anaplan.flows.money import check_amount
from d365_anaplan.flows.records import PlanRow

CellKey = tuple[str, str, tuple[tuple[str, str], ...], date]  # company, account, dimension values, period


def cell_key(company: str, account: str, dims: Mapping[str, str], period: date) -> CellKey:
    return company.upper(), account, tuple(sorted((k, v) for k, v in dims.items() if v)), month_start(period)


@dataclass(frozen=True, slots=True)
class Delta:
    """One cell's difference: what to write so that F&O holds ``approved``."""

    company: str
    account: str
    dimensions: Mapping[str, str]
    period: date
    held: Decimal
    approved: Decimal
    revision: bool  # F&O already holds lines of this cell from the connector
    source_line: int | None  # the export line of the approved value (None: the cell left the plan)

    @property
    def amount(self) -> Decimal:
        return self.approved - self.held

    def to_json(self) -> dict[str, Any]:
        return {
            "company": self.company,
            "account": self.account,
            "dimensions": dict(self.dimensions),
            "period": period_key(self.period),
            "held": str(self.held),
            "approved": str(self.approved),
            "difference": str(self.amount),
            "revision": self.revision,
        }


def plan_deltas(
    rows: Iterable[PlanRow],
    held: Iterable[tuple[str, str, Mapping[str, str], date, Decimal]],
    periods: Iterable[date],
    *,
    decimals: int = 2,
    keep: Collection[CellKey] = frozenset(),
) -> tuple[list[Delta], dict[CellKey, Decimal]]:
    """Differences between the approved plan (``rows`` of one export) and what F&O holds from this export
    (``held`` lines: company, account, dimension values, date, ledger-signed amount), per cell of the
    ``periods``. Returns the non-zero differences (sorted) and the approved cells (zero cells included).

    A cell that left the export is reversed; a cell in ``keep`` (its row is still in the export but not
    approved, e.g. reopened for review) is not: F&O keeps what it holds, and that is the cell's approved
    value for reconciliation."""
    window = {month_start(p) for p in periods}
    approved: dict[CellKey, Decimal] = {}
    sources: dict[CellKey, int] = {}
    seen: dict[str, int] = {}
    for r in rows:
        where = f"plan row from line {r.line_number}"
        amount = check_amount(r.amount, decimals=decimals, where=where)
        natural = cell_text(r.company, r.account, r.dimensions, r.period, r.version)
        if natural in seen:
            raise BadInputData(
                f"{where}: same company, account, dimensions, period and version as line {seen[natural]}"
            )
        seen[natural] = r.line_number
        key = cell_key(r.company, r.account, r.dimensions, r.period)
        if key[3] not in window:
            raise BadInputData(f"{where}: period {period_key(key[3])} is outside the run's window")
        approved[key] = amount
        sources[key] = r.line_number
    holding: dict[CellKey, Decimal] = {}
    for company, account, held_dims, when, amount in held:
        key = cell_key(company, account, held_dims, when)
        if key[3] in window:
            holding[key] = holding.get(key, Decimal(0)) + amount
    for key in keep:
        if key not in approved and key in holding:
            approved[key] = holding[key]
    deltas = []
    for key in sorted(set(approved) | set(holding)):
        want, have = approved.get(key, Decimal(0)), holding.get(key, Decimal(0))
        if want != have:
            company, account, dim_items, period = key
            deltas.append(
                Delta(company, account, dict(dim_items), period, have, want, key in holding, sources.get(key))
            )
    return deltas, approved
