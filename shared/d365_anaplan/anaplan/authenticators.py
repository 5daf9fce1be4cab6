"""Anaplan authenticators: Basic, CA certificate (v1/v2 payload), OAuth 2.0 device-grant refresh token.

An :class:`Authenticator` mints an ``AnaplanAuthToken`` (``authenticate``) and extends it (``refresh``).
Nothing here logs or formats a token, password, key or refresh token into a message.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import time
from collections.abc import Callable
from typing import Literal, Protocol

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import ValidationError

from d365_anaplan.anaplan.models import AuthFailure, AuthResponse, OAuthError, OAuthTokens
from d365_anaplan.anaplan.tokens import CachedToken
from d365_anaplan.errors import AnaplanAuthError, AnaplanUnavailable

Clock = Callable[[], float]
Sleep = Callable[[float], None]

TOKEN_LIFETIME_S = 35 * 60
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_SCOPE = "openid profile email offline_access"


def now_ms(clock: Clock) -> int:
    return int(clock() * 1000)


def post_auth(session: requests.Session, url: str, call: str, **kwargs: object) -> requests.Response:
    try:
        return session.post(url, **kwargs)  # type: ignore[arg-type]
    except requests.RequestException as exc:
        raise AnaplanUnavailable(f"{call}: cannot reach {url} ({type(exc).__name__})") from None


def auth_failure(call: str, resp: requests.Response) -> AnaplanAuthError | AnaplanUnavailable:
    said = ""
    try:
        body = resp.json()
        if isinstance(body, dict):
            if "error" in body:
                err = OAuthError.model_validate(body)
                said = f"{err.error}: {err.error_description or ''}".strip(": ")
            else:
                fail = AuthFailure.model_validate(body)
                said = " ".join(x for x in (fail.status, fail.status_message) if x)
    except (ValueError, ValidationError):
        said = resp.text[:200]
    message = f"{call}: HTTP {resp.status_code}; Anaplan said: {said or resp.reason}"
    if resp.status_code >= 500 or resp.status_code == 429:
        return AnaplanUnavailable(message)
    return AnaplanAuthError(message)


def _parse_token(
    call: str, resp: requests.Response, clock: Clock, minted_at: int | None = None
) -> CachedToken:
    try:
        parsed = AuthResponse.model_validate(resp.json())
    except (ValueError, ValidationError):
        raise AnaplanAuthError(f"{call}: HTTP {resp.status_code} without a tokenInfo in the answer") from None
    if parsed.status != "SUCCESS":
        raise AnaplanAuthError(f"{call}: Anaplan said {parsed.status} {parsed.status_message or ''}".strip())
    info = parsed.token_info
    now = now_ms(clock)
    return CachedToken(
        value=info.token_value,
        expires_at=info.expires_at,
        refresh_token_id=info.refresh_token_id,
        minted_at=minted_at if minted_at is not None else now,
        refreshed_at=now if minted_at is not None else None,
    )


class Authenticator(Protocol):
    """Mints and extends Anaplan auth tokens for one principal."""

    @property
    def principal(self) -> str:
        """A non-secret name of who authenticates (user name, certificate fingerprint, client id)."""
        ...

    def authenticate(self, session: requests.Session) -> CachedToken: ...

    def refresh(self, session: requests.Session, token: CachedToken) -> CachedToken: ...


class _AuthApiAuthenticator:
    """Shared refresh through ``POST {auth}/token/refresh`` for Basic and certificate logins."""

    def __init__(self, auth_url: str, clock: Clock) -> None:
        self.auth_url = auth_url.rstrip("/")
        self.clock = clock

    def refresh(self, session: requests.Session, token: CachedToken) -> CachedToken:
        call = "POST /token/refresh"
        resp = post_auth(
            session,
            f"{self.auth_url}/token/refresh",
            call,
            headers={"Authorization": f"AnaplanAuthToken {token.value}"},
        )
        if resp.status_code != 200:
            raise auth_failure(call, resp)
        return _parse_token(call, resp, self.clock, minted_at=token.minted_at)


class BasicAuthenticator(_AuthApiAuthenticator):
    """``Authorization: Basic`` on ``POST {auth}/token/authenticate`` (201 Created)."""

    def __init__(self, auth_url: str, username: str, password: str, clock: Clock = time.time) -> None:
        super().__init__(auth_url, clock)
        self.username = username
        self._password = password

    @property
    def principal(self) -> str:
        return f"basic:{self.username}"

    def __repr__(self) -> str:
        return f"BasicAuthenticator({self.auth_url}, user {self.username}, password not shown)"

    def authenticate(self, session: requests.Session) -> CachedToken:
        call = f"POST /token/authenticate (basic, user {self.username})"
        raw = base64.b64encode(f"{self.username}:{self._password}".encode()).decode("ascii")
        resp = post_auth(
            session, f"{self.auth_url}/token/authenticate", call, headers={"Authorization": f"Basic {raw}"}
        )
        if resp.status_code not in (200, 201):
            raise auth_failure(call, resp)
        return _parse_token(call, resp, self.clock)


def certificate_payload(
    key: rsa.RSAPrivateKey,
    *,
    version: Literal["v1", "v2"] = "v2",
    clock: Clock = time.time,
    random_bytes: int = 150,
    timestamp_unit: Literal["s", "ms"] = "s",
) -> dict[str, str]:
    """A fresh ``encodedData``/``encodedSignedData`` body (SHA512withRSA over the raw encoded bytes).

    v2 prefixes the random bytes with an 8-byte big-endian timestamp and adds ``encodedDataFormat: v2``.
    Anaplan's own example decodes to seconds (UNCONFIRMED; ``timestamp_unit="ms"`` is available).
    """
    if random_bytes < 100:
        raise ValueError("Anaplan needs at least 100 random bytes")
    data = os.urandom(random_bytes)
    if version == "v2":
        stamp = int(clock() * (1000 if timestamp_unit == "ms" else 1))
        data = struct.pack(">Q", stamp) + data
    signature = key.sign(data, padding.PKCS1v15(), hashes.SHA512())
    body = {
        "encodedData": base64.b64encode(data).decode("ascii"),
        "encodedSignedData": base64.b64encode(signature).decode("ascii"),
    }
    if version == "v2":
        body["encodedDataFormat"] = "v2"
    return body


class CertificateAuthenticator(_AuthApiAuthenticator):
    """``Authorization: CACertificate <base64 PEM>`` with a signed random payload, fresh per request."""

    def __init__(
        self,
        auth_url: str,
        cert_pem: str | bytes,
        key_pem: str | bytes,
        *,
        payload: Literal["v1", "v2"] = "v2",
        clock: Clock = time.time,
        key_password: bytes | None = None,
    ) -> None:
        super().__init__(auth_url, clock)
        self._cert = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
        key_bytes = key_pem.encode() if isinstance(key_pem, str) else key_pem
        try:
            key = serialization.load_pem_private_key(key_bytes, password=key_password)
        except (ValueError, TypeError):
            raise AnaplanAuthError(
                "certificate auth: the private key is not a readable PEM RSA key"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise AnaplanAuthError("certificate auth: the private key must be RSA (SHA512withRSA)")
        self._key = key
        self.payload = payload
        self.fingerprint = hashlib.sha256(self._cert).hexdigest()[:16]

    @property
    def principal(self) -> str:
        return f"cert:{self.fingerprint}"

    def __repr__(self) -> str:
        return f"CertificateAuthenticator({self.auth_url}, certificate {self.fingerprint}, key not shown)"

    def authenticate(self, session: requests.Session) -> CachedToken:
        call = f"POST /token/authenticate (certificate {self.fingerprint}, payload {self.payload})"
        body = certificate_payload(self._key, version=self.payload, clock=self.clock)
        header = "CACertificate " + base64.b64encode(self._cert).decode("ascii")
        resp = post_auth(
            session, f"{self.auth_url}/token/authenticate", call, headers={"Authorization": header}, json=body
        )
        if resp.status_code not in (200, 201):
            raise auth_failure(call, resp)
        return _parse_token(call, resp, self.clock)


class RefreshTokenStore(Protocol):
    """Where the device grant's (possibly rotating) refresh token lives."""

    def load(self) -> str: ...

    def save(self, value: str) -> None: ...


