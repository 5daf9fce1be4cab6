"""The totals of an actuals file, per currency, account and cell, for reconciliation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from d365_anaplan.errors import BadInputData
from d365_anaplan.flows.actuals import ActualsRow
from d365_anaplan.flows.calendar import period_key


@dataclass
class ActualsTotals:
    """What was written: per (company, account, period, currency), for reconciliation and the ledger.

    Amounts of different currencies are never added: ``by_currency`` holds one net total per currency;
    ``total`` is kept for callers of a single-currency connection (it is the only currency's total)."""

    by_account: dict[tuple[str, str, date, str], Decimal] = field(default_factory=dict)
    lines_by_account: dict[tuple[str, str, date, str], int] = field(default_factory=dict)
    by_currency: dict[str, Decimal] = field(default_factory=dict)
    labels: dict[tuple[str, date], str] = field(default_factory=dict)
    by_cell: dict[tuple[str, str, tuple[str, ...], date, str], Decimal] = field(default_factory=dict)
    line_count: int = 0
    row_count: int = 0

    @property
    def total(self) -> Decimal:
        if len(self.by_currency) > 1:
            raise BadInputData(
                f"actuals total: amounts are in several currencies {sorted(self.by_currency)}; use by_currency"
            )
        return next(iter(self.by_currency.values()), Decimal(0))

    def add(self, row: ActualsRow, label: str = "") -> None:
        key = (row.company, row.account, row.period, row.currency)
        self.by_account[key] = self.by_account.get(key, Decimal(0)) + row.amount
        self.lines_by_account[key] = self.lines_by_account.get(key, 0) + row.line_count
        cell = (row.company, row.account, row.dims, row.period, row.currency)
        self.by_cell[cell] = self.by_cell.get(cell, Decimal(0)) + row.amount
        if row.currency or row.amount:
            self.by_currency[row.currency] = self.by_currency.get(row.currency, Decimal(0)) + row.amount
        if label:
            self.labels[(row.company, row.period)] = label
        self.line_count += row.line_count
        self.row_count += 1

    def by_period(self) -> dict[tuple[str, date, str], Decimal]:
        """Totals per (company, period, currency)."""
        out: dict[tuple[str, date, str], Decimal] = {}
        for (company, _account, period, currency), amount in self.by_account.items():
            out[(company, period, currency)] = out.get((company, period, currency), Decimal(0)) + amount
        return out

    def items(self) -> Iterator[tuple[str, str, date, Decimal]]:
        """(company, account, period, amount) in sorted order, for a single-currency reconciliation."""
        for (company, account, period, _currency), amount in sorted(self.by_account.items()):
            yield company, account, period, amount

    def cell_items(self) -> Iterator[tuple[str, str, str, tuple[str, ...], date, Decimal]]:
        """(currency, company, account, dimension values, period, amount) in sorted order: the level the
        import writes."""
        for (company, account, dims, period, currency), amount in sorted(self.by_cell.items()):
            yield currency, company, account, dims, period, amount

    def summary(self) -> dict[str, Any]:
        """Small JSON for the run ledger: overall figures per currency and per (company, period, currency)."""
        by_currency = {c: str(v) for c, v in sorted(self.by_currency.items())}
        return {
            "total": str(self.total) if len(self.by_currency) <= 1 else None,
            "by_currency": by_currency,
            "lines": self.line_count,
            "rows": self.row_count,
            "by_period": [
                {
                    "company": c,
                    "period": period_key(p),
                    "currency": cur,
                    "amount": str(a),
                    "label": self.labels.get((c, p), ""),
                }
                for (c, p, cur), a in sorted(self.by_period().items())
            ],
        }
