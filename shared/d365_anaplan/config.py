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
    package_blob_host: str | None = None,
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
    if package_blob_host is not None:  # never built in: the storage account must be allowed explicitly
        endpoints.append(
            (
                "dynamics.package.blob_host",
                package_blob_host,
                lambda _host: False,
                "is the F&O package blob host; it must be allowed explicitly",
            )
        )
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

    cert_pem: Secret = Field(description="PEM certificate of the app registration (a credential reference)")
    key_pem: Secret = Field(description="PEM private key of that certificate (a credential reference)")


class JournalSettings(BaseModel):
    """Where approved plan values land in F&O (README "Plans: where they land")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: Literal["ledger_journal", "budget_register"] = Field(
        default="budget_register",
        description=(
            "`budget_register` (BudgetRegisterEntryHeaders/Lines under a budget model and code; never"
            " touches actual balances) or the opt-in `ledger_journal` (LedgerJournalHeaders/Lines on "
            "`posting_layer`)"
        ),
    )
    journal_name: str = Field(
        default="Budget", description="ledger journals: F&O journal name (each export can name its own)"
    )
    posting_layer: str | None = Field(
        default=None,
        description=(
            "ledger journals: required, a layer other than `Current` (e.g. `CustomLayer1`); `check` "
            "verifies the journal name posts to it"
        ),
    )
    budget_model: str | None = Field(
        default=None,
        description="budget register: the budget model (each export can name its own, per fiscal year)",
    )
    budget_code: str | None = Field(
        default=None,
        description=(
            "budget register: the code of a cell's first load (a code of budget type *Original budget*)"
        ),
    )
    revision_budget_code: str | None = Field(
        default=None,
        description=(
            "budget register: the code of every later change (a code of type *Revision*); needed once"
            " a plan is revised"
        ),
    )
    budget_revenue_read_sign: Literal["as_entered", "stored"] = Field(
        default="as_entered",
        description=(
            "how `BudgetRegisterEntryLines` shows revenue (UNCONFIRMED in F&O): `as_entered` "
            "(positive) or `stored` (sign-flipped like the table); `check` compares one of the "
            "connector's revenue lines with the raw `BudgetTransactionLineBiEntities` (stored sign) "
            "and names the right value; a wrong value also fails reconciliation on revenue accounts"
        ),
    )
    currency_code: str = Field(default="USD", description="currency of written lines")
    currency_codes: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "per legal entity, e.g. `{DEMF: EUR}`: plan values are written in each company's "
            "accounting currency"
        ),
    )
    lines_per_batch: int = Field(
        default=1000, ge=1, le=5000, description="lines per `$batch` (≤ 5,000 operations)"
    )
    package_threshold_lines: int = Field(
        default=3000,
        ge=1,
        description=(
            'budget register entries with more lines than this go through a "Budget account entries" '
            "package import (set-based) when `dynamics.package.import_project` is set"
        ),
    )

    offset_account: str | None = Field(
        default=None,
        description=(
            "ledger journals only: optional balancing account (main account or full ledger display "
            "value), one line per voucher"
        ),
    )

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


class PackageSettings(BaseModel):
    """The data-management (DMF) package route (dynamics-fo.md §4.3): GL exports, large budget imports."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    export_project: str | None = Field(
        default=None,
        description=(
            'the data project (definitionGroupId) exporting "General journal account entry" in full (no'
            " change tracking: an incremental export would miss lines); created in F&O first; one legal "
            "entity per call"
        ),
    )
    export_entity: str = Field(
        default="General journal account entry",
        description="the entity's file inside the package (beside Manifest.xml and PackageHeader.xml)",
    )
    blob_host: str | None = Field(
        default=None,
        description=(
            "origin of the storage account F&O hands out SAS URLs on (`https://<account>.blob.core."
            "windows.net`); never built in: allow it explicitly (`security.allowed_hosts` / stack "
            "parameter `AllowedHosts`); no credential is ever sent to it"
        ),
    )
    package_threshold_lines: int = Field(
        default=300_000,
        ge=1,
        description="`gl_transport: auto`: the package route when the window's `$count` reaches this many lines",
    )
    slash_dates: Literal["mdy", "dmy"] = Field(
        default="mdy", description="order of day/month/year in slash dates of the package CSV (its culture)"
    )
    poll_seconds: int = Field(
        default=15,
        ge=1,
        le=600,
        description="first Wait between status polls; the interval grows to 5 minutes",
    )
    max_wait_seconds: int = Field(
        default=4 * 3600,
        ge=60,
        le=24 * 3600,
        description="an export or import still running after this fails",
    )
    max_package_bytes: int = Field(
        default=20 * 1024**3, ge=1024, description="largest package downloaded (streamed into S3)"
    )
    import_project: str | None = Field(
        default=None,
        description=(
            'plans: the data project importing "Budget account entries" with set-based processing '
            "(large entries)"
        ),
    )
    import_entity: str = Field(
        default="Budget account entries", description="the entity's file inside an import package"
    )

    @field_validator("blob_host")
    @classmethod
    def _normalise_blob_host(cls, value: str | None) -> str | None:
        return None if value is None else _normalised(value, keep_path=False)


class DynamicsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    environment_url: str = Field(
        description=(
            "F&O environment, https; normalised to lowercase, no path or trailing slash; must match a"
            " known F&O host pattern (`*.operations[.xx].dynamics.com`, `*.sandbox.operations…`, "
            "`*.cloudax.dynamics.com`, `*.axcloud.dynamics.com`, `*.cloud.onebox.dynamics.com`, "
            "`*.operations.dynamics.cn`) on port 443, unless allowed (`security.allowed_hosts` "
            "locally, stack parameter `AllowedHosts` in AWS)"
        )
    )
    tenant_id: str = Field(description="the customer's Entra tenant (tokens come from the tenant endpoint)")
    authority_host: str = Field(
        default="https://login.microsoftonline.com",
        description=(
            "Entra authority (sovereign clouds: `login.microsoftonline.us`, "
            "`login.partner.microsoftonline.cn`)"
        ),
    )
    client_id: str = Field(
        description="app registration id (also registered in F&O → Microsoft Entra applications)"
    )
    client_secret: Secret | None = Field(
        default=None,
        description=(
            "the app registration's client secret (a credential reference); exactly one of it and "
            "`certificate`"
        ),
    )
    certificate: CertificateCredential | None = Field(
        default=None, description="the app registration's certificate; exactly one of it and `client_secret`"
    )
    companies: list[str] = Field(min_length=1, description="legal entities (`dataAreaId`) to read and write")
    page_size: int = Field(
        default=5000, ge=1, le=10000, description="OData `Prefer: odata.maxpagesize` (≤ 10,000)"
    )
    timeout_seconds: int = Field(default=120, ge=1, le=900, description="per request")
    gl_route: Literal["auto", "published", "bi"] = Field(
        default="auto",
        description=(
            "`auto` (discover from `$metadata`), `published` (a published GL account entry entity), "
            "`bi` (the BI entities)"
        ),
    )
    published_gl_entity_set: str = Field(
        default="GeneralJournalAccountEntries",
        description="name of the published entity set, when the customer has one",
    )
    journal: JournalSettings = Field(
        default=JournalSettings(), description="where approved plan values land in F&O"
    )
    gl_transport: Literal["odata", "package", "auto"] = Field(
        default="odata",
        description=(
            "how posted GL travels: `odata` pages, a data-management `package` export, or `auto` (the "
            "package above `dynamics.package.package_threshold_lines`, counted with `$count`)"
        ),
    )
    package: PackageSettings = Field(
        default=PackageSettings(), description="the data-management package route (exports and imports)"
    )
    max_concurrency: int = Field(
        default=4,
        ge=1,
        le=40,
        description=(
            "GL extraction fan-out (company × month items): at most this many workers read F&O at once "
            "(each has one request in flight; a 429 seen by one holds them all)"
        ),
    )
    distributed_map_items: int = Field(
        default=40,
        ge=1,
        le=10_000,
        description=(
            "from this many extraction items on, the flow reads them from an S3 manifest with a "
            "Distributed Map instead of an inline Map"
        ),
    )

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

    @model_validator(mode="after")
    def _package_route(self) -> DynamicsSettings:
        if self.gl_transport != "odata":
            missing = [
                f"dynamics.package.{f}"
                for f in ("export_project", "blob_host")
                if not getattr(self.package, f)
            ]
            if missing:
                raise ValueError(
                    f"dynamics.gl_transport: {self.gl_transport} needs {' and '.join(missing)} (the F&O data "
                    "project exporting General journal account entry, and the storage host of its package URLs)"
                )
        if self.package.import_project and not self.package.blob_host:
            raise ValueError(
                "dynamics.package.import_project needs dynamics.package.blob_host (the storage host of the "
                "upload URLs F&O hands out)"
            )
        return self

    @property
    def scope(self) -> str:
        """The Entra ID scope: the environment URL, lowercase, no trailing slash, + ``/.default``."""
        return f"{self.environment_url}/.default"


