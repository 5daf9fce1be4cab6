"""Entra ID client-credentials tokens for F&O (dynamics-fo.md §1).

One :class:`TokenProvider` per (authority, tenant, client id, environment): msal's
``ConfidentialClientApplication`` with the tenant-specific authority, the scope
``<environment URL, lowercase, no trailing slash>/.default`` and msal's HTTP going through our
:class:`~d365_anaplan.http.VerifiedSession`. The token is reused until ``margin`` seconds before it
expires (``expires_in`` from the response, never an assumed hour); client credentials have no refresh
token, so a new token is simply requested again. Keep providers at module scope (see :func:`provider_for`)
so warm Lambda invocations reuse the token.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests

from d365_anaplan.config import DynamicsSettings
from d365_anaplan.errors import DynamicsAuthError, DynamicsUnavailable
from d365_anaplan.http import VerifiedSession
from d365_anaplan.secrets import SecretResolver

# Entra error codes worth explaining (the message never carries the secret or the token).
_AADSTS_HINTS = {
    "AADSTS70011": "the scope is invalid: it must be the F&O environment URL (lowercase, no trailing slash) + /.default",
    "AADSTS700016": "the application (client id) is not found in this tenant: provision the app in the customer's tenant (admin consent)",
    "AADSTS7000215": "the client secret is wrong or expired",
    "AADSTS7000222": "the client secret has expired",
    "AADSTS700027": "the client assertion (certificate) was rejected: check that the certificate is registered on the app",
    "AADSTS90002": "the tenant was not found: check dynamics.tenant_id",
    "AADSTS500011": "the resource (F&O environment) is not known in this tenant: check dynamics.environment_url",
    "AADSTS65001": "the application has not been consented in this tenant",
}


def scope_for(environment_url: str) -> str:
    """``https://host/.default`` with the host lowercase and no trailing slash (F&O checks ``aud`` exactly)."""
    url = environment_url.strip().rstrip("/")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "https" or not rest or "/" in rest:
        raise DynamicsAuthError(
            f"dynamics.environment_url {environment_url!r} must be https://<host> without a path"
        )
    return f"https://{rest.lower()}/.default"


class ConfidentialApp(Protocol):
    """The part of msal's ConfidentialClientApplication we use."""

    token_cache: Any

    def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Credential:
    """A client secret, or a certificate (PEM private key + PEM certificate)."""

    client_secret: str | None = field(default=None, repr=False)
    private_key_pem: str | None = field(default=None, repr=False)
    certificate_pem: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        kind = "client secret" if self.client_secret else "certificate" if self.private_key_pem else "none"
        return f"Credential(<{kind}, not shown>)"

    def for_msal(self) -> Any:
        if self.client_secret:
            return self.client_secret
        if self.private_key_pem and self.certificate_pem:
            # msal derives the SHA-256 thumbprint (x5t#S256) from the certificate and signs a PS256 assertion.
            return {"private_key": self.private_key_pem, "public_certificate": self.certificate_pem}
        raise DynamicsAuthError(
            "no F&O client credential: set dynamics.client_secret or dynamics.certificate"
        )


def credential_from_settings(settings: DynamicsSettings, resolver: SecretResolver) -> Credential:
    if settings.client_secret is not None:
        return Credential(client_secret=resolver.resolve(settings.client_secret))
    assert settings.certificate is not None
    return Credential(
        private_key_pem=resolver.resolve(settings.certificate.key_pem),
        certificate_pem=resolver.resolve(settings.certificate.cert_pem),
    )


def build_msal_app(
    *,
    client_id: str,
    credential: Credential,
    authority: str,
    session: requests.Session,
    instance_discovery: bool,
) -> ConfidentialApp:
    import msal

    try:
        app: ConfidentialApp = msal.ConfidentialClientApplication(
            client_id,
            client_credential=credential.for_msal(),
            authority=authority,
            http_client=session,
            instance_discovery=instance_discovery,
            validate_authority=instance_discovery,
        )
    except ValueError as exc:
        # msal reports an unreachable or unknown authority as ValueError (text has no secret).
        raise DynamicsAuthError(f"Entra ID authority {authority}: {exc}") from None
    except requests.RequestException as exc:
        raise DynamicsUnavailable(
            f"Entra ID authority {authority}: cannot reach it ({type(exc).__name__})"
        ) from None
    return app


