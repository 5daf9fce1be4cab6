"""The mapping section: dimensions, list imports, the actuals and plans mappings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from d365_anaplan.mapping_config import Scopes, ValueMapConfig, value_map_key_problems


class DimensionMapping(BaseModel):
    """One F&O financial dimension carried into Anaplan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="F&O dimension attribute name, e.g. `CostCenter`")
    column: str = Field(description="column in the Anaplan actuals / plan files")
    list_import: str | None = Field(
        default=None, description="Anaplan import action that loads the dimension's values"
    )
    list_name: str | None = Field(
        default=None, description="Anaplan list whose members the alignment check reads (unset = not checked)"
    )
    unmapped_member: str | None = Field(
        default=None,
        description="member used for unknown values when `mapping.actuals.unmapped_policy` is `map`",
    )
    blank_member: str | None = Field(
        default=None,
        description=(
            "member written when an F&O line has no value for this dimension (balance-sheet lines "
            "often have none); unset, a blank value is checked like any other and fails alignment "
            "unless the list has a blank member"
        ),
    )


class ListImport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    import_action: str = Field(description="Anaplan import that loads the list")
    code_column: str = Field(default="Code", description="column of the code in the list file")
    name_column: str = Field(default="Name", description="column of the name in the list file")
    list_name: str | None = Field(
        default=None, description="Anaplan list whose members the alignment check reads (e.g. `Accounts`)"
    )


class ActualsMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    import_action: str = Field(default="Load GL Actuals", description="the module import for actuals")
    grain: Literal["monthly", "line"] = Field(
        default="monthly",
        description=(
            "`monthly` (balance per company × account × dimensions × period) or `line` (one row per "
            "GL line, with `line_id_column`, `voucher_column`, `description_column`)"
        ),
    )
    period_format: str = Field(
        default="{Mon} {yy}",
        description=(
            "period labels the model uses; tokens `{yyyy} {yy} {mm} {m} {mon} {Mon} {MON} {fy} {fyy} "
            "{q}` (fiscal tokens follow `close_calendar.fiscal_year_start_month`)"
        ),
    )
    version: str = Field(default="Actual", description="value of the version column")
    company_column: str = Field(
        default="Entity",
        description=(
            "column of the legal entity in the import file (the file is written in the order of the "
            "import's `headerNames` when they name exactly the configured columns, matched by name; "
            "else in this order, and the pre-check fails naming the difference)"
        ),
    )
    account_column: str = Field(
        default="Account", description="column of the main account in the import file"
    )
    period_column: str = Field(default="Period", description="column of the period label in the import file")
    version_column: str | None = Field(
        default="Version",
        description=(
            "column of the version; `null`: the file has no version column (a model without a "
            "Versions dimension, or an import that fixes the version)"
        ),
    )
    amount_column: str = Field(default="Amount", description="column of the amount in the import file")
    constant_columns: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "extra columns with one value on every row, e.g. `{Scenario: Actual}`, after the "
            "configured columns"
        ),
    )
    unmapped_policy: Literal["fail", "map"] = Field(
        default="fail",
        description=(
            "`fail` (the run fails with the unmatched values, counts and amounts) or `map` (unmatched"
            " values go to `unmapped_account` / each dimension's `unmapped_member`)"
        ),
    )
    unmapped_account: str | None = Field(
        default=None, description="account member used for unknown accounts when `unmapped_policy` is `map`"
    )
    verify_export: str | None = Field(
        default=None,
        description=(
            "an export of the actuals module with the import's columns; when set, reconciliation "
            "reads Anaplan back and compares every company/account/period total to the cent; when not set, "
            'the run reports "not reconciled against Anaplan (no read-back export configured)": only the '
            "import's row counts are checked"
        ),
    )
    time_source: str | None = Field(
        default=None,
        description=(
            "a line item whose Time dimension holds the model's periods (its id, name or `Module.Line item`, "
            "e.g. `GL Actuals.Amount`); when set, `check` and the runs' pre-check refuse periods outside the "
            "model's time range or labelled otherwise than the period formats write them (null: not verified)"
        ),
    )
    line_id_column: str = Field(default="Line", description="grain `line` only: column of the GL line id")
    voucher_column: str = Field(default="Voucher", description="grain `line` only: column of the voucher")
    description_column: str = Field(
        default="Description", description="grain `line` only: column of the line description"
    )
    sign: Literal["ledger", "natural"] = Field(
        default="ledger",
        description=(
            "`ledger`: amounts written debit positive, credit negative; `natural`: revenue, liability and "
            "equity written positive (by the F&O main account type, as `mapping.plans.sign`)"
        ),
    )


