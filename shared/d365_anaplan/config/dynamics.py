"""The Dynamics 365 F&O section: environment, credentials, journal and DMF package settings."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from d365_anaplan.config.hosts import normalised_url
from d365_anaplan.config.secret_ref import Secret


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
    currency_code: str | None = Field(
        default=None,
        description=(
            "currency of written plan lines for companies without a `currency_codes` entry; unset = each "
            "company's ledger accounting currency in F&O (`Ledgers.AccountingCurrency`); a value that differs "
            "from the ledger's is refused (run and `check`)"
        ),
    )
    currency_codes: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "per legal entity, e.g. `{DEMF: EUR}`: optional, plan values are written in each company's "
            "ledger accounting currency; an entry that differs from it is refused (run and `check`): "
            "remove or correct it"
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

    def currency_for(self, company: str) -> str | None:
        """The currency configured for the plan lines of ``company``; None = its ledger's accounting currency
        (resolved against F&O by :func:`~d365_anaplan.flows.plan_currency.plan_currencies`)."""
        code = self.currency_codes.get(company.upper(), self.currency_code)
        return code.strip().upper() if code else None


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
            "parameter `AllowedHosts`); no credential is ever sent to it, and no authenticated endpoint may "
            "name it (or any Azure Storage host)"
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
        return None if value is None else normalised_url(value, keep_path=False)


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
        return normalised_url(value, keep_path=False)

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
