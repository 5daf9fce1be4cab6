"""Helpers for tests and benchmarks that run against the F&O sandbox."""

from __future__ import annotations

from typing import Any

from d365_anaplan.config import ConnectionConfig, parse_connection
from d365_anaplan.http import VerifiedSession
from devkit.sandbox.dynamics.cli import RunningSandbox

ANAPLAN_STUB: dict[str, Any] = {
    "workspace_id": "w",
    "model_id": "m",
    "auth": {"mode": "basic", "username": "u", "password": "p"},
}


def connection_config(
    sb: RunningSandbox,
    *,
    name: str = "sandbox",
    dynamics: dict[str, Any] | None = None,
    companies: list[str] | None = None,
) -> ConnectionConfig:
    """A connection configuration pointing at the sandbox (Anaplan side stubbed)."""
    settings = sb.connection_settings(companies)
    settings["dynamics"].update(dynamics or {})
    return parse_connection({"name": name, **settings, "anaplan": ANAPLAN_STUB})


def raw_token(sb: RunningSandbox, *, scope: str | None = None, secret: str | None = None) -> str:
    """A token straight from the sandbox's token endpoint (no msal), for conformance tests."""
    session = VerifiedSession(ca_bundle=sb.ca_bundle, timeout=10)
    resp = session.post(
        f"{sb.app.authority_host}/{sb.app.config.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sb.app.config.client_id,
            "client_secret": secret or sb.app.config.client_secret,
            "scope": scope or f"{sb.app.environment_url}/.default",
        },
    )
    resp.raise_for_status()
    return str(resp.json()["access_token"])


def authorised_session(sb: RunningSandbox) -> VerifiedSession:
    """A raw session carrying a sandbox token (no msal, no client), for conformance tests."""
    session = VerifiedSession(ca_bundle=sb.ca_bundle, timeout=30)
    session.headers["Authorization"] = f"Bearer {raw_token(sb)}"
    return session
