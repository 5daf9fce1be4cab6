"""Connection configuration: one pydantic model, the same locally (a YAML file) and in AWS (an S3 object).

A deployment holds several connections. Locally a YAML file holds one connection (a mapping) or several
(``connections: [...]``); in AWS each connection is ``s3://<config bucket>/connections/<name>.yaml`` (versioned,
SSE-KMS), and credentials in it may only be Secrets Manager references.

Every problem found while loading is reported as one line naming the field and the bad value (secrets are
never echoed); :class:`~d365_anaplan.errors.ConfigError` carries the list.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from d365_anaplan.errors import ConfigError
from d365_anaplan.http import DEFAULT_MAX_RESPONSE_BYTES
from d365_anaplan.mapping_config import Scopes, ValueMapConfig, value_map_key_problems
from d365_anaplan.urls import UrlProblem, parse_allowed_host, parse_base_url
from d365_anaplan.urls import allowed as allowed_origin

# --- secrets -----------------------------------------------------------------------------------------------

SECRET_ARN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+(#[A-Za-z0-9_.-]+)?$"
)


class Secret(BaseModel):
    """A credential reference. Never printed; ``repr`` shows only the kind of reference.

    Accepted forms (a plain YAML string is parsed into one of these):

    * ``arn:aws:secretsmanager:<region>:<account>:secret:<name>[#<json key>]`` (the only form allowed in AWS)
    * ``env:<VARIABLE>`` - an environment variable (local use)
    * ``file:<path>`` - the contents of a file, e.g. a PEM (local use)
    * anything else - the literal value (local use)
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["secretsmanager", "env", "file", "inline"]
    ref: str = Field(repr=False)
    json_key: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.startswith("arn:aws") and ":secretsmanager:" in value:
                arn, _, key = value.partition("#")
                return {"kind": "secretsmanager", "ref": arn, "json_key": key or None}
            if value.startswith("env:"):
                return {"kind": "env", "ref": value[4:]}
            if value.startswith("file:"):
                return {"kind": "file", "ref": value[5:]}
            return {"kind": "inline", "ref": value}
        return value

    @model_serializer(mode="plain")
    def _dump(self) -> str:
        """Serialise back to the reference string the YAML holds (round-trips through ``_parse``)."""
        if self.kind == "secretsmanager":
            return self.ref + (f"#{self.json_key}" if self.json_key else "")
        if self.kind in ("env", "file"):
            return f"{self.kind}:{self.ref}"
        return self.ref

    def describe(self) -> str:
        """A printable description that never contains the secret itself."""
        if self.kind == "secretsmanager":
            return self.ref + (f"#{self.json_key}" if self.json_key else "")
        if self.kind in ("env", "file"):
            return f"{self.kind}:{self.ref}"
        return "<inline value>"

    def __str__(self) -> str:
        return self.describe()


# --- host checks ---------------------------------------------------------------------------------------

FO_HOST_PATTERNS = (
    re.compile(r"^[a-z0-9-]+(\.sandbox)?\.operations(\.[a-z]{2,4})?\.dynamics\.com$"),
    re.compile(r"^[a-z0-9-]+(\.sandbox)?\.operations\.dynamics\.cn$"),
    re.compile(r"^[a-z0-9-]+\.cloudax\.dynamics\.com$"),
    re.compile(r"^[a-z0-9-]+\.axcloud\.dynamics\.com$"),
    re.compile(r"^[a-z0-9-]+\.cloud\.onebox\.dynamics\.com$"),
)
ENTRA_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.partner.microsoftonline.cn",
        "login.chinacloudapi.cn",
    }
)

# Extra hosts in AWS come from the stack parameter AllowedHosts through this function environment variable
# (comma separated host or host:port); a connection stored in S3 may not widen the list itself.
ALLOWED_HOSTS_ENV = "CONNECTOR_ALLOWED_HOSTS"


def is_fo_host(host: str) -> bool:
    return any(p.match(host) for p in FO_HOST_PATTERNS)


def is_entra_host(host: str) -> bool:
    return host in ENTRA_HOSTS


