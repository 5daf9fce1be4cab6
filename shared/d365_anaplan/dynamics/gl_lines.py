"""Turning a posted GL row into a :class:`GLLine`: the fiscal period it belongs to (named by the row, or the
operating period of its date), the amount's currency, the company's bucketing; and the refusal of a route that
cannot tell year-end entries from operating ones (dynamics-budget-fiscal.md C2, C3)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from d365_anaplan.dynamics.display_split import DisplaySplitter
from d365_anaplan.dynamics.gl_rows import parse_date, parse_row_amount, row_text
from d365_anaplan.dynamics.ledgers import FiscalPeriodInfo
from d365_anaplan.errors import DynamicsRouteUnavailable
from d365_anaplan.flows.records import GLLine


class GLLineMaker(DisplaySplitter):
    """What every GL route of the reader shares to make its lines."""

    def _period(self, company: str, d: date, recid: Any, what: str) -> FiscalPeriodInfo | None:
        books = self.books()
        if isinstance(recid, int) and not isinstance(recid, bool) and books.by_recid:
            return books.period_of_recid(company, recid, d, what)
        return None

    def _require_period_types(self, start: date, end: date, *, field_present: bool, what: str) -> None:
        """A route whose lines do not name their fiscal period (no ``FiscalCalendarPeriod``, or no period keys
        to read it with) cannot tell opening and closing entries from operating lines of the same dates
        (dynamics-budget-fiscal.md C3: identify year-end entries by period type). Refused when the connection
        leaves such periods out (``ledger.period_types``) and the window covers one of them."""
        books = self.books()
        if field_present and books.by_recid:
            return
        left_out = {"Opening", "Closing"} - set(self.options.period_types)
        for company in self.companies:
            for p in books.periods.get(books.ledger(company).calendar, []):
                if p.type in left_out and p.start < end and start <= p.end:
                    why = "is not published" if not field_present else "cannot be read (no period keys)"
                    raise DynamicsRouteUnavailable(
                        f"{what}: FiscalCalendarPeriod {why}, so {company}'s {p.type.lower()} entries of "
                        f"{p.fiscal_year} ({p.name}, dated {p.start.isoformat()}) cannot be told from operating "
                        f"lines of that date; publish FiscalCalendarPeriod (and FiscalCalendarPeriodBiEntities), "
                        f"use dynamics.gl_route: bi, or add {p.type} to ledger.period_types"
                    )

    def _entity_line(
        self,
        company: str,
        account: str,
        dims: dict[str, str],
        row: dict[str, Any],
        what: str,
        amount_field: str,
    ) -> GLLine:
        """A line of the general journal account entry entity (published on OData, or in a package)."""
        ledger = self.books().ledger(company)
        d = parse_date(row, "AccountingDate", what)
        period = self._period(company, d, row.get("FiscalCalendarPeriod"), what)
        return make_line(
            self, company, account, dims, d, parse_row_amount(row, amount_field, what),
            self._amount_currency(ledger, row, what), row, what, period,
            voucher=row_text(row, "Voucher", what, required=False),
            description=row_text(row, "Description", what, required=False),
            source_id=row_text(row, "GeneralJournalAccountEntryRecId", what, required=False),
        )  # fmt: skip


def make_line(
    reader: GLLineMaker,
    company: str,
    account: str,
    dims: dict[str, str],
    d: date,
    amount: Decimal,
    currency: str,
    row: dict[str, Any],
    what: str,
    period: FiscalPeriodInfo | None,
    *,
    voucher: str,
    description: str,
    source_id: str,
) -> GLLine:
    if period is None:  # the route does not name the period: the operating period of the date
        period = reader.books().operating_period(company, d, what)
        period_type = ""
    else:
        period_type = period.type
    monthly = reader.period_monthly(company)
    return GLLine.checked(
        company=company,
        account=account,
        dimensions=dims,
        accounting_date=d,
        amount=amount,
        currency=row_text(row, "TransactionCurrencyCode", what, required=False),
        voucher=voucher,
        description=description,
        source_id=source_id,
        amount_currency=currency,
        period_type=period_type,
        fiscal_year=period.fiscal_year,
        fiscal_period=period.number,
        period_name=period.name,
        period_end=period.end,
        period_monthly=monthly,
        balance_sheet=reader.options.balance_sheet == "balances"
        and account in reader.balance_sheet_accounts(),
    )
