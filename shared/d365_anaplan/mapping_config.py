"""Configuration of scopes and value maps (``mapping.scopes``, ``mapping.value_maps``; issue 12).

Scopes say which F&O main accounts each flow touches (by MainAccountType, by id ranges ``"LO..HI"`` or
fnmatch globs); value maps translate F&O codes (company, main account, a dimension's values) into Anaplan
member codes and back. The logic lives in :mod:`d365_anaplan.flows.mapping`; this module holds only the
shapes and their validation, imported by :mod:`d365_anaplan.config`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# F&O enum DimensionLedgerAccountType (MainAccounts.MainAccountType, dynamics-fo.md section 2).
MainAccountTypeName = Literal[
    "Blank",
    "ProfitAndLoss",
    "Revenue",
    "Expense",
    "BalanceSheet",
    "Asset",
    "Liability",
    "Equity",
    "Total",
    "Reporting",
    "Common_CN",
]
VALUE_MAP_FIXED_KEYS = ("company", "account")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def _pattern(value: str) -> str:
    text = value.strip()
    if not text or _CONTROL.search(text):
        raise ValueError(f"{value!r} is not an account pattern (a 'LO..HI' range or a glob such as '4*')")
    if ".." in text:
        lo, _, hi = text.partition("..")
        if not lo or not hi or ".." in hi:
            raise ValueError(f"{value!r}: a range is 'LO..HI' with both ends, e.g. '4000..4999'")
    return text


class AccountScope(BaseModel):
    """Which main accounts a flow touches; an empty list means no restriction on that axis."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    types: list[MainAccountTypeName] = Field(
        default_factory=list,
        description="MainAccountType names an account must have (empty: any type), e.g. [Revenue, Expense].",
    )
    exclude_types: list[MainAccountTypeName] = Field(
        default_factory=list, description="MainAccountType names left out (applied after types)."
    )
    include: list[str] = Field(
        default_factory=list,
        description="Account ids kept (empty: all): 'LO..HI' inclusive ranges (numeric comparison when both "
        "ends are digits of the account id's length, else text comparison) or fnmatch globs such as '4*'.",
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="Account ids left out (ranges or globs as in include), applied after include.",
    )

    @field_validator("include", "exclude")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        return [_pattern(v) for v in value]

    @property
    def unrestricted(self) -> bool:
        return not (self.types or self.exclude_types or self.include or self.exclude)


class Scopes(BaseModel):
    """The account scope of each flow (``plans`` defaults to the actuals scope)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actuals: AccountScope = Field(
        default_factory=AccountScope,
        description="Main accounts the actuals flow loads (and the account list load writes).",
    )
    plans: AccountScope | None = Field(
        default=None,
        description="Main accounts plan rows may write to; omitted: the actuals scope. A plan row outside "
        "it is refused.",
    )

    def for_flow(self, flow: Literal["actuals", "plans"]) -> AccountScope:
        if flow == "plans" and self.plans is not None:
            return self.plans
        return self.actuals


class ValueMapConfig(BaseModel):
    """F&O code -> Anaplan member code for one field (company, account or a dimension)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    values: dict[str, str] = Field(
        default_factory=dict,
        description="F&O code -> Anaplan member code; several F&O codes may map to one member (their "
        "amounts are summed per Anaplan cell).",
    )
    csv: str | None = Field(
        default=None,
        description="A CSV with header 'fo,anaplan' merged with values (a code in both with different "
        "targets is refused): a path relative to the configuration file locally (no '..'), a key in the "
        "config bucket under connections/ in AWS (only the configuration writers may change it there).",
    )
    unmapped: Literal["passthrough", "fail"] = Field(
        default="passthrough",
        description="An F&O code missing from the map: 'passthrough' uses the code as is, 'fail' refuses it.",
    )
    reverse: dict[str, str] = Field(
        default_factory=dict,
        description="Anaplan member -> F&O code for plans, where several F&O codes map to one member.",
    )

    @field_validator("values", "reverse")
    @classmethod
    def _codes(cls, value: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in value.items():
            key, target = str(k).strip(), str(v).strip()
            for code in (key, target):
                if not code or _CONTROL.search(code):
                    raise ValueError(f"{k!r}: {v!r}: codes must be non-empty text without control characters")
            out[key] = target
        return out

    @field_validator("csv")
    @classmethod
    def _csv(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip()
        if not text or _CONTROL.search(text) or "\\" in text:
            raise ValueError(f"{value!r} is not a file path or object key")
        if any(part == ".." for part in text.split("/")):
            raise ValueError(f"{value!r}: '..' is not allowed in a map file path")
        if text.startswith(("/", "~")) or ":" in text:
            raise ValueError(f"{value!r}: a map file path is relative (to the configuration file, or a key in "
                             "the config bucket)")  # fmt: skip
        return text

    @model_validator(mode="after")
    def _reverse_targets(self) -> ValueMapConfig:
        """A reverse entry must choose among the F&O codes that map to the member (when known inline)."""
        if self.csv is None:
            for member, code in self.reverse.items():
                sources = [k for k, v in self.values.items() if v == member]
                if sources and code not in sources:
                    raise ValueError(
                        f"reverse {member!r}: {code!r} is not one of the F&O codes mapped to it {sorted(sources)}"
                    )
        return self


def value_map_key_problems(keys: list[str], dimension_names: list[str]) -> list[str]:
    """One line per value map whose key is neither company, account nor a configured dimension name."""
    known = [*VALUE_MAP_FIXED_KEYS, *dimension_names]
    return [f"value_maps.{k}: unknown map; keys are {', '.join(known)}" for k in keys if k not in known]
