"""Anaplan token reuse: :class:`TokenManager` keeps one token per connection in a
:class:`~d365_anaplan.anaplan.tokens.TokenCache` shared by every Lambda of a run, refreshes it ahead of expiry under
a lock (two refreshes never race, which matters for rotating OAuth refresh tokens), and re-authenticates once
when the API answers 401.
"""

from __future__ import annotations

import math
import time
import uuid

import requests

from d365_anaplan.anaplan.authenticators import Authenticator, Clock, Sleep, now_ms
from d365_anaplan.anaplan.tokens import CachedToken, TokenCache
from d365_anaplan.config import AnaplanSettings
from d365_anaplan.errors import AnaplanAuthError, AnaplanUnavailable

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
        return token is not None and token.seconds_left(now_ms(self.clock)) > self.refresh_margin_s

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
                if current is not None and current.seconds_left(now_ms(self.clock)) > 30:
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
            now = now_ms(self.clock)
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
            ttl = max(int(new.seconds_left(now_ms(self.clock))), 1)
            self.cache.put(self.key, new, ttl)
            self._local = new
            return new
        finally:
            self.cache.unlock(lock_key, self.owner)