# --- Anaplan -----------------------------------------------------------------------------------------


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["basic"] = Field(default="basic", description="`basic`, `certificate` or `device`")
    username: str = Field(description="basic: Anaplan user name")
    password: Secret = Field(description="basic: its password (a credential reference)")


class CertificateAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["certificate"] = Field(
        default="certificate", description="`basic`, `certificate` or `device`"
    )
    cert_pem: Secret = Field(
        description="certificate: the CA certificate registered in Anaplan (a credential reference)"
    )
    key_pem: Secret = Field(description="certificate: its private key (a credential reference)")
    payload: Literal["v1", "v2"] = Field(
        default="v2", description="certificate: `v2` or `v1` of Anaplan's certificate authentication payload"
    )


class DeviceAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["device"] = Field(default="device", description="`basic`, `certificate` or `device`")
    client_id: str = Field(description="device: the OAuth client id of the Anaplan OAuth client")
    refresh_token: Secret | None = Field(
        default=None,
        description=(
            "device: where the rotating refresh token lives (a Secrets Manager ARN in AWS; locally a "
            "`file:` reference); written by `anaplan-login`"
        ),
    )


AnaplanAuth = Annotated[BasicAuth | CertificateAuth | DeviceAuth, Field(discriminator="mode")]


class AnaplanSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    auth_url: str = Field(
        default="https://auth.anaplan.com", description="authentication host (regional tenants differ)"
    )
    api_url: str = Field(default="https://api.anaplan.com/2/0", description="Integration API base")
    oauth_url: str = Field(default="https://us1a.app.anaplan.com", description="OAuth host (device grant)")
    workspace_id: str = Field(description="the planning model's workspace")
    model_id: str = Field(description="the planning model")
    auth: AnaplanAuth = Field(
        description=(
            "how the connector authenticates: `{mode: basic, username, password}`, `{mode: "
            "certificate, cert_pem, key_pem, payload: v2|v1}` or `{mode: device, client_id, "
            "refresh_token}`"
        )
    )
    chunk_size_mb: int = Field(default=10, ge=1, le=50, description="upload chunk size, 1–50 MB uncompressed")
    locale: str = Field(default="en_US", description="`localeName` of action tasks")
    requests_per_minute: int = Field(
        default=540, ge=1, le=600, description="client-side limiter, under the tenant's 600/min"
    )
    timeout_seconds: int = Field(default=120, ge=1, le=900, description="per request")

    @field_validator("auth_url", "api_url", "oauth_url")
    @classmethod
    def _strip(cls, value: str) -> str:
        return _normalised(value, keep_path=True)


# --- mappings ---------------------------------------------------------------------------------------------


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
            "reads Anaplan back and compares every company/account/period total to the cent"
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
            "`mapping.dimensions`"
        ),
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

    timezone: str = Field(default="UTC", description="IANA time zone of the close calendar")
    business_day: int = Field(
        default=3, ge=1, le=20, description="a month's actuals are due on business day N after month end"
    )
    fiscal_year_start_month: int = Field(
        default=1,
        ge=1,
        le=12,
        description="first month of the fiscal year (fiscal period tokens, the plan horizon)",
    )
    holidays: list[date] = Field(default_factory=list, description="dates that are no business days")
    first_period: str | None = Field(
        default=None, description="`YYYY-MM`: the earliest period the fiscal calendar knows"
    )

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
            "`movements`, or `balances`: balance-sheet accounts (type Asset, Liability, Equity) "
            "loaded as period-end balances including the fiscal year's opening entries (the extract "
            "then starts at the fiscal year's first day); needs grain `monthly`"
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


