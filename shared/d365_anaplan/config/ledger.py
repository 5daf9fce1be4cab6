"""The ``ledger`` section: how posted GL becomes actuals (fiscal periods, posting layers, currencies, control totals)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# --- ledger reading for actuals (fiscal periods, posting layers, currencies, control totals) -------------------
# dynamics-budget-fiscal.md §B, §C, §D, §E. One block under the top-level key ``ledger``.

PeriodTypeName = Literal["Opening", "Operating", "Closing"]
_OPERATING: PeriodTypeName = "Operating"


class LedgerOptions(BaseModel):
    """How posted GL becomes actuals: which lines count, in which period and currency, and the control totals."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    posting_layers: list[str] = Field(
        default_factory=lambda: ["Current"],
        min_length=1,
        description=(
            "F&O posting layers read as actuals, on both GL routes (`Current`, `Operations`, `Tax`, "
            "`CustomLayer1`–`7`, …)"
        ),
    )
    period_types: list[PeriodTypeName] = Field(
        default_factory=lambda: [_OPERATING],
        min_length=1,
        description=(
            "fiscal period types loaded; opening (balances carried forward) and year-end closing "
            "entries are left out unless listed"
        ),
    )
    exclude_budget_entries: bool = Field(
        default=True,
        description=(
            "leave out GL entries posted by budget appropriation (`JournalCategory`/`PostingType` Budget)"
        ),
    )
    currency: Literal["accounting", "reporting", "transaction"] = Field(
        default="accounting",
        description=(
            "amount loaded: the ledger's `accounting` or `reporting` currency, or `transaction` "
            "(needs `currency_column`)"
        ),
    )
    currency_column: str | None = Field(
        default=None,
        description=(
            "optional column of the actuals file with each amount's currency; totals and "
            "reconciliations are per currency either way"
        ),
    )
    period_basis: Literal["auto", "month", "fiscal"] = Field(
        default="auto",
        description=(
            "`month` (calendar month of the accounting date), `fiscal` (the ledger's fiscal period, "
            "belonging to the month it ends in), `auto` (fiscal for companies whose calendar is not "
            "monthly, e.g. 4-4-5 or 13 periods)"
        ),
    )
    fiscal_period_format: str = Field(
        default="FY{fyname} P{fpp}",
        description=(
            "labels of fiscal periods: `{fyname}` fiscal year name, `{fp}` period number, `{fpp}` two"
            " digits, `{pname}` period name"
        ),
    )
    balance_sheet: Literal["movements", "balances"] = Field(
        default="movements",
        description=(
            "`movements`, or `balances`: balance-sheet accounts (type Asset, Liability, Equity) loaded as "
            "period-end balances: the period's own fiscal year's opening entries plus that year's movements, "
            "or, while that year's opening entries are not posted (year-end close not run), the prior year's "
            "closing balance carried forward (the extract then starts at the first day of the earliest fiscal "
            "year needed; where the route names no fiscal period, each year stands alone); needs grain "
            "`monthly`"
        ),
    )
    reload_closed_months: int = Field(
        default=2,
        ge=0,
        le=24,
        description=(
            "scheduled runs also reload the last N loaded months, so late postings arrive (stale "
            "cells are zeroed); `0` = only new months"
        ),
    )
    require_balanced: bool = Field(
        default=True,
        description=(
            "control total before loading: the extracted GL nets to zero per company × period × "
            "currency (accounting and reporting currency; vouchers need not balance per transaction "
            "currency)"
        ),
    )
    second_path: Literal["none", "other_route"] = Field(
        default="none",
        description=(
            "`none`, or `other_route`: before loading, totals per company × account × period × "
            "currency read through the other GL route (BI ↔ published) must equal the extracted ones"
        ),
    )
    tolerances: dict[str, Decimal] = Field(
        default_factory=dict,
        description="tolerance per currency (e.g. `{JPY: 1}`); others use `reconciliation_tolerance`",
    )
    account_type_column: str | None = Field(
        default=None,
        description=(
            "main account type written as a property column of the account list import (unset = not written)"
        ),
    )
    account_category_column: str | None = Field(
        default=None,
        description=(
            "main account category written as a property column of the account list import (unset = "
            "not written)"
        ),
    )
    account_parent_column: str | None = Field(
        default=None,
        description=(
            "main account parent written as a property column of the account list import (unset = not"
            " written)"
        ),
    )
    display_value_order: Literal["structure", "format"] = Field(
        default="structure",
        description=(
            "GL lines without named dimension values (`LedgerDimensionValuesJson`) are split from "
            "their display value: `structure` = in the order of the account structure that applies to"
            " the line (F&O's `DimensionCombinations` names it; a structure whose order is not in "
            "`account_structures` is refused, naming the account); `format` = in the ledger "
            "integration format's order. Which one F&O's display strings follow is unconfirmed: "
            "`check` shows sampled lines and how they split"
        ),
    )
    account_structures: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            'segment order of each account structure by its F&O name, e.g. `{"Manufacturing P&L": '
            "[MainAccount, CostCenter, Department, BusinessUnit]}` (General ledger > Chart of "
            "accounts > Structures; no entity publishes it)"
        ),
    )

    @field_validator("account_structures")
    @classmethod
    def _structures(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        import re

        for name, segments in value.items():
            bad = [s for s in segments if not re.fullmatch(r"[A-Za-z0-9_]+", s)]
            if bad:
                raise ValueError(f"account structure {name!r}: segment names {bad} are not dimension names")
            if segments.count("MainAccount") != 1:
                raise ValueError(
                    f"account structure {name!r}: MainAccount must appear exactly once in {segments}"
                )
            if len(set(segments)) != len(segments):
                raise ValueError(f"account structure {name!r}: a segment repeats in {segments}")
        return value

    @field_validator("posting_layers")
    @classmethod
    def _layers(cls, value: list[str]) -> list[str]:
        known = {
            "Current",
            "Operations",
            "Tax",
            "WarehouseCur_RU",
            "None",
            *(f"CustomLayer{i}" for i in range(1, 8)),
        }
        bad = [v for v in value if v not in known]
        if bad:
            raise ValueError(f"unknown posting layer(s) {bad}; known: {sorted(known)}")
        return value

    @field_validator("fiscal_period_format")
    @classmethod
    def _fiscal_format(cls, value: str) -> str:
        import re

        tokens = re.findall(r"\{([^{}]*)\}", value)
        unknown = [t for t in tokens if t not in ("fyname", "fp", "fpp", "pname")]
        if unknown:
            raise ValueError(
                f"unknown token(s) {unknown} in {value!r}; known: {{fyname}} {{fp}} {{fpp}} {{pname}}"
            )
        if "fyname" not in tokens or not {"fp", "fpp", "pname"} & set(tokens):
            raise ValueError(
                f"{value!r} must name the fiscal year ({{fyname}}) and the period ({{fp}}, {{fpp}} or {{pname}})"
            )
        return value

    @field_validator("tolerances")
    @classmethod
    def _tolerances(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for currency, tol in value.items():
            if not tol.is_finite() or tol < 0:
                raise ValueError(f"tolerance for {currency} must be a non-negative number, got {tol}")
        return {k.upper(): v for k, v in value.items()}

    @model_validator(mode="after")
    def _transaction_needs_column(self) -> LedgerOptions:
        if self.currency == "transaction" and not self.currency_column:
            raise ValueError(
                "ledger.currency: transaction amounts are in many currencies per company; set ledger.currency_column"
            )
        return self

    def tolerance(self, currency: str, default: Decimal) -> Decimal:
        return self.tolerances.get(currency.upper(), default)
