"""Token provider (dynamics-fo.md §1): scope, tenant authority, caching until shortly before expiry,
no refresh token, explained errors that never carry the secret."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from d365_anaplan.dynamics import auth
from d365_anaplan.dynamics.auth import Credential, TokenProvider, scope_for
from d365_anaplan.errors import DynamicsAuthError


class FakeApp:
    def __init__(self, results: list[dict[str, Any]]) -> None:
        self.results = list(results)
        self.calls: list[list[str]] = []
        self.token_cache = None

    def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]:
        self.calls.append(scopes)
        return self.results.pop(0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make(results: list[dict[str, Any]], **kw: Any) -> tuple[TokenProvider, FakeApp, Clock, dict[str, Any]]:
    app = FakeApp(results)
    clock = Clock()
    seen: dict[str, Any] = {}

    def factory(**kwargs: Any) -> FakeApp:
        seen.update(kwargs)
        return app

    provider = TokenProvider(
        environment_url=kw.pop("environment_url", "https://Contoso.Operations.Dynamics.com/"),
        tenant_id=kw.pop("tenant_id", "contoso.onmicrosoft.com"),
        client_id="cid",
        credential=Credential(client_secret="s3cr3t-value"),
        session=requests.Session(),
        clock=clock,
        app_factory=factory,
        **kw,
    )
    return provider, app, clock, seen


def test_scope_is_lowercase_without_trailing_slash() -> None:
    assert (
        scope_for("https://Contoso.Operations.Dynamics.com/")
        == "https://contoso.operations.dynamics.com/.default"
    )
    with pytest.raises(DynamicsAuthError):
        scope_for("http://contoso.operations.dynamics.com")
    with pytest.raises(DynamicsAuthError):
        scope_for("https://contoso.operations.dynamics.com/data")


def test_token_reused_until_margin_then_requested_again() -> None:
    provider, app, clock, seen = make(
        [{"access_token": "A", "expires_in": 3599}, {"access_token": "B", "expires_in": 4500}]
    )
    assert provider.token() == "A"
    assert app.calls == [["https://contoso.operations.dynamics.com/.default"]]
    clock.now += 3599 - 301
    assert provider.token() == "A"
    clock.now += 2  # now inside the 300 s margin: a new client-credentials request (no refresh token)
    assert provider.token() == "B"
    assert len(app.calls) == 2
    assert provider.expires_at == clock.now + 4500
    assert seen["authority"] == "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    assert seen["instance_discovery"] is True


def test_non_microsoft_authority_disables_instance_discovery() -> None:
    provider, _app, _clock, seen = make(
        [{"access_token": "A", "expires_in": 60}], authority_host="https://127.0.0.1:8443"
    )
    provider.token()
    assert seen["instance_discovery"] is False
    assert seen["authority"] == "https://127.0.0.1:8443/contoso.onmicrosoft.com"


def test_invalidate_forces_new_token() -> None:
    provider, app, _clock, _ = make(
        [{"access_token": "A", "expires_in": 3599}, {"access_token": "B", "expires_in": 3599}]
    )
    provider.token()
    provider.invalidate()
    assert provider.token() == "B"
    assert len(app.calls) == 2


@pytest.mark.parametrize("tenant", ["organizations", "common", ""])
def test_multi_tenant_authorities_refused(tenant: str) -> None:
    with pytest.raises(DynamicsAuthError, match="customer's own tenant"):
        make([], tenant_id=tenant)


def test_entra_error_is_explained_without_secret() -> None:
    provider, _app, _clock, _ = make(
        [
            {
                "error": "invalid_scope",
                "error_description": "AADSTS70011: The provided value for scope is not valid.\r\nTrace ID: x",
                "error_codes": [70011],
            }
        ]
    )
    with pytest.raises(DynamicsAuthError) as exc:
        provider.token()
    text = str(exc.value)
    assert "invalid_scope" in text and "AADSTS70011" in text and "lowercase" in text
    assert "s3cr3t" not in text


def test_missing_expires_in_is_an_error() -> None:
    provider, _app, _clock, _ = make([{"access_token": "A"}])
    with pytest.raises(DynamicsAuthError, match="expires_in"):
        provider.token()


def test_certificate_credential_form() -> None:
    cred = Credential(private_key_pem="KEY", certificate_pem="CERT")
    assert cred.for_msal() == {"private_key": "KEY", "public_certificate": "CERT"}
    with pytest.raises(DynamicsAuthError):
        Credential().for_msal()


def test_build_msal_app_passes_session_and_discovery(monkeypatch: pytest.MonkeyPatch) -> None:
    captured: dict[str, Any] = {}

    class Stub:
        def __init__(self, client_id: str, **kwargs: Any) -> None:
            captured["client_id"] = client_id
            captured.update(kwargs)

    import msal

    monkeypatch.setattr(msal, "ConfidentialClientApplication", Stub)
    session = requests.Session()
    auth.build_msal_app(
        client_id="c",
        credential=Credential(client_secret="x"),
        authority="https://h/t",
        session=session,
        instance_discovery=False,
    )
    assert captured["http_client"] is session
    assert captured["instance_discovery"] is False
    assert captured["authority"] == "https://h/t"
    assert captured["client_credential"] == "x"


def test_unreachable_authority_is_auth_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import msal

    def boom(*_a: Any, **_k: Any) -> None:
        raise ValueError("Unable to get authority configuration for https://h/t")

    monkeypatch.setattr(msal, "ConfidentialClientApplication", boom)
    with pytest.raises(DynamicsAuthError, match="authority"):
        auth.build_msal_app(
            client_id="c",
            credential=Credential(client_secret="x"),
            authority="https://h/t",
            session=requests.Session(),
            instance_discovery=False,
        )


def test_explain_unauthorized_names_the_causes() -> None:
    text = auth.explain_unauthorized(
        "https://x.operations.dynamics.com", "cid", 'Bearer error="invalid_token"'
    )
    assert "Microsoft Entra applications" in text and "audience" in text and "service principal" in text


def test_provider_for_is_reused_and_keyed_by_credential() -> None:
    from d365_anaplan.config import DynamicsSettings
    from d365_anaplan.http import VerifiedSession
    from d365_anaplan.secrets import SecretResolver

    def settings(secret: str) -> DynamicsSettings:
        return DynamicsSettings(
            environment_url="https://c.operations.dynamics.com",
            tenant_id="t1",
            client_id="c1",
            client_secret=secret,
            companies=["USMF"],
        )

    session = VerifiedSession()
    a = auth.provider_for(settings("one"), SecretResolver(), session)
    assert auth.provider_for(settings("one"), SecretResolver(), session) is a
    assert auth.provider_for(settings("rotated"), SecretResolver(), session) is not a