class DeviceGrantAuthenticator:
    """OAuth 2.0 refresh-token grant (``POST {oauth}/oauth/token``) for a device-grant client.

    A rotated refresh token is saved to the store before the new access token is returned (and so before
    it is used); the :class:`TokenManager` lock keeps two refreshes from racing.
    """

    def __init__(
        self, oauth_url: str, client_id: str, store: RefreshTokenStore, clock: Clock = time.time
    ) -> None:
        self.oauth_url = oauth_url.rstrip("/")
        self.client_id = client_id
        self.store = store
        self.clock = clock

    @property
    def principal(self) -> str:
        return f"oauth:{self.client_id}"

    def __repr__(self) -> str:
        return f"DeviceGrantAuthenticator({self.oauth_url}, client {self.client_id}, refresh token not shown)"

    def authenticate(self, session: requests.Session) -> CachedToken:
        call = f"POST /oauth/token (refresh_token grant, client {self.client_id})"
        body = {
            "grant_type": "refresh_token",
            "client_id": self.client_id,
            "refresh_token": self.store.load(),
        }
        resp = post_auth(session, f"{self.oauth_url}/oauth/token", call, json=body)
        if resp.status_code != 200:
            raise auth_failure(call, resp)
        try:
            tokens = OAuthTokens.model_validate(resp.json())
        except (ValueError, ValidationError):
            raise AnaplanAuthError(f"{call}: HTTP 200 without an access_token in the answer") from None
        if tokens.refresh_token and tokens.refresh_token != body["refresh_token"]:
            self.store.save(tokens.refresh_token)  # persist the rotation first
        now = now_ms(self.clock)
        return CachedToken(
            value=tokens.access_token, expires_at=now + tokens.expires_in * 1000, minted_at=now
        )

    def refresh(self, session: requests.Session, token: CachedToken) -> CachedToken:
        return self.authenticate(session)
