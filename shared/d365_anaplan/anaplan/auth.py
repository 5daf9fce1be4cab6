"""Anaplan authentication wired from the configuration: the authenticator for ``anaplan.auth``.

The authenticators are in :mod:`d365_anaplan.anaplan.authenticators`, token reuse in
:mod:`d365_anaplan.anaplan.token_manager`, the device grant's bootstrap in :mod:`d365_anaplan.anaplan.device`.
"""

from __future__ import annotations

from d365_anaplan.anaplan.authenticators import (
    Authenticator,
    BasicAuthenticator,
    CertificateAuthenticator,
    DeviceGrantAuthenticator,
)
from d365_anaplan.config import AnaplanSettings, BasicAuth, CertificateAuth, DeviceAuth, Secret
from d365_anaplan.errors import AnaplanAuthError
from d365_anaplan.secrets import SecretResolver

# --- wiring from the configuration ------------------------------------------------------------------------


class SecretRefreshTokenStore:
    """The device grant's refresh token behind a :class:`Secret` (Secrets Manager in AWS, a file locally)."""

    def __init__(self, resolver: SecretResolver, secret: Secret) -> None:
        self.resolver = resolver
        self.secret = secret

    def load(self) -> str:
        return self.resolver.resolve(self.secret, force_fetch=True).strip()

    def save(self, value: str) -> None:
        self.resolver.store(self.secret, value)


def build_authenticator(settings: AnaplanSettings, resolver: SecretResolver) -> Authenticator:
    """The authenticator for ``settings.auth`` (Basic, certificate, or device-grant refresh token)."""
    auth = settings.auth
    if isinstance(auth, BasicAuth):
        return BasicAuthenticator(settings.auth_url, auth.username, resolver.resolve(auth.password))
    if isinstance(auth, CertificateAuth):
        return CertificateAuthenticator(
            settings.auth_url,
            resolver.resolve(auth.cert_pem),
            resolver.resolve(auth.key_pem),
            payload=auth.payload,
        )
    if isinstance(auth, DeviceAuth):
        if auth.refresh_token is None:
            raise AnaplanAuthError(
                "anaplan.auth.refresh_token: not set; run 'd365-anaplan anaplan-login --config FILE' once to store one"
            )
        return DeviceGrantAuthenticator(
            settings.oauth_url, auth.client_id, SecretRefreshTokenStore(resolver, auth.refresh_token)
        )
    raise AnaplanAuthError(f"anaplan.auth.mode: unsupported {auth!r}")
