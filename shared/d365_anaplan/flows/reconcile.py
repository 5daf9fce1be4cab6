"""Reconciliation: compare totals of two sides per (company, account, period) and per (company, period).

Each side is a stream of ``(company, account, period, amount)`` items (e.g. ``ActualsTotals.items()`` of the
file written, the GL lines read, ``JournalPlan.items()``, the journal lines read back from F&O). Amounts are
summed as Decimal per key; a key is *matched* when ``abs(left - right) <= tolerance``. A key present on one
side only counts as matched when its amount is within the tolerance of zero, else it is *missing* on the
other side. The result serialises to small JSON (the largest ``max_items`` differences) for the ledger, and
:func:`assert_reconciled` raises :class:`~d365_anaplan.errors.ReconciliationFailed` naming the top ones.

Currencies: every call names the currency of its amounts (``currency``: one code for all of them, or a map from
each item's company to its currency). A company's amounts are in one currency, so the per-key comparisons never
mix currencies; the sides' totals are kept per currency (``left_totals``/``right_totals``: code -> total) and are
never added across currencies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from d365_anaplan.errors import ReconciliationFailed
from d365_anaplan.flows.calendar import month_start, period_key
from d365_anaplan.flows.money import per_currency_text

Item = tuple[str, str, date, Decimal]

# What a run without a read-back export says instead of "reconciled" (ledger step detail, CLI, run report).
NOT_RECONCILED = "not reconciled against Anaplan (no read-back export configured): only the import's row counts were checked"


@dataclass
class SideTotals:
    """Totals of one side; build with :meth:`from_items`."""

    name: str
    by_account: dict[tuple[str, str, date], Decimal] = field(default_factory=dict)
    items_count: int = 0

    @classmethod
    def from_items(cls, name: str, items: Iterable[Item], *, exact_periods: bool = False) -> SideTotals:
        """Sum items per key; periods are months (any day of the month) unless ``exact_periods`` (fiscal
        periods keyed by their last day)."""
        side = cls(name=name)
        for company, account, period, amount in items:
            side.add(company, account, period if exact_periods else month_start(period), amount)
        return side

    def add(self, company: str, account: str, period: date, amount: Decimal) -> None:
        """Add one item under (company, account, period) as given (``from_items`` maps days to months)."""
        if not isinstance(amount, Decimal):
            raise TypeError(f"{self.name}: amounts must be Decimal, got {type(amount).__name__}")
        key = (company, account, period)
        self.by_account[key] = self.by_account.get(key, Decimal(0)) + amount
        self.items_count += 1

    def by_period(self) -> dict[tuple[str, date], Decimal]:
        out: dict[tuple[str, date], Decimal] = {}
        for (company, _account, period), amount in self.by_account.items():
            out[(company, period)] = out.get((company, period), Decimal(0)) + amount
        return out

    def totals(self, currency_of: Mapping[str, str]) -> dict[str, Decimal]:
        """The side's net total per currency (currency code -> total), sorted by code."""
        out: dict[str, Decimal] = {}
        for (company, _account, _period), amount in self.by_account.items():  # exact: the order is no matter
            cur = currency_of[company]
            out[cur] = out.get(cur, Decimal(0)) + amount
        return dict(sorted(out.items()))


def _period_text(period: date) -> str:
    """``YYYY-MM`` for a month, the ISO date for a fiscal period keyed by its last day."""
    return period_key(period) if period.day == 1 else period.isoformat()


@dataclass(frozen=True, slots=True)
class Difference:
    level: Literal["account", "period"]
    kind: Literal["mismatch", "missing_left", "missing_right"]
    company: str
    account: str | None
    period: date
    left: Decimal | None
    right: Decimal | None
    currency: str

    @property
    def difference(self) -> Decimal:
        """left - right (a missing side counts as zero)."""
        return (self.left or Decimal(0)) - (self.right or Decimal(0))

    def label(self) -> str:
        where = (
            f"{self.company} {self.account} {_period_text(self.period)}"
            if self.account is not None
            else (f"{self.company} {_period_text(self.period)} (all accounts)")
        )
        return where

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "kind": self.kind,
            "company": self.company,
            "account": self.account,
            "period": _period_text(self.period),
            "currency": self.currency,
            "left": None if self.left is None else str(self.left),
            "right": None if self.right is None else str(self.right),
            "difference": str(self.difference),
        }