def is_anaplan_host(host: str) -> bool:
    return host == "anaplan.com" or host.endswith(".anaplan.com")


def _safe_repr(url: str) -> str:
    return repr(url) if "@" not in url else "(URL with user information not shown)"


def _normalised(value: str, *, keep_path: bool) -> str:
    """The canonical form of a URL that parses strictly; anything else is left for the host checks."""
    try:
        base = parse_base_url(value)
    except UrlProblem:
        return value
    return base.url if keep_path else base.root


def env_allowed_hosts() -> tuple[list[tuple[str, int]], list[str]]:
    """(host, port) pairs from ``CONNECTOR_ALLOWED_HOSTS`` and one problem line per unreadable entry."""
    pairs: list[tuple[str, int]] = []
    problems: list[str] = []
    for entry in (os.environ.get(ALLOWED_HOSTS_ENV) or "").split(","):
        if not entry.strip():
            continue
        try:
            pairs.append(parse_allowed_host(entry))
        except UrlProblem as exc:
            problems.append(f"{ALLOWED_HOSTS_ENV}: {exc}")
    return pairs, problems


def host_problems(
    environment_url: str | None,
    authority_host: str | None,
    anaplan_urls: dict[str, str],
    allowed: list[str],
    *,
    aws: bool = False,
) -> list[str]:
    """One line per endpoint that does not parse strictly or is not on a known host (unless allowed).

    ``allowed`` are the connection's own ``security.allowed_hosts`` (ignored in AWS, where the list is
    deploy-time); ``CONNECTOR_ALLOWED_HOSTS`` adds to it in both modes.
    """
    extra, problems = env_allowed_hosts()
    if not aws:
        for entry in allowed:
            try:
                extra.append(parse_allowed_host(entry))
            except UrlProblem:
                continue  # reported by SecuritySettings
    remedy = (
        "add it to the stack parameter AllowedHosts if it is yours"
        if aws
        else "add it to security.allowed_hosts if it is yours"
    )
    endpoints: list[tuple[str, str, Callable[[str], bool], str]] = []
    if environment_url is not None:
        endpoints.append(
            (
                "dynamics.environment_url",
                environment_url,
                is_fo_host,
                "is not a known Dynamics 365 F&O host (e.g. <name>.operations.dynamics.com)",
            )
        )
    if authority_host is not None:
        endpoints.append(
            (
                "dynamics.authority_host",
                authority_host,
                is_entra_host,
                "is not a Microsoft Entra ID authority host",
            )
        )
    for field, url in anaplan_urls.items():
        endpoints.append((f"anaplan.{field}", url, is_anaplan_host, "is not under anaplan.com"))
    for field, url, builtin, what in endpoints:
        try:
            origin = parse_base_url(url).origin
        except UrlProblem as exc:
            text = str(exc)
            problems.append(
                f"{field}: {_safe_repr(url)} must use https"
                if text == "must use https"
                else f"{field}: {text}"
            )
            continue
        if allowed_origin(origin, builtin, extra):
            continue
        where = f"{origin.host}:{origin.port}" if origin.port != 443 else origin.host
        if builtin(origin.host):
            problems.append(
                f"{field}: port {origin.port} of {origin.host!r}: known hosts are allowed on port 443 only; "
                + remedy.replace("add it", f"add {where!r}")
            )
        else:
            problems.append(f"{field}: host {where!r} {what}; {remedy}")
    return problems


def _raw_host_problems(data: Any, aws: bool = False) -> list[str]:
    """Host checks on unvalidated input, so they are reported alongside other problems."""
    if not isinstance(data, dict):
        return []

    def section(name: str) -> dict[str, Any]:
        value = data.get(name)
        return value if isinstance(value, dict) else {}

    dyn, ana, sec = section("dynamics"), section("anaplan"), section("security")
    hosts = sec.get("allowed_hosts")
    allowed = [h for h in hosts if isinstance(h, str)] if isinstance(hosts, list) else []
    env_url = dyn.get("environment_url") if isinstance(dyn.get("environment_url"), str) else None
    authority = dyn.get("authority_host", "https://login.microsoftonline.com")
    defaults = AnaplanSettings.model_fields
    urls: dict[str, str] = {}
    for f in ("auth_url", "api_url", "oauth_url"):
        given = ana.get(f)
        urls[f] = given if isinstance(given, str) else str(defaults[f].default)
    return host_problems(env_url, authority if isinstance(authority, str) else None, urls, allowed, aws=aws)


