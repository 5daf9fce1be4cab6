"""Anaplan authentication: Basic, CA certificate (v1/v2 payload), OAuth 2.0 device grant; token reuse.

An :class:`Authenticator` mints an ``AnaplanAuthToken`` (``authenticate``) and extends it (``refresh``).
:class:`TokenManager` keeps one token per connection in a :class:`~d365_anaplan.anaplan.tokens.TokenCache`
shared by every Lambda of a run, refreshes it ahead of expiry under a lock (two refreshes never race, which
matters for rotating OAuth refresh tokens), and re-authenticates once when the API answers 401.

Nothing here logs or formats a token, password, key or refresh token into a message.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import os
import struct
import time
import uuid
from collections.abc import Callable
from typing import Literal, Protocol

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import ValidationError

from d365_anaplan.anaplan.models import AuthFailure, AuthResponse, DeviceCode, OAuthError, OAuthTokens
from d365_anaplan.anaplan.tokens import CachedToken, TokenCache
from d365_anaplan.config import AnaplanSettings, BasicAuth, CertificateAuth, DeviceAuth, Secret
from d365_anaplan.errors import AnaplanAuthError, AnaplanUnavailable
from d365_anaplan.secrets import SecretResolver

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]

TOKEN_LIFETIME_S = 35 * 60
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_SCOPE = "openid profile email offline_access"


def _now_ms(clock: Clock) -> int:
    return int(clock() * 1000)


def _post(session: requests.Session, url: str, call: str, **kwargs: object) -> requests.Response:
    try:
        return session.post(url, **kwargs)  # type: ignore[arg-type]
    except requests.RequestException as exc:
        raise AnaplanUnavailable(f"{call}: cannot reach {url} ({type(exc).__name__})") from None


def _auth_failure(call: str, resp: requests.Response) -> AnaplanAuthError | AnaplanUnavailable:
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
    now = _now_ms(clock)
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
        resp = _post(
            session,
            f"{self.auth_url}/token/refresh",
            call,
            headers={"Authorization": f"AnaplanAuthToken {token.value}"},
        )
        if resp.status_code != 200:
            raise _auth_failure(call, resp)
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
        resp = _post(
            session, f"{self.auth_url}/token/authenticate", call, headers={"Authorization": f"Basic {raw}"}
        )
        if resp.status_code not in (200, 201):
            raise _auth_failure(call, resp)
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
        resp = _post(
            session, f"{self.auth_url}/token/authenticate", call, headers={"Authorization": header}, json=body
        )
        if resp.status_code not in (200, 201):
            raise _auth_failure(call, resp)
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
        resp = _post(session, f"{self.oauth_url}/oauth/token", call, json=body)
        if resp.status_code != 200:
            raise _auth_failure(call, resp)
        try:
            tokens = OAuthTokens.model_validate(resp.json())
        except (ValueError, ValidationError):
            raise AnaplanAuthError(f"{call}: HTTP 200 without an access_token in the answer") from None
        if tokens.refresh_token and tokens.refresh_token != body["refresh_token"]:
            self.store.save(tokens.refresh_token)  # persist the rotation first
        now = _now_ms(self.clock)
        return CachedToken(
            value=tokens.access_token, expires_at=now + tokens.expires_in * 1000, minted_at=now
        )

    def refresh(self, session: requests.Session, token: CachedToken) -> CachedToken:
        return self.authenticate(session)


# --- device authorization (one-time bootstrap) -------------------------------------------------------


def start_device_authorization(
    session: requests.Session, oauth_url: str, client_id: str, scope: str = DEFAULT_SCOPE
) -> DeviceCode:
    """``POST {oauth}/oauth/device/code``: the user code and verification URL to show the user."""
    call = f"POST /oauth/device/code (client {client_id})"
    resp = _post(
        session,
        f"{oauth_url.rstrip('/')}/oauth/device/code",
        call,
        json={"client_id": client_id, "scope": scope},
    )
    if resp.status_code != 200:
        raise _auth_failure(call, resp)
    try:
        return DeviceCode.model_validate(resp.json())
    except (ValueError, ValidationError):
        raise AnaplanAuthError(f"{call}: the answer is not a device authorization") from None


def poll_device_token(
    session: requests.Session,
    oauth_url: str,
    client_id: str,
    code: DeviceCode,
    *,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
    on_wait: Callable[[str, float], None] | None = None,
) -> OAuthTokens:
    """Poll ``POST {oauth}/oauth/token`` at the server's interval until the user approves (RFC 8628 §3.5).

    ``authorization_pending`` keeps polling, ``slow_down`` adds 5 s to the interval, ``expired_token``,
    ``access_denied`` and anything else end with :class:`AnaplanAuthError`.
    """
    call = f"POST /oauth/token (device_code grant, client {client_id})"
    interval: float = max(code.interval, 1)
    deadline = clock() + code.expires_in
    body = {"grant_type": DEVICE_GRANT, "device_code": code.device_code, "client_id": client_id}
    while True:
        sleep(interval)
        resp = _post(session, f"{oauth_url.rstrip('/')}/oauth/token", call, json=body)
        if resp.status_code == 200:
            try:
                tokens = OAuthTokens.model_validate(resp.json())
            except (ValueError, ValidationError):
                raise AnaplanAuthError(f"{call}: HTTP 200 without an access_token in the answer") from None
            if not tokens.refresh_token:
                raise AnaplanAuthError(f"{call}: no refresh_token returned; request the offline_access scope")
            return tokens
        try:
            err = OAuthError.model_validate(resp.json())
        except (ValueError, ValidationError):
            raise _auth_failure(call, resp) from None
        if err.error == "authorization_pending":
            pass
        elif err.error == "slow_down":
            interval += 5
        elif err.error == "expired_token":
            raise AnaplanAuthError(
                f"{call}: the device code expired before it was approved; run the login again"
            )
        else:
            raise _auth_failure(call, resp)
        if on_wait is not None:
            on_wait(err.error, interval)
        if clock() + interval > deadline:
            raise AnaplanAuthError(
                f"{call}: the device code expired before it was approved; run the login again"
            )


# --- token reuse -------------------------------------------------------------------------------------

REFRESH_CALLS = 2  # HTTP calls under the refresh lock: a refused refresh falls back to one authentication
LOCK_MARGIN_S = 30  # the cache writes and the clock skew between Lambdas


def refresh_lock_seconds(http_timeout_s: float) -> int:
    """TTL of the token-refresh lock for a session whose requests time out after ``http_timeout_s``.

    The lock must outlive the HTTP calls made while holding it, or a second caller could refresh (and rotate a
    refresh token) while the first still waits for its answer. ``requests`` applies the timeout to the
    connection and again to the read, so each call may take twice ``http_timeout_s``.
    """
    if http_timeout_s <= 0:
        raise ValueError(f"http_timeout_s must be positive, got {http_timeout_s!r}")
    return math.ceil(REFRESH_CALLS * 2 * http_timeout_s) + LOCK_MARGIN_S


def http_timeout_of(session: requests.Session, default: float) -> float:
    """The timeout a session applies to requests that name none (``VerifiedSession.default_timeout``)."""
    value = getattr(session, "default_timeout", None)
    return value if isinstance(value, int | float) and value > 0 else default


class TokenManager:
    """One token per connection, shared through ``cache``, refreshed ahead of expiry, never raced.

    The refresh lock's TTL is derived from the session's HTTP timeout (:func:`refresh_lock_seconds`); an
    explicit ``lock_ttl_s`` shorter than that is refused.
    """

    def __init__(
        self,
        authenticator: Authenticator,
        session: requests.Session,
        cache: TokenCache,
        key: str,
        *,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        refresh_margin_s: float = 300.0,
        http_timeout_s: float | None = None,
        lock_ttl_s: int | None = None,
        lock_wait_s: float = 60.0,
        owner: str | None = None,
    ) -> None:
        if http_timeout_s is None:
            default: float = AnaplanSettings.model_fields["timeout_seconds"].default
            http_timeout_s = http_timeout_of(session, default)
        guarded = refresh_lock_seconds(http_timeout_s)
        if lock_ttl_s is not None and lock_ttl_s < guarded:
            raise ValueError(
                f"token refresh lock of {lock_ttl_s} s would expire before the HTTP calls it guards "
                f"(timeout {http_timeout_s:g} s): at least {guarded} s"
            )
        self.authenticator = authenticator
        self.session = session
        self.cache = cache
        self.key = key
        self.clock = clock
        self.sleep = sleep
        self.refresh_margin_s = refresh_margin_s
        self.http_timeout_s = http_timeout_s
        self.lock_ttl_s = guarded if lock_ttl_s is None else lock_ttl_s
        self.lock_wait_s = lock_wait_s
        self.owner = owner or uuid.uuid4().hex
        self._local: CachedToken | None = None
        self.minted = 0
        self.refreshed = 0

    def _fresh(self, token: CachedToken | None) -> bool:
        return token is not None and token.seconds_left(_now_ms(self.clock)) > self.refresh_margin_s

    def token(self) -> str:
        """A token valid for at least ``refresh_margin_s`` (from memory, the shared cache, or minted)."""
        if self._fresh(self._local):
            assert self._local is not None
            return self._local.value
        cached = self.cache.get(self.key)
        if self._fresh(cached):
            assert cached is not None
            self._local = cached
            return cached.value
        return self._renew(stale=None).value

    def invalidate(self, rejected: str) -> str:
        """Anaplan answered 401 for ``rejected``: mint a new token (unless someone already did)."""
        return self._renew(stale=rejected).value

    def _renew(self, stale: str | None) -> CachedToken:
        lock_key = self.key + "#lock"
        waited = 0.0
        while not self.cache.try_lock(lock_key, self.owner, self.lock_ttl_s):
            if stale is None:  # someone else is refreshing: keep using the current token while it lasts
                current = self.cache.get(self.key)
                if current is not None and current.seconds_left(_now_ms(self.clock)) > 30:
                    self._local = current
                    return current
            if waited >= self.lock_wait_s:
                raise AnaplanUnavailable(
                    f"token refresh for {self.key}: another caller holds the refresh lock"
                )
            self.sleep(0.25)
            waited += 0.25
        try:
            current = self.cache.get(self.key)
            if current is not None and current.value != stale and self._fresh(current):
                self._local = current  # someone else renewed while we waited
                return current
            now = _now_ms(self.clock)
            new: CachedToken | None = None
            if current is not None and stale is None and current.seconds_left(now) > 5:
                try:
                    new = self.authenticator.refresh(self.session, current)
                    self.refreshed += 1
                except AnaplanAuthError:
                    new = None  # refused (e.g. revoked): mint below
            if new is None:
                new = self.authenticator.authenticate(self.session)
                self.minted += 1
            ttl = max(int(new.seconds_left(_now_ms(self.clock))), 1)
            self.cache.put(self.key, new, ttl)
            self._local = new
            return new
        finally:
            self.cache.unlock(lock_key, self.owner)


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