class PlanExport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    export_action: str = Field(description="the Anaplan export of approved plan values")
    version: str = Field(description="e.g. `Budget` or `Forecast`: only rows of this version are accepted")
    period_format: str | None = Field(
        default=None,
        description=(
            "the export's own period labels (tokens as `mapping.actuals.period_format`, which applies"
            " when unset)"
        ),
    )
    journal_name: str | None = Field(default=None, description="overrides `dynamics.journal.journal_name`")
    budget_model: str | None = Field(
        default=None, description="budget register: overrides `dynamics.journal.budget_model`"
    )
    budget_models: dict[int, str] = Field(
        default_factory=dict, description="budget register: a model per fiscal year, e.g. `{2026: FY2026}`"
    )
    budget_code: str | None = Field(
        default=None, description="budget register: overrides `dynamics.journal.budget_code`"
    )
    revision_budget_code: str | None = Field(
        default=None, description="budget register: overrides `dynamics.journal.revision_budget_code`"
    )


class PlansMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    exports: list[PlanExport] = Field(
        default_factory=list,
        description=(
            "one entry per approved-plan export (e.g. budget and forecast, each with its own model or codes)"
        ),
    )
    company_column: str = Field(
        default="Entity", description="column of the legal entity in the export files"
    )
    account_column: str = Field(
        default="Account", description="column of the main account in the export files"
    )
    period_column: str = Field(default="Period", description="column of the period label (layout `long`)")
    version_column: str | None = Field(
        default="Version",
        description=(
            "column of the version; `null`: the exports carry no version column and every row is the "
            "export's configured `version`"
        ),
    )
    amount_column: str = Field(default="Amount", description="column of the amount (layout `long`)")
    approval_column: str | None = Field(
        default="Approval",
        description=(
            "only rows whose approval column equals `approved_value` are written; `null` = no approval column"
        ),
    )
    approved_value: str = Field(
        default="Approved", description="the approval column's value of an approved row"
    )
    layout: Literal["long", "time_in_columns"] = Field(
        default="long",
        description=(
            "`long`: one row per cell (`period_column`, `amount_column`); `time_in_columns`: one "
            "column per month whose header is a period label in the export's period format (total "
            "columns such as `Q1 FY25`, `FY25` are ignored; a blank cell holds nothing)"
        ),
    )
    rounding: Literal["refuse", "largest_remainder"] = Field(
        default="refuse",
        description=(
            "`refuse`: an amount with more than 2 decimals fails the run; `largest_remainder`: spread"
            " values (Anaplan doubles such as `62.25000000000001`) are rounded to cents per company ×"
            " version × account of each export: the exact total is rounded half away from zero, every"
            " cell is rounded down and the cells with the largest remainders get one more cent until "
            "they add up to that total (ties: earlier export line, then earlier period); every cell "
            "moves by less than a cent"
        ),
    )
    sign: Literal["ledger", "natural"] = Field(
        default="ledger",
        description=(
            "`ledger`: exports hold debit positive, credit negative; `natural`: revenue, liability "
            "and equity are exported positive and are turned into ledger sign by the F&O main account"
            " type before anything is written (an account typed only ProfitAndLoss/BalanceSheet/Blank"
            " is refused: its side is unknown); actuals have their own `mapping.actuals.sign`"
        ),
    )
    dimensions: list[str] | None = Field(
        default=None,
        description=(
            "names of `mapping.dimensions` the plan exports carry (`null`: all of them); plans are "
            "often coarser than actuals, e.g. per company and account only"
        ),
    )


class Mappings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    accounts: ListImport = Field(
        default=ListImport(import_action="Load Accounts"),
        description="the Anaplan import that loads main accounts",
    )
    companies: ListImport | None = Field(
        default=None, description="optional import for legal entities (same keys as `accounts`)"
    )
    dimensions: list[DimensionMapping] = Field(
        default_factory=list, description="per F&O dimension carried into Anaplan"
    )
    actuals: ActualsMapping = Field(default=ActualsMapping(), description="the actuals import file")
    plans: PlansMapping = Field(default=PlansMapping(), description="the approved-plan exports")
    scopes: Scopes = Field(default_factory=Scopes, description="which main accounts each flow touches")
    value_maps: dict[str, ValueMapConfig] = Field(
        default_factory=dict,
        description=(
            "F&O code → Anaplan member maps, keyed `company`, `account` or a dimension name of "
            "`mapping.dimensions`; a map's `csv:` file is relative to the configuration file locally and a "
            "config-bucket key under `connections/` in AWS (only ConfigWriterArns may change it there)"
        ),
    )

    @model_validator(mode="after")
    def _value_map_keys(self) -> Mappings:
        problems = value_map_key_problems(list(self.value_maps), [d.name for d in self.dimensions])
        if problems:
            raise ValueError("\n".join(problems))
        return self
