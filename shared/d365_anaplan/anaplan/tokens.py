"""Token cache protocol for Anaplan auth tokens (shared across the Lambdas of a run).

The client keeps one ``AnaplanAuthToken`` per connection. A :class:`TokenCache` lets every Lambda of a run
reuse it: ``get``/``put`` store the token (implementations in AWS encrypt it at rest, e.g. DynamoDB + KMS in
``d365_anaplan.ledger``), and ``try_lock``/``unlock`` guard refreshes so two callers never refresh (or rotate
an OAuth refresh token) at the same time.

Keys are opaque strings built by the client (see :func:`cache_key`); values never appear in ``repr``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field


class CachedToken(BaseModel):
    """An Anaplan auth token as stored in a cache.

    ``value`` is the ``tokenValue`` sent as ``Authorization: AnaplanAuthToken <value>``.
    ``expires_at`` is the token's expiry as epoch milliseconds (Anaplan's ``expiresAt``).
    ``refresh_token_id`` is Anaplan's ``refreshTokenId`` (informational; Anaplan refreshes with the token itself).
    ``minted_at`` is when the token was first issued (epoch ms), ``refreshed_at`` when it was last refreshed.
    """

    model_config = ConfigDict(frozen=True)

    value: str = Field(repr=False)
    expires_at: int
    refresh_token_id: str | None = Field(default=None, repr=False)
    minted_at: int = 0
    refreshed_at: int | None = None

    def seconds_left(self, now_ms: int) -> float:
        """Seconds until expiry at ``now_ms`` (negative once expired)."""
        return (self.expires_at - now_ms) / 1000.0


@runtime_checkable
class TokenCache(Protocol):
    """Storage for auth tokens shared between processes.

    * ``get(key)`` returns the stored token, or ``None`` when absent or past its ``ttl``.
    * ``put(key, token, ttl_seconds)`` stores (replaces) the token; the entry may be dropped after ``ttl_seconds``.
    * ``try_lock(key, owner, ttl_seconds)`` takes a short lease named ``key`` for ``owner``; ``True`` if taken
      (or already held by the same owner), ``False`` if someone else holds an unexpired lease.
    * ``unlock(key, owner)`` releases the lease if ``owner`` holds it (no error otherwise).
    """

    def get(self, key: str) -> CachedToken | None: ...

    def put(self, key: str, token: CachedToken, ttl_seconds: int) -> None: ...

    def try_lock(self, key: str, owner: str, ttl_seconds: int) -> bool: ...

    def unlock(self, key: str, owner: str) -> None: ...


def cache_key(connection: str, auth_url: str, principal: str) -> str:
    """The cache key of a connection's token: stable, and free of credentials (the principal is hashed)."""
    digest = hashlib.sha256(f"{auth_url}\n{principal}".encode()).hexdigest()[:16]
    return f"anaplan-token#{connection}#{digest}"


class InMemoryTokenCache:
    """A process-local :class:`TokenCache` (tests, local runs). Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[CachedToken, float]] = {}
        self._leases: dict[str, tuple[str, float]] = {}

    def get(self, key: str) -> CachedToken | None:
        with self._lock:
            item = self._tokens.get(key)
            if item is None:
                return None
            token, until = item
            if until <= self._clock():
                del self._tokens[key]
                return None
            return token

    def put(self, key: str, token: CachedToken, ttl_seconds: int) -> None:
        with self._lock:
            self._tokens[key] = (token, self._clock() + max(ttl_seconds, 0))

    def try_lock(self, key: str, owner: str, ttl_seconds: int) -> bool:
        with self._lock:
            now = self._clock()
            held = self._leases.get(key)
            if held is not None and held[0] != owner and held[1] > now:
                return False
            self._leases[key] = (owner, now + max(ttl_seconds, 0))
            return True

    def unlock(self, key: str, owner: str) -> None:
        with self._lock:
            held = self._leases.get(key)
            if held is not None and held[0] == owner:
                del self._leases[key]