# --- Dynamics ------------------------------------------------------------------------------------------


class CertificateCredential(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cert_pem: Secret
    key_pem: Secret


class JournalSettings(BaseModel):
    """Where approved plan values land in F&O (README "Plans: where they land")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # budget_register: BudgetRegisterEntryHeaders/Lines (budget model + code; never touches actual balances).
    # ledger_journal: LedgerJournalHeaders/Lines on an explicit non-Current posting layer (opt-in).
    target: Literal["ledger_journal", "budget_register"] = "budget_register"
    journal_name: str = "Budget"
    # Ledger journals only: the header's PostingLayer (CurrentOperationsTax member, never Current); `check`
    # verifies the journal name carries the same layer.
    posting_layer: str | None = None
    # Budget register: defaults for every export (each export can override them, per fiscal year too).
    budget_model: str | None = None
    budget_code: str | None = None  # the first load of a cell (a code of budget type Original budget)
    revision_budget_code: str | None = None  # every later change of a cell (a code of type Revision)
    # How BudgetRegisterEntryLines shows revenue amounts (UNCONFIRMED in F&O, dynamics-budget-fiscal.md A2):
    # "as_entered" (positive revenue stays positive) or "stored" (sign-flipped like BudgetTransactionLine).
    budget_revenue_read_sign: Literal["as_entered", "stored"] = "as_entered"
    currency_code: str = "USD"
    # Per legal entity, e.g. {DEMF: EUR}: plan values are in each company's accounting currency.
    currency_codes: dict[str, str] = Field(default_factory=dict)
    lines_per_batch: int = Field(default=1000, ge=1, le=5000)

    # Ledger journals only: main account (or full ledger display value) of one balancing line per voucher.
    offset_account: str | None = None

    @field_validator("currency_codes")
    @classmethod
    def _upper_companies(cls, value: dict[str, str]) -> dict[str, str]:
        return {k.strip().upper(): v.strip().upper() for k, v in value.items()}

    @model_validator(mode="after")
    def _target_settings(self) -> JournalSettings:
        if self.target == "ledger_journal":
            if not self.posting_layer or self.posting_layer.strip().lower() == "current":
                raise ValueError(
                    "dynamics.journal.posting_layer: target 'ledger_journal' needs an explicit posting layer "
                    "other than Current (e.g. CustomLayer1), or plans would become actuals once posted; "
                    "or use target 'budget_register'"
                )
        elif self.offset_account:
            raise ValueError("dynamics.journal.offset_account: only used with target 'ledger_journal'")
        return self

    def currency_for(self, company: str) -> str:
        """The currency plan lines of ``company`` are written in."""
        return self.currency_codes.get(company.upper(), self.currency_code)


class DynamicsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    environment_url: str
    tenant_id: str
    authority_host: str = "https://login.microsoftonline.com"
    client_id: str
    client_secret: Secret | None = None
    certificate: CertificateCredential | None = None
    companies: list[str] = Field(min_length=1)
    page_size: int = Field(default=5000, ge=1, le=10000)
    timeout_seconds: int = Field(default=120, ge=1, le=900)
    gl_route: Literal["auto", "published", "bi"] = "auto"
    published_gl_entity_set: str = "GeneralJournalAccountEntries"
    journal: JournalSettings = JournalSettings()

    @field_validator("environment_url", "authority_host")
    @classmethod
    def _normalise_url(cls, value: str) -> str:
        return _normalised(value, keep_path=False)

    @field_validator("companies")
    @classmethod
    def _companies(cls, value: list[str]) -> list[str]:
        out = [c.strip().upper() for c in value]
        bad = [c for c in out if not re.fullmatch(r"[A-Z0-9]{1,8}", c)]
        if bad:
            raise ValueError(f"company ids must be 1-8 letters or digits, got {bad!r}")
        return out

    @model_validator(mode="after")
    def _one_credential(self) -> DynamicsSettings:
        if (self.client_secret is None) == (self.certificate is None):
            raise ValueError("set exactly one of dynamics.client_secret or dynamics.certificate")
        return self

    @property
    def scope(self) -> str:
        """The Entra ID scope: the environment URL, lowercase, no trailing slash, + ``/.default``."""
        return f"{self.environment_url}/.default"


# --- Anaplan -----------------------------------------------------------------------------------------


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["basic"] = "basic"
    username: str
    password: Secret


class CertificateAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["certificate"] = "certificate"
    cert_pem: Secret
    key_pem: Secret
    payload: Literal["v1", "v2"] = "v2"


class DeviceAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["device"] = "device"
    client_id: str
    # Where the rotating refresh token lives: a Secrets Manager ARN in AWS; locally a file: reference.
    refresh_token: Secret | None = None


AnaplanAuth = Annotated[BasicAuth | CertificateAuth | DeviceAuth, Field(discriminator="mode")]


class AnaplanSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    auth_url: str = "https://auth.anaplan.com"
    api_url: str = "https://api.anaplan.com/2/0"
    oauth_url: str = "https://us1a.app.anaplan.com"
    workspace_id: str
    model_id: str
    auth: AnaplanAuth
    chunk_size_mb: int = Field(default=10, ge=1, le=50)
    locale: str = "en_US"
    requests_per_minute: int = Field(default=540, ge=1, le=600)
    timeout_seconds: int = Field(default=120, ge=1, le=900)

    @field_validator("auth_url", "api_url", "oauth_url")
    @classmethod
    def _strip(cls, value: str) -> str:
        return _normalised(value, keep_path=True)


# --- mappings ---------------------------------------------------------------------------------------------


class DimensionMapping(BaseModel):
    """One F&O financial dimension carried into Anaplan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str  # F&O dimension attribute name, e.g. "CostCenter"
    column: str  # column in the Anaplan actuals / plan files
    list_import: str | None = None  # Anaplan import action that loads the list members
    list_name: str | None = None  # Anaplan list whose members the alignment check reads
    unmapped_member: str | None = None  # member used for unknown values when policy is "map"
    # Member written when an F&O line has no value for this dimension (balance-sheet lines often have none);
    # unset, a blank value is checked like any other and fails alignment unless the list has a blank member.
    blank_member: str | None = None


class ListImport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    import_action: str
    code_column: str = "Code"
    name_column: str = "Name"
    list_name: str | None = None  # Anaplan list whose members the alignment check reads


class ActualsMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    import_action: str = "Load GL Actuals"
    grain: Literal["monthly", "line"] = "monthly"
    # Period label written into the file: tokens {yyyy} {yy} {mm} {m} {mon} {Mon} {MON} {fy} {fyy} {q}.
    period_format: str = "{Mon} {yy}"
    version: str = "Actual"
    company_column: str = "Entity"
    account_column: str = "Account"
    period_column: str = "Period"
    # None: the file has no version column (a model without a Versions dimension, or one the import fixes).
    version_column: str | None = "Version"
    amount_column: str = "Amount"
    # Columns with one value on every row (e.g. {"Scenario": "Actual"}), after the configured columns.
    constant_columns: dict[str, str] = Field(default_factory=dict)
    unmapped_policy: Literal["fail", "map"] = "fail"
    unmapped_account: str | None = None
    # Optional read-back: an export of the actuals module (same columns as the import file) that
    # reconciliation compares with the F&O totals, so "loaded" means "Anaplan holds these numbers".
    verify_export: str | None = None
    # Extra columns written only with grain "line".
    line_id_column: str = "Line"
    voucher_column: str = "Voucher"
    description_column: str = "Description"
    sign: Literal["ledger", "natural"] = Field(
        default="ledger",
        description="Amounts written: 'ledger' (debit positive, credit negative) or 'natural' (revenue, "
        "liability and equity positive, by the F&O main account type).",
    )


class PlanExport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    export_action: str
    version: str  # e.g. "Budget" or "Forecast": only rows of this version are accepted
    period_format: str | None = None  # the export's period labels; None: mapping.actuals.period_format
    journal_name: str | None = None  # overrides dynamics.journal.journal_name
    # Budget register: override dynamics.journal.budget_model / budget_code / revision_budget_code.
    budget_model: str | None = None
    budget_models: dict[int, str] = Field(default_factory=dict)  # per fiscal year, e.g. {2026: FY2026}
    budget_code: str | None = None
    revision_budget_code: str | None = None


class PlansMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    exports: list[PlanExport] = Field(default_factory=list)
    company_column: str = "Entity"
    account_column: str = "Account"
    period_column: str = "Period"
    # None: the exports carry no version column; every row is the export's configured version.
    version_column: str | None = "Version"
    amount_column: str = "Amount"
    approval_column: str | None = "Approval"
    approved_value: str = "Approved"
    # "long": one row per cell (period_column, amount_column); "time_in_columns": one column per month whose
    # header is a period label in the export's period format (totals such as "Q1 FY25" or "FY25" ignored).
    layout: Literal["long", "time_in_columns"] = "long"
    # "refuse": an amount with more than 2 decimals fails the run; "largest_remainder": read spread values
    # (Anaplan doubles) and round them so each company x version x account total ties (flows/plans.py).
    rounding: Literal["refuse", "largest_remainder"] = "refuse"
    # "ledger": debit positive, credit negative; "natural": revenue, liability and equity positive (flipped
    # by the F&O main account type before anything is written).
    sign: Literal["ledger", "natural"] = "ledger"
    # Names of mapping.dimensions the plan exports carry (None: all of them). Plans are often made at a
    # coarser grain than actuals, e.g. per company and account only.
    dimensions: list[str] | None = None


class Mappings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    accounts: ListImport = ListImport(import_action="Load Accounts")
    companies: ListImport | None = None
    dimensions: list[DimensionMapping] = Field(default_factory=list)
    actuals: ActualsMapping = ActualsMapping()
    plans: PlansMapping = PlansMapping()
    scopes: Scopes = Field(default_factory=Scopes, description="Which main accounts each flow touches.")
    value_maps: dict[str, ValueMapConfig] = Field(
        default_factory=dict,
        description="F&O code -> Anaplan member maps, keyed 'company', 'account' or a dimension name.",
    )

    @model_validator(mode="after")
    def _value_map_keys(self) -> Mappings:
        problems = value_map_key_problems(list(self.value_maps), [d.name for d in self.dimensions])
        if problems:
            raise ValueError("\n".join(problems))
        return self


class CloseCalendar(BaseModel):
    """When a month's actuals are due: business day N after month end, in the connection's time zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "UTC"
    business_day: int = Field(default=3, ge=1, le=20)
    fiscal_year_start_month: int = Field(default=1, ge=1, le=12)
    holidays: list[date] = Field(default_factory=list)
    first_period: str | None = None  # "YYYY-MM": the earliest period the fiscal calendar knows

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value


# --- ledger reading for actuals (fiscal periods, posting layers, currencies, control totals) -------------------
# dynamics-budget-fiscal.md §B, §C, §D, §E. One block under the top-level key ``ledger``.

PeriodTypeName = Literal["Opening", "Operating", "Closing"]
_OPERATING: PeriodTypeName = "Operating"


class LedgerOptions(BaseModel):
    """How posted GL becomes actuals: which lines count, in which period and currency, and the control totals."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # F&O PostingLayer values (enum CurrentOperationsTax) read as actuals, on every GL route.
    posting_layers: list[str] = Field(default_factory=lambda: ["Current"], min_length=1)
    # Fiscal period types loaded; opening (balances carried forward) and closing (year-end close) are left out.
    period_types: list[PeriodTypeName] = Field(default_factory=lambda: [_OPERATING], min_length=1)
    # GL entries that budget appropriation posts from budget register entries (JournalCategory/PostingType Budget).
    exclude_budget_entries: bool = True
    # Which amount is loaded: the ledger's accounting currency, its reporting currency, or the transaction currency.
    currency: Literal["accounting", "reporting", "transaction"] = "accounting"
    # Optional column of the actuals file holding the currency of each amount.
    currency_column: str | None = None
    # Period of a line: "month" (calendar month of AccountingDate), "fiscal" (the ledger's fiscal period), or
    # "auto" (fiscal for companies whose calendar's operating periods are not calendar months).
    period_basis: Literal["auto", "month", "fiscal"] = "auto"
    # Labels of fiscal periods: {fyname} fiscal year name, {fp} period number, {fpp} 2 digits, {pname} period name.
    fiscal_period_format: str = "FY{fyname} P{fpp}"
    # Balance-sheet accounts as movements of the period, or as period-end balances including the fiscal year's
    # opening balance (the opening-period entries) for balance-sheet and cash planning.
    balance_sheet: Literal["movements", "balances"] = "movements"
    # Scheduled runs also reload the last N closed months (late postings); 0 = only months after the watermark.
    reload_closed_months: int = Field(default=2, ge=0, le=24)
    # Control totals: every company x period x currency of the extracted GL nets to zero.
    require_balanced: bool = True
    # Second path for control totals: "other_route" (the other GL route, when the environment has both) or "none".
    second_path: Literal["none", "other_route"] = "none"
    # Largest absolute difference tolerated per currency (e.g. {JPY: "1"}); others use reconciliation_tolerance.
    tolerances: dict[str, Decimal] = Field(default_factory=dict)
    # Main account attributes written as property columns of the account list import (None = not written).
    account_type_column: str | None = None
    account_category_column: str | None = None
    account_parent_column: str | None = None
    # GL lines without named dimension values (no LedgerDimensionValuesJson) are split from their display value:
    # "structure" = in the segment order of the account structure that applies to the line (read from F&O's
    # DimensionCombinations, the order from account_structures); "format" = in the ledger integration format's
    # order. Which order F&O's display strings follow is UNCONFIRMED (dynamics-fo.md section 3): check shows it.
    display_value_order: Literal["structure", "format"] = "structure"
    # Segment order of each account structure, by its name in F&O (e.g. {"Manufacturing P&L": [MainAccount,
    # CostCenter, Department, BusinessUnit]}); no entity publishes it (General ledger > Chart of accounts >
    # Structures > Configure account structures).
    account_structures: dict[str, list[str]] = Field(default_factory=dict)

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


class ScheduleSettings(BaseModel):
    """When EventBridge Scheduler starts the flows of a connection uploaded to the config bucket (the
    ScheduleSync function keeps the schedules in step with the file). An expression of None: no schedule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actuals: str | None = (
        "cron(0 6 ? * MON-FRI *)"  # every business morning; the close gate decides what is due
    )
    plans: str | None = "cron(0 7 1 * ? *)"
    timezone: str | None = None  # IANA; default close_calendar.timezone
    enabled: bool = True

    @field_validator("actuals", "plans")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        import re

        if value is not None and not re.fullmatch(r"(cron|rate)\([^()]+\)", value.strip()):
            raise ValueError(f"{value!r} is not a schedule expression: cron(...) or rate(...)")
        return value.strip() if value else value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return value if value is None else CloseCalendar._tz(value)


class TlsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_bundle: str | None = None  # PEM file with extra trust anchors (private or test endpoints)

    @field_validator("ca_bundle")
    @classmethod
    def _readable_pem(cls, value: str | None) -> str | None:
        """A readable PEM file with at least one certificate (checked now, not when a host is called)."""
        if value is None:
            return None
        from cryptography import x509

        try:
            data = Path(value).read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read the CA bundle file {value!r} ({exc.strerror})") from None
        if len(data) > MAX_CA_BUNDLE_BYTES:
            raise ValueError(f"the CA bundle file {value!r} is larger than {MAX_CA_BUNDLE_BYTES:,} bytes")
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError:
            certificates = []
        if not certificates:
            raise ValueError(f"the CA bundle file {value!r} holds no PEM certificate")
        return value


MAX_CA_BUNDLE_BYTES = 4_000_000


class SecuritySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # "host" (port 443 only) or "host:port"; local configurations only (in AWS: stack parameter AllowedHosts)
    allowed_hosts: list[str] = Field(default_factory=list)
    # Largest response body read from either system, counted after decompression.
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, ge=1024, le=1024 * 1024 * 1024)

    @field_validator("allowed_hosts")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for entry in value:
            try:
                host, port = parse_allowed_host(entry)
            except UrlProblem as exc:
                raise ValueError(str(exc)) from None
            out.append(host if port == 443 else f"{host}:{port}")
        return out


class ConnectionConfig(BaseModel):
    """Everything one connection needs: both systems, trust, mappings and the close calendar."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    dynamics: DynamicsSettings
    anaplan: AnaplanSettings
    tls: TlsSettings = TlsSettings()
    security: SecuritySettings = SecuritySettings()
    mapping: Mappings = Mappings()
    close_calendar: CloseCalendar = CloseCalendar()
    ledger: LedgerOptions = LedgerOptions()  # actuals: fiscal periods, posting layers, currencies, controls
    schedules: ScheduleSettings = ScheduleSettings()
    # Largest absolute difference tolerated by reconciliation (0 = to the cent).
    reconciliation_tolerance: Decimal = Decimal("0.00")

    @model_validator(mode="after")
    def _hosts(self, info: ValidationInfo) -> ConnectionConfig:
        context = info.context if isinstance(info.context, dict) else {}
        problems = host_problems(
            self.dynamics.environment_url,
            self.dynamics.authority_host,
            {f: getattr(self.anaplan, f) for f in ("auth_url", "api_url", "oauth_url")},
            self.security.allowed_hosts,
            aws=bool(context.get("aws")),
        )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def secrets(self) -> list[tuple[str, Secret]]:
        """Every credential reference with the field that holds it."""
        found: list[tuple[str, Secret]] = []

        def walk(obj: BaseModel, prefix: str) -> None:
            for key in type(obj).model_fields:
                value = getattr(obj, key)
                if isinstance(value, Secret):
                    found.append((f"{prefix}{key}", value))
                elif isinstance(value, BaseModel):
                    walk(value, f"{prefix}{key}.")

        walk(self, "")
        return found


# --- loading -----------------------------------------------------------------------------------------------


def _problem_lines(exc: ValidationError, prefix: str = "") -> list[str]:
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        loc = ".".join(
            str(p) for p in err["loc"] if not (isinstance(p, str) and p in ("basic", "certificate", "device"))
        )
        msg = err["msg"].removeprefix("Value error, ")
        where = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "connection"
        secretish = any(s in loc for s in ("password", "secret", "key_pem", "refresh_token", "cert_pem"))
        if err["type"] in ("missing",):
            lines.append(f"{where}: required setting is missing")
            continue
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown setting")
            continue
        if err["type"] == "value_error" and (not loc or "\n" in msg):
            # model-level checks already name their fields, one problem per line
            lines.extend(f"{prefix}{m}" if not loc else f"{where}: {m}" for m in msg.splitlines())
            continue
        value = "" if secretish or "input" not in err else f" (got {err['input']!r})"
        if isinstance(err.get("input"), dict | list):
            value = ""
        lines.append(f"{where}: {msg}{value}")
    return lines


def parse_connection(data: Any, *, aws: bool = False, source: str = "configuration") -> ConnectionConfig:
    """Validate one connection mapping; in AWS mode credentials must be Secrets Manager ARNs."""
    widened = _yaml_allowed_hosts(data) if aws else []
    try:
        cfg = ConnectionConfig.model_validate(data, context={"aws": aws})
    except ValidationError as exc:
        problems = widened + _problem_lines(exc)
        problems += [p for p in _raw_host_problems(data, aws) if p not in problems]
        raise ConfigError(problems, source) from None
    if widened:
        raise ConfigError(widened, source)
    if aws:
        problems = [
            f"{field}: in AWS credentials must be Secrets Manager ARNs, got a {secret.kind} reference"
            for field, secret in cfg.secrets()
            if secret.kind != "secretsmanager"
            or not SECRET_ARN.match(secret.ref + (f"#{secret.json_key}" if secret.json_key else ""))
        ]
        if problems:
            raise ConfigError(problems, source)
    return cfg


def _yaml_allowed_hosts(data: Any) -> list[str]:
    """In AWS the allow-list is deploy-time: a connection object may not widen it (it lives in the same
    bucket it would police)."""
    section = data.get("security") if isinstance(data, dict) else None
    if isinstance(section, dict) and section.get("allowed_hosts"):
        return [
            "security.allowed_hosts: not allowed in a connection stored in AWS; list extra hosts in the "
            f"stack parameter AllowedHosts (function environment {ALLOWED_HOSTS_ENV})"
        ]
    return []


MAX_CONFIG_BYTES = 1_000_000
MAX_YAML_DEPTH = 50
MAX_YAML_NODES = 100_000  # after alias expansion: a configuration has a few hundred


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses alias bombs (expansion beyond :data:`MAX_YAML_NODES`), recursive
    aliases and nesting deeper than :data:`MAX_YAML_DEPTH`, before anything is constructed."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None, None, f"nesting deeper than {MAX_YAML_DEPTH} levels; refused", mark
                )
            node: yaml.Node | None = super().compose_node(parent, index)
            return node
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node | None:
        node: yaml.Node | None = super().compose_document()
        if node is not None:
            _expanded_size(node)
        return node