class TokenProvider:
    """Bearer tokens for one F&O environment; ``token()`` is cheap while the cached token is valid."""

    def __init__(
        self,
        *,
        environment_url: str,
        tenant_id: str,
        client_id: str,
        credential: Credential,
        session: requests.Session,
        authority_host: str = "https://login.microsoftonline.com",
        margin: float = 300.0,
        clock: Callable[[], float] = time.time,
        app_factory: Callable[..., ConfidentialApp] = build_msal_app,
    ) -> None:
        tenant = tenant_id.strip()
        if not tenant or tenant.lower() in ("common", "organizations", "consumers"):
            raise DynamicsAuthError(
                f"dynamics.tenant_id {tenant_id!r}: F&O needs a token from the customer's own tenant "
                "(a tenant id or domain), not /common or /organizations"
            )
        self.scope = scope_for(environment_url)
        self.environment_url = self.scope.removesuffix("/.default")
        self.client_id = client_id
        self.authority = f"{authority_host.rstrip('/')}/{tenant}"
        self._credential = credential
        self._session = session
        self._margin = margin
        self._clock = clock
        self._app_factory = app_factory
        self._app: ConfidentialApp | None = None
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self.requests_made = 0
        host = authority_host.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()
        self._instance_discovery = host.startswith("login.") and (
            host.endswith(".microsoftonline.com")
            or host.endswith(".microsoftonline.us")
            or host.endswith(".chinacloudapi.cn")
            or host.endswith(".microsoftonline.cn")
        )

    def _get_app(self) -> ConfidentialApp:
        if self._app is None:
            self._app = self._app_factory(
                client_id=self.client_id,
                credential=self._credential,
                authority=self.authority,
                session=self._session,
                instance_discovery=self._instance_discovery,
            )
        return self._app

    def token(self) -> str:
        """A valid access token (requested again when within ``margin`` seconds of expiry)."""
        with self._lock:
            if self._token is not None and self._clock() < self._expires_at - self._margin:
                return self._token
            return self._acquire()

    def invalidate(self) -> None:
        """Forget the cached token (F&O said it is no longer valid)."""
        with self._lock:
            self._token = None
            self._expires_at = 0.0
            self._drop_msal_cache()

    def _drop_msal_cache(self) -> None:
        app = self._app
        if app is None:
            return
        cache = getattr(app, "token_cache", None)
        if cache is None:
            return
        try:
            for item in list(cache.search("AccessToken")):
                cache.remove_at(item)
        except (AttributeError, TypeError):  # a test double without msal's cache API
            return

    def _acquire(self) -> str:
        app = self._get_app()
        self._drop_msal_cache()  # we decide when to renew; msal must not hand back the token we are replacing
        try:
            result = app.acquire_token_for_client(scopes=[self.scope])
        except requests.RequestException as exc:
            raise DynamicsUnavailable(
                f"Entra ID token request to {self.authority}: {type(exc).__name__}"
            ) from None
        except ValueError as exc:
            raise DynamicsAuthError(f"Entra ID token request to {self.authority}: {exc}") from None
        self.requests_made += 1
        if not isinstance(result, dict) or "access_token" not in result:
            raise DynamicsAuthError(self._explain(result if isinstance(result, dict) else {}))
        token = str(result["access_token"])
        try:
            expires_in = int(result.get("expires_in", 0))
        except (TypeError, ValueError):
            expires_in = 0
        if expires_in <= 0:
            raise DynamicsAuthError(f"Entra ID token response from {self.authority} has no usable expires_in")
        self._token = token
        self._expires_at = self._clock() + expires_in
        return token

    def _explain(self, result: dict[str, Any]) -> str:
        error = str(result.get("error") or "unknown_error")
        description = str(result.get("error_description") or "")
        first_line = description.splitlines()[0] if description else ""
        code = first_line.split(":", 1)[0].strip() if first_line.startswith("AADSTS") else ""
        codes = result.get("error_codes") or []
        if not code and isinstance(codes, list) and codes:
            code = f"AADSTS{codes[0]}"
        hint = _AADSTS_HINTS.get(code, "")
        parts = [
            f"Entra ID refused the client-credentials token for client {self.client_id} at {self.authority}: {error}"
        ]
        if first_line:
            parts.append(first_line[:300])
        if hint:
            parts.append(f"hint: {hint}")
        return "; ".join(parts)

    @property
    def expires_at(self) -> float:
        return self._expires_at


def explain_unauthorized(environment_url: str, client_id: str, www_authenticate: str | None) -> str:
    """Why F&O answers 401 to a token Entra issued (dynamics-fo.md §1.3, §1.4)."""
    detail = f" (WWW-Authenticate: {www_authenticate[:200]})" if www_authenticate else ""
    return (
        f"F&O {environment_url} refused the access token for client {client_id} with 401{detail}. Likely causes: "
        "the app is not registered in F&O (System administration > Setup > Microsoft Entra applications, mapped to a user); "
        "the token audience is not exactly the environment URL (lowercase, no trailing slash); "
        "the token came from another tenant or /organizations; "
        "or the multitenant app has no service principal in the customer's tenant."
    )


_providers: dict[tuple[str, str, str, str, str], TokenProvider] = {}
_providers_lock = threading.Lock()


def provider_for(
    settings: DynamicsSettings, resolver: SecretResolver, session: VerifiedSession
) -> TokenProvider:
    """The module-level provider for these settings (reused across warm Lambda invocations).

    The credential is resolved each time (Secrets Manager values are cached by the resolver) and is part of
    the cache key through a digest, so a rotated secret or certificate gets a new msal app.
    """
    credential = credential_from_settings(settings, resolver)
    digest = hashlib.sha256(
        "\x1f".join(
            v or ""
            for v in (credential.client_secret, credential.private_key_pem, credential.certificate_pem)
        ).encode()
    ).hexdigest()
    key = (settings.authority_host, settings.tenant_id, settings.client_id, settings.environment_url, digest)
    with _providers_lock:
        provider = _providers.get(key)
        if provider is None:
            provider = TokenProvider(
                environment_url=settings.environment_url,
                tenant_id=settings.tenant_id,
                client_id=settings.client_id,
                credential=credential,
                session=session,
                authority_host=settings.authority_host,
            )
            _providers[key] = provider
        return provider
