"""The Anaplan section: auth modes (basic, certificate, device) and the workspace/model."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from d365_anaplan.config.hosts import normalised_url
from d365_anaplan.config.secret_ref import Secret


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
        return normalised_url(value, keep_path=True)
