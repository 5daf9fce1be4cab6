"""One connection: TLS and security settings and the :class:`ConnectionConfig` holding every section."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from d365_anaplan.config.anaplan import AnaplanSettings
from d365_anaplan.config.close_calendar import CloseCalendar, ScheduleSettings
from d365_anaplan.config.dynamics import DynamicsSettings
from d365_anaplan.config.hosts import host_problems
from d365_anaplan.config.ledger import LedgerOptions
from d365_anaplan.config.mapping import Mappings
from d365_anaplan.config.secret_ref import Secret
from d365_anaplan.http import DEFAULT_MAX_RESPONSE_BYTES
from d365_anaplan.urls import UrlProblem, parse_allowed_host


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