def _expanded_size(root: yaml.Node) -> int:
    """Nodes the document has once every alias is expanded (shared nodes counted at each use)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise yaml.composer.ComposerError(None, None, "a recursive alias; refused", node.start_mark)
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        active.discard(key)
        if total > MAX_YAML_NODES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"aliases expand to more than {MAX_YAML_NODES:,} values (an alias bomb?); refused",
                node.start_mark,
            )
        sizes[key] = total
        return total

    return size(root)


def parse_connections(
    text: str, *, aws: bool = False, source: str = "configuration"
) -> list[ConnectionConfig]:
    """Parse YAML holding one connection, or ``connections:`` with several."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError([f"the file is larger than {MAX_CONFIG_BYTES:,} characters; refused"], source)
    try:
        data = yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}not valid YAML ({problem})"], source) from None
    if not isinstance(data, dict):
        raise ConfigError(["the file must hold a mapping (one connection) or 'connections: [...]'"], source)
    items = data.get("connections", [data])
    if not isinstance(items, list) or not items:
        raise ConfigError(["connections: must be a non-empty list"], source)
    configs: list[ConnectionConfig] = []
    problems: list[str] = []
    for i, item in enumerate(items):
        prefix = f"connections[{i}]." if "connections" in data else ""
        try:
            configs.append(parse_connection(item, aws=aws, source=source))
        except ConfigError as exc:
            problems.extend(f"{prefix}{p}" for p in exc.problems)
    names = [c.name for c in configs]
    problems.extend(
        f"name: {n!r} is used by more than one connection"
        for n in sorted({n for n in names if names.count(n) > 1})
    )
    if problems:
        raise ConfigError(problems, source)
    return configs


def load_connections(path: str | os.PathLike[str]) -> list[ConnectionConfig]:
    """Read a local YAML configuration file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read the file ({exc.strerror})"], str(p)) from None
    except UnicodeDecodeError:
        raise ConfigError(["the file is not UTF-8 text"], str(p)) from None
    return parse_connections(text, source=str(p))


def load_connection(path: str | os.PathLike[str], name: str | None = None) -> ConnectionConfig:
    """Read one connection from a local file (by name when the file holds several)."""
    configs = load_connections(path)
    if name is None:
        if len(configs) > 1:
            raise ConfigError(
                [f"the file holds {len(configs)} connections; name one of {[c.name for c in configs]}"],
                str(path),
            )
        return configs[0]
    for cfg in configs:
        if cfg.name == name:
            return cfg
    raise ConfigError([f"name: no connection named {name!r} (have {[c.name for c in configs]})"], str(path))