class ScheduleSettings(BaseModel):
    """When EventBridge Scheduler starts the flows of a connection uploaded to the config bucket (the
    ScheduleSync function keeps the schedules in step with the file). An expression of None: no schedule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actuals: str | None = Field(
        default="cron(0 6 ? * MON-FRI *)",
        description=(
            "for connections uploaded to the config bucket: when the actuals flow starts "
            "(`cron(…)`/`rate(…)`, or `null` = not scheduled); every business morning by default, the"
            " close gate decides what is due"
        ),
    )
    plans: str | None = Field(
        default="cron(0 7 1 * ? *)",
        description="when the plans flow starts (`cron(…)`/`rate(…)`, or `null` = not scheduled)",
    )
    timezone: str | None = Field(
        default=None, description="IANA time zone of the schedules (default `close_calendar.timezone`)"
    )
    enabled: bool = Field(default=True, description="`false` keeps the schedules but disables them")

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

    ca_bundle: str | None = Field(
        default=None,
        description=(
            "PEM with extra trust anchors for private or test endpoints (added to the public roots; "
            "verification is never off); checked when the configuration is loaded (a readable PEM "
            "file holding at least one certificate)"
        ),
    )

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

    allowed_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "local configurations only: `host` (port 443 only) or `host:port` allowed in addition to "
            "the known F&O, Entra and Anaplan hosts (which are allowed on 443 only). In AWS this key "
            "is refused: extra hosts come from the stack parameter `AllowedHosts` (function "
            "environment `CONNECTOR_ALLOWED_HOSTS`, comma separated), which also applies locally"
        ),
    )
    max_response_bytes: int = Field(
        default=DEFAULT_MAX_RESPONSE_BYTES,
        ge=1024,
        le=1024 * 1024 * 1024,
        description=(
            "largest response body read from either system, counted after decompression (an Anaplan "
            "chunk is at most 50 MB; an F&O page of 10,000 rows is far smaller); raise it if a very "
            "large `$metadata` is refused"
        ),
    )

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

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
        description="connection name (`[a-z0-9-]`), used in S3 keys, the ledger and schedule inputs",
    )
    dynamics: DynamicsSettings = Field(description="Dynamics 365 Finance & Operations")
    anaplan: AnaplanSettings = Field(description="Anaplan")
    tls: TlsSettings = Field(default=TlsSettings(), description="trust for private or test endpoints")
    security: SecuritySettings = Field(default=SecuritySettings(), description="hosts and response sizes")
    mapping: Mappings = Field(default=Mappings(), description="how F&O data maps onto the Anaplan model")
    close_calendar: CloseCalendar = Field(
        default=CloseCalendar(),
        description=(
            "when a month's actuals are due: business day N after month end, in the connection's time zone"
        ),
    )
    ledger: LedgerOptions = Field(
        default=LedgerOptions(),
        description=(
            "actuals: which posted GL lines count, in which period and currency, and the control totals"
        ),
    )
    schedules: ScheduleSettings = Field(
        default=ScheduleSettings(),
        description=(
            "when EventBridge Scheduler starts the flows of a connection uploaded to the config bucket"
        ),
    )
    reconciliation_tolerance: Decimal = Field(
        default=Decimal("0.00"),
        description="largest absolute difference tolerated by reconciliation (0 = to the cent)",
    )

    @model_validator(mode="after")
    def _hosts(self, info: ValidationInfo) -> ConnectionConfig:
        context = info.context if isinstance(info.context, dict) else {}
        problems = host_problems(
            self.dynamics.environment_url,
            self.dynamics.authority_host,
            {f: getattr(self.anaplan, f) for f in ("auth_url", "api_url", "oauth_url")},
            self.security.allowed_hosts,
            aws=bool(context.get("aws")),
            package_blob_host=self.dynamics.package.blob_host,
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
