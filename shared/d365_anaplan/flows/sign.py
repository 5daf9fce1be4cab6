"""Sign conventions: ledger sign (debit positive, credit negative, as F&O stores amounts) and natural sign
(revenue, liability and equity positive), told apart by the F&O main account type.

One rule for both flows: an amount of a credit-nature account (Revenue, Liability, Equity) changes sign
between the two conventions, a debit-nature account's (Expense, Asset) does not, and an account whose type
does not say which side it is on (ProfitAndLoss, BalanceSheet, Blank, Total, ...) cannot be converted.
The conversion is its own inverse, so plans (natural -> ledger) and actuals (ledger -> natural) share it.
"""

from __future__ import annotations

from decimal import Decimal

from d365_anaplan.errors import BadInputData

NATURAL_CREDIT_TYPES = frozenset({"Revenue", "Liability", "Equity"})  # positive in natural sign
NATURAL_DEBIT_TYPES = frozenset({"Expense", "Asset"})


def flip_sign(
    amount: Decimal, account: str, account_type: str | None, *, where: str, setting: str
) -> Decimal:
    """``amount`` in the other sign convention. ``account_type`` None: the account is unknown to F&O and
    passes unchanged (alignment names it). A type of neither side is refused naming ``where`` and
    ``setting`` (the configuration key that asked for natural sign)."""
    if account_type is None or account_type in NATURAL_DEBIT_TYPES:
        return amount
    if account_type in NATURAL_CREDIT_TYPES:
        return -amount if amount != 0 else amount
    raise BadInputData(
        f"{where}: account {account!r} has main account type {account_type!r}; {setting} natural needs "
        "Revenue, Expense, Asset, Liability or Equity to know its sign"
    )