@dataclass
class ReconcileResult:
    left_name: str
    right_name: str
    tolerance: Decimal
    left_totals: dict[str, Decimal]  # currency code -> the side's net total (never added across currencies)
    right_totals: dict[str, Decimal]
    matched_accounts: int
    matched_periods: int
    differences: list[Difference]

    @property
    def ok(self) -> bool:
        return not self.differences

    def mismatches(self, level: Literal["account", "period"] = "account") -> list[Difference]:
        return [d for d in self.differences if d.level == level and d.kind == "mismatch"]

    def missing(
        self, side: Literal["left", "right"], level: Literal["account", "period"] = "account"
    ) -> list[Difference]:
        kind = "missing_left" if side == "left" else "missing_right"
        return [d for d in self.differences if d.level == level and d.kind == kind]

    def top(self, n: int = 10) -> list[Difference]:
        """The ``n`` largest differences (absolute), account level first on ties."""
        return sorted(
            self.differences,
            key=lambda d: (-abs(d.difference), d.level != "account", d.company, d.account or "", d.period),
        )[:n]

    def to_json(self, max_items: int = 20) -> dict[str, Any]:
        shown = self.top(max_items)
        return {
            "ok": self.ok,
            "left": self.left_name,
            "right": self.right_name,
            "tolerance": str(self.tolerance),
            "left_totals": {c: str(v) for c, v in sorted(self.left_totals.items())},
            "right_totals": {c: str(v) for c, v in sorted(self.right_totals.items())},
            "matched_accounts": self.matched_accounts,
            "matched_periods": self.matched_periods,
            "mismatches": len(self.mismatches("account")) + len(self.mismatches("period")),
            "missing_left": len(self.missing("left")) + len(self.missing("left", "period")),
            "missing_right": len(self.missing("right")) + len(self.missing("right", "period")),
            "differences": [d.to_json() for d in shown],
            "truncated": len(self.differences) - len(shown),
        }

    def to_text(self, top: int = 10) -> str:
        if self.ok:
            return (
                f"reconciled {self.left_name} with {self.right_name}: {self.matched_accounts} account total(s), "
                f"{self.matched_periods} period total(s) match (totals {per_currency_text(self.left_totals)})"
            )
        lines = [
            f"{self.left_name} and {self.right_name} do not reconcile: {len(self.differences)} difference(s) "
            f"beyond tolerance {self.tolerance} (totals {self.left_name} {per_currency_text(self.left_totals)} vs "
            f"{self.right_name} {per_currency_text(self.right_totals)})"
        ]
        for d in self.top(top):
            left = "missing" if d.left is None else str(d.left)
            right = "missing" if d.right is None else str(d.right)
            lines.append(
                f"  {d.label()} in {d.currency}: {self.left_name} {left}, {self.right_name} {right}, difference {d.difference}"
            )
        if len(self.differences) > top:
            lines.append(f"  ... and {len(self.differences) - top} more")
        return "\n".join(lines)


def _compare(
    level: Literal["account", "period"],
    left: dict[Any, Decimal],
    right: dict[Any, Decimal],
    tolerance: Decimal,
    currency_of: Mapping[str, str],
) -> tuple[int, list[Difference]]:
    matched = 0
    diffs: list[Difference] = []
    for key in sorted(set(left) | set(right)):
        company, account, period = (key[0], key[1], key[2]) if level == "account" else (key[0], None, key[1])
        lv, rv = left.get(key), right.get(key)
        diff = (lv or Decimal(0)) - (rv or Decimal(0))
        if abs(diff) <= tolerance:
            matched += 1
            continue
        kind: Literal["mismatch", "missing_left", "missing_right"] = (
            "missing_left" if lv is None else "missing_right" if rv is None else "mismatch"
        )
        diffs.append(Difference(level, kind, company, account, period, lv, rv, currency_of[company]))
    return matched, diffs


def reconcile(
    left: SideTotals | Iterable[Item],
    right: SideTotals | Iterable[Item],
    *,
    currency: str | Mapping[str, str],
    tolerance: Decimal = Decimal(0),
    left_name: str = "source",
    right_name: str = "target",
    exact_periods: bool = False,
) -> ReconcileResult:
    """Compare two sides per (company, account, period) and per (company, period).

    ``currency``: the currency of every amount, or a map from each item's company to its currency (a company
    missing from it is a ValueError). Totals are per currency; tolerance applies to every currency alike (call
    once per currency for per-currency tolerances)."""
    if not isinstance(tolerance, Decimal) or not tolerance.is_finite() or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative Decimal, got {tolerance!r}")
    lt = (
        left
        if isinstance(left, SideTotals)
        else SideTotals.from_items(left_name, left, exact_periods=exact_periods)
    )
    rt = (
        right
        if isinstance(right, SideTotals)
        else SideTotals.from_items(right_name, right, exact_periods=exact_periods)
    )
    companies = {k[0] for k in lt.by_account} | {k[0] for k in rt.by_account}
    if isinstance(currency, str):
        currency_of = dict.fromkeys(companies, currency)
    else:
        unknown = sorted(companies - set(currency))
        if unknown:
            raise ValueError(f"reconcile: no currency for {', '.join(unknown)}")
        currency_of = dict(currency)
    matched_a, diffs_a = _compare("account", lt.by_account, rt.by_account, tolerance, currency_of)
    matched_p, diffs_p = _compare("period", lt.by_period(), rt.by_period(), tolerance, currency_of)
    return ReconcileResult(
        left_name=lt.name,
        right_name=rt.name,
        tolerance=tolerance,
        left_totals=lt.totals(currency_of),
        right_totals=rt.totals(currency_of),
        matched_accounts=matched_a,
        matched_periods=matched_p,
        differences=diffs_a + diffs_p,
    )


def assert_reconciled(result: ReconcileResult, top: int = 10) -> None:
    """Raise ReconciliationFailed listing the ``top`` largest differences, unless everything matched."""
    if not result.ok:
        raise ReconciliationFailed(result.to_text(top))
