"""Canonical records passed between the two systems' clients and the flows (no I/O here).

The Dynamics reader yields :class:`GLLine` and master-data records; the Anaplan export is parsed into
:class:`PlanRow`. Amounts are ``Decimal``; dimension values are keyed by F&O dimension attribute name.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field


class GLLine(BaseModel):
    """One posted general-ledger account entry (a line of a posted voucher)."""

    model_config = ConfigDict(frozen=True)

    company: str  # dataAreaId / legal entity, upper case
    account: str  # main account id
    dimensions: dict[str, str] = Field(default_factory=dict)  # e.g. {"CostCenter": "OU_3566"}
    accounting_date: date
    amount: Decimal  # accounting-currency amount, debit positive, credit negative
    currency: str = ""
    voucher: str = ""
    description: str = ""
    source_id: str = ""  # F&O identifier of the line (RecId or entity key) for audit
    # Ledger facts (dynamics-budget-fiscal.md §C, §D); empty when the route does not tell them.
    amount_currency: str = ""  # currency of ``amount`` (accounting, reporting or transaction, per connection)
    period_type: str = ""  # fiscal period type: Opening | Operating | Closing
    fiscal_year: str = ""  # fiscal year name of the ledger's calendar
    fiscal_period: int = 0  # period number within the fiscal year (closing = last operating + 1)
    period_name: str = ""
    period_end: date | None = None  # last day of the fiscal period
    period_monthly: bool = True  # the company's calendar has calendar-month periods
    balance_sheet: bool = False  # main account type is a balance-sheet type (set when balances are loaded)

    @classmethod
    def checked(cls, **values: Any) -> Self:
        """A line from values its reader has already checked, every field given: what ``model_construct``
        builds, without its per-field alias and default handling (the reader makes a line per posted GL line)."""
        if values.keys() != _GL_FIELDS:
            raise TypeError(f"GLLine.checked needs exactly the fields {sorted(_GL_FIELDS)}")
        line = cls.__new__(cls)
        object.__setattr__(line, "__dict__", values)
        object.__setattr__(line, "__pydantic_fields_set__", set(_GL_FIELDS))
        object.__setattr__(line, "__pydantic_extra__", None)
        object.__setattr__(line, "__pydantic_private__", None)
        return line


_GL_FIELDS = GLLine.model_fields.keys()


class MainAccount(BaseModel):
    model_config = ConfigDict(frozen=True)

    account: str
    name: str
    account_type: str = ""
    chart_of_accounts: str = ""
    category: str = ""  # MainAccountCategory
    parent: str = ""  # ParentMainAccountId


class DimensionValue(BaseModel):
    model_config = ConfigDict(frozen=True)

    dimension: str  # attribute name, e.g. "CostCenter"
    value: str
    description: str = ""


class PlanRow(BaseModel):
    """One approved plan value from an Anaplan export, after parsing."""

    model_config = ConfigDict(frozen=True)

    line_number: int  # 1-based data line in the export file (for error messages)
    company: str
    account: str
    dimensions: dict[str, str] = Field(default_factory=dict)
    period: date  # first day of the month the value belongs to
    version: str
    amount: Decimal
