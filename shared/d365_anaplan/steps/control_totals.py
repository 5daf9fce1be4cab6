"""Control totals of the extracted GL, independent of the load."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

from d365_anaplan.errors import ReconciliationFailed
from d365_anaplan.flows.actuals import validate_gl_line
from d365_anaplan.flows.balances import in_run
from d365_anaplan.flows.reconcile import reconcile
from d365_anaplan.flows.records import GLLine
from d365_anaplan.steps.context import StepContext
from d365_anaplan.steps.gl_extract import company_reader, staged_gl_lines, window_dates

# Independent of the load: (a) the extracted GL nets to zero per company x period x currency (every voucher
# balances in its ledger); (b) a second path through F&O (the other GL route) gives the same totals per
# company x account x period x currency. Both run before anything is written to Anaplan.

CurrencyItem = tuple[str, str, str, date, Decimal]  # currency, company, account, period, amount


def movement_lines(ctx: StepContext, months: set[date]) -> Iterator[GLLine]:
    """The staged GL of the run's periods: with balance-sheet balances the extract starts at the fiscal year's
    first day, and the lines before the run's periods only feed the balances."""
    if ctx.cfg.ledger.balance_sheet != "balances":
        yield from staged_gl_lines(ctx)
        return
    yield from (g for g in staged_gl_lines(ctx) if in_run(g, months))


def _first_path(ctx: StepContext, common: dict[str, Any]) -> dict[tuple[str, str, str, date], Decimal]:
    out: dict[tuple[str, str, str, date], Decimal] = {}
    for index, line in enumerate(movement_lines(ctx, set(common["periods"])), start=1):
        row = validate_gl_line(line, index, **common)
        if row is None:
            continue
        k = (row.currency, row.company, row.account, row.period)
        out[k] = out.get(k, Decimal(0)) + row.amount
    return out


def _second_path(
    ctx: StepContext, periods: list[str], common: dict[str, Any]
) -> tuple[str, dict[tuple[str, str, str, date], Decimal]]:
    """Totals read again through the GL route the run did not use (both must be published)."""
    start, end = window_dates(periods)
    used = company_reader(ctx, list(ctx.cfg.dynamics.companies)).discover().route.value
    other = "bi" if used == "published" else "published"
    out: dict[tuple[str, str, str, date], Decimal] = {}
    index = 0
    for company in ctx.cfg.dynamics.companies:
        reader = company_reader(ctx, [company], other)
        lo, hi = reader.window(company, start, end)
        if hi <= lo:
            continue
        for line in reader.gl_lines(lo, hi):
            index += 1
            row = validate_gl_line(line, index, **common)
            if row is None:
                continue
            k = (row.currency, row.company, row.account, row.period)
            out[k] = out.get(k, Decimal(0)) + row.amount
    return other, out


def tolerance_for(ctx: StepContext, currency: str) -> Decimal:
    return ctx.cfg.ledger.tolerance(currency, ctx.cfg.reconciliation_tolerance)


def check_control_totals(ctx: StepContext, periods: list[str], common: dict[str, Any]) -> dict[str, Any]:
    opts = ctx.cfg.ledger
    if not opts.require_balanced and opts.second_path == "none":
        return {}
    first = _first_path(ctx, common)
    problems: list[str] = []
    detail: dict[str, Any] = {}
    if (
        opts.require_balanced and opts.currency != "transaction"
    ):  # a voucher balances in the ledger's currencies
        nets: dict[tuple[str, str, date], Decimal] = {}
        for (cur, company, _account, period), amount in first.items():
            nets[(company, cur, period)] = nets.get((company, cur, period), Decimal(0)) + amount
        off = [(k, v) for k, v in sorted(nets.items()) if abs(v) > tolerance_for(ctx, k[1])]
        detail["balanced"] = {
            "checked": len(nets),
            "unbalanced": [[c, cur, p.isoformat(), str(v)] for (c, cur, p), v in off[:20]],
        }
        for (company, cur, period), v in off[:10]:
            problems.append(
                f"control total: the extracted GL of {company} for period {period.isoformat()} in {cur} nets to {v}, "
                "not zero (lines are missing or counted twice)"
            )
    if opts.second_path == "other_route":
        route, second = _second_path(ctx, periods, common)
        for cur in sorted({k[0] for k in first} | {k[0] for k in second}):
            left = ((c, a, p, v) for (cu, c, a, p), v in first.items() if cu == cur)
            right = ((c, a, p, v) for (cu, c, a, p), v in second.items() if cu == cur)
            result = reconcile(left, right, currency=cur, tolerance=tolerance_for(ctx, cur),
                               left_name="extracted GL", right_name=f"F&O via the {route} route",
                               exact_periods=True)  # fmt: skip
            detail.setdefault("second_path", {})[cur] = result.to_json()
            if not result.ok:
                problems.append(f"[{cur}] " + result.to_text())
    ctx.ledger.record_step(
        ctx.run_id, "ControlTotals", "FAILED" if problems else "SUCCEEDED", {**detail, "problems": problems}
    )
    if problems:
        raise ReconciliationFailed("; ".join(problems))
    return {k: (v if k != "second_path" else {c: r["ok"] for c, r in v.items()}) for k, v in detail.items()}
