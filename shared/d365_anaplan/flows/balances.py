"""Balance-sheet accounts as period-end balances (the fiscal year's opening balance, or the prior year's
closing balance before the year-end close, plus the year's movements up to each run month)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
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


Cell = tuple[str, str, tuple[str, ...], str]  # company, account, dimension values, currency


@dataclass
class _Years:
    """One company's fiscal years as its lines show them: the first period key of each year, whether the
    year's opening entries are posted, and whether the route names period types at all."""

    first: dict[str, date] = field(default_factory=dict)
    opened: set[str] = field(default_factory=set)
    typed: bool = False

    def see(self, line: GLLine, period: date) -> None:
        year = line.fiscal_year
        if year not in self.first or period < self.first[year]:
            self.first[year] = period
        if line.period_type:
            self.typed = True
        if line.period_type == "Opening":
            self.opened.add(year)

    def ordered(self) -> list[str]:
        return sorted(self.first, key=lambda y: (self.first[y], y))

    def year_of(self, period: date) -> str:
        """The fiscal year of a period key: the latest year starting at or before it."""
        found = [y for y in self.ordered() if self.first[y] <= period]
        return found[-1] if found else ""

    def carried(self, year: str) -> str | None:
        """The prior year whose closing balance is carried into ``year``: only when the route names period
        types and ``year`` has no opening entries yet (its year-end close is not run)."""
        if not self.typed or year in self.opened:
            return None
        years = self.ordered()
        i = years.index(year) if year in years else -1
        return years[i - 1] if i > 0 else None


def _balance(moves: list[tuple[str, date, Decimal]], years: _Years, year: str, upto: date | None) -> Decimal:
    """The balance of a cell at ``upto`` (None: the end of ``year``): the year's opening entries and
    movements, plus the prior year's closing balance when ``year`` is not opened yet."""
    own = sum((a for y, p, a in moves if y == year and (upto is None or p <= upto)), Decimal(0))
    prior = years.carried(year)
    return own if prior is None else own + _balance(moves, years, prior, None)


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

    The balance of a cell at a period is its own fiscal year's opening-period entries plus that year's
    operating movements up to the period's end (closing-period entries left out, as for movements). A year
    without opening entries (year-end close not run yet) carries the prior year's closing balance forward
    (that year's opening plus its movements); when the route does not name period types, opening entries
    cannot be told apart and each year stands alone. ``lines`` start at the first day of the earliest fiscal
    year needed (:meth:`~d365_anaplan.dynamics.master_data.MasterDataReader.balances_window`). Balances are
    emitted for each period the company has lines in during the run, and for every run month of companies
    on calendar months."""
    opts = ledger or LedgerOptions()
    sums: dict[Cell, list[tuple[str, date, Decimal]]] = {}
    keys: dict[str, set[date]] = {}
    labels: dict[tuple[str, date], str] = {}
    monthly: dict[str, bool] = {}
    years: dict[str, _Years] = {}
    for index, line in enumerate(lines, start=1):
        where = line_where(line, index)
        company = check_code(line.company, where=where, field="company")
        if companies is not None and company not in companies:
            raise BadInputData(
                f"{where}: field 'company' value {company!r} is not one of {sorted(companies)}"
            )
        monthly[company] = monthly.get(company, True) and line.period_monthly
        period = line_period(line)
        years.setdefault(company, _Years()).see(line, period)
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
        sums.setdefault(key, []).append((line.fiscal_year, period, amount))
    for company, is_monthly in monthly.items():
        if is_monthly:
            keys.setdefault(company, set()).update(periods)
    return [
        ActualsRow(
            company,
            account,
            dims,
            period,
            _balance(moves, years[company], years[company].year_of(period), period),
            line_count=0,
            currency=currency,
            label=labels.get((company, period), ""),
        )
        for (company, account, dims, currency), moves in sorted(sums.items())
        for period in sorted(keys.get(company, ()))
    ]
