"""Balance-sheet accounts as period-end balances (opening balance plus the movements up to each run month)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import date
from decimal import Decimal

from d365_anaplan.config import DimensionMapping, LedgerOptions
from d365_anaplan.errors import BadInputData
from d365_anaplan.flows.actuals import ActualsRow, fiscal_label, line_period, line_where, run_month
from d365_anaplan.flows.money import amount_decimals, check_amount
from d365_anaplan.flows.records import GLLine
from d365_anaplan.flows.textsafe import check_code


def in_run(line: GLLine, periods: Collection[date]) -> bool:
    """True when the line's period belongs to one of the run's months."""
    return run_month(line_period(line)) in periods


def balance_rows(
    lines: Iterable[GLLine],
    *,
    dimensions: Sequence[DimensionMapping],
    periods: Collection[date],
    decimals: int = 2,
    companies: Collection[str] | None = None,
    ledger: LedgerOptions | None = None,
) -> list[ActualsRow]:
    """Period-end balances of the balance-sheet lines (``GLLine.balance_sheet``) for the run's periods.

    ``lines`` start at the fiscal year's first day: the balance of a cell at a period is the opening-period
    entries plus every operating movement up to the period's end (closing-period entries left out, as for
    movements). Balances are emitted for each period the company has lines in during the run, and for every
    run month of companies on calendar months."""
    opts = ledger or LedgerOptions()
    sums: dict[tuple[str, str, tuple[str, ...], str], list[tuple[date, Decimal]]] = {}
    keys: dict[str, set[date]] = {}
    labels: dict[tuple[str, date], str] = {}
    monthly: dict[str, bool] = {}
    for index, line in enumerate(lines, start=1):
        where = line_where(line, index)
        company = check_code(line.company, where=where, field="company")
        if companies is not None and company not in companies:
            raise BadInputData(
                f"{where}: field 'company' value {company!r} is not one of {sorted(companies)}"
            )
        monthly[company] = monthly.get(company, True) and line.period_monthly
        period = line_period(line)
        if run_month(period) in periods and line.period_type in ("", "Operating"):
            keys.setdefault(company, set()).add(period)
            if not line.period_monthly and line.period_end is not None:
                labels[(company, period)] = fiscal_label(
                    opts.fiscal_period_format, line.fiscal_year, line.fiscal_period, line.period_name
                )
        if not line.balance_sheet or line.period_type == "Closing":
            continue
        account = check_code(line.account, where=where, field="account")
        dims = tuple(
            check_code(
                line.dimensions.get(d.name, ""), where=where, field=f"dimensions.{d.name}", allow_empty=True
            )
            for d in dimensions
        )
        currency = line.amount_currency or line.currency
        amount = check_amount(line.amount, decimals=amount_decimals(currency, decimals), where=where)
        key = (company, account, dims, currency)
        sums.setdefault(key, []).append((period, amount))
    for company, is_monthly in monthly.items():
        if is_monthly:
            keys.setdefault(company, set()).update(periods)
    out: list[ActualsRow] = []
    for (company, account, dims, currency), moves in sorted(sums.items()):
        for period in sorted(keys.get(company, ())):
            balance = sum((a for p, a in moves if p <= period), Decimal(0))
            out.append(
                ActualsRow(
                    company,
                    account,
                    dims,
                    period,
                    balance,
                    line_count=0,
                    currency=currency,
                    label=labels.get((company, period), ""),
                )
            )
    return out
