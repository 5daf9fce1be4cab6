"""The token-refresh lock outlives the HTTP calls it guards: its TTL is derived from the session's timeout."""

from __future__ import annotations

import pytest
import requests
from anaplan_unit_support import FakeClock, settings

from d365_anaplan.anaplan.client import AnaplanClient
from d365_anaplan.anaplan.token_manager import TokenManager, refresh_lock_seconds
from d365_anaplan.anaplan.tokens import CachedToken, InMemoryTokenCache
from d365_anaplan.config import ConnectionConfig
from d365_anaplan.http import VerifiedSession


class SlowAuthn:
    """Mints a token after the slowest answer the session's timeout allows (connect + read)."""

    principal = "p"

    def __init__(self, clock: FakeClock, cache: InMemoryTokenCache, timeout: float) -> None:
        self.clock, self.cache, self.timeout = clock, cache, timeout
        self.other_could_lock: list[bool] = []

    def authenticate(self, session: requests.Session) -> CachedToken:
        self.clock.sleep(2 * self.timeout)  # connect and read each up to the timeout
        # a second caller arriving now must still find the lock held
        self.other_could_lock.append(self.cache.try_lock("k#lock", "other", 1))
        return CachedToken(value="new", expires_at=int((self.clock() + 2100) * 1000))

    def refresh(self, session: requests.Session, token: CachedToken) -> CachedToken:
        self.clock.sleep(2 * self.timeout)
        raise NotImplementedError


@pytest.mark.parametrize("timeout", [30, 120, 900])
def test_lock_is_held_while_the_slowest_allowed_authentication_runs(clock: FakeClock, timeout: int) -> None:
    cache = InMemoryTokenCache(clock=clock)
    authn = SlowAuthn(clock, cache, timeout)
    mgr = TokenManager(authn, VerifiedSession(timeout=timeout), cache, "k", clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    assert mgr.token() == "new"
    assert authn.other_could_lock == [False]
    assert mgr.lock_ttl_s == refresh_lock_seconds(timeout) > 4 * timeout


def test_default_session_lock_exceeds_the_default_http_timeout() -> None:
    session = VerifiedSession()
    mgr = TokenManager(SlowAuthn(FakeClock(), InMemoryTokenCache(), 1), session, InMemoryTokenCache(), "k")  # type: ignore[arg-type]
    assert mgr.lock_ttl_s > 2 * session.default_timeout


def test_a_lock_shorter_than_the_calls_it_guards_is_refused() -> None:
    with pytest.raises(ValueError, match=r"refresh lock of 60 s would expire before the HTTP calls"):
        TokenManager(
            SlowAuthn(FakeClock(), InMemoryTokenCache(), 120),  # type: ignore[arg-type]
            VerifiedSession(timeout=120),
            InMemoryTokenCache(),
            "k",
            lock_ttl_s=60,
        )


def test_client_lock_follows_the_configured_timeout() -> None:
    for timeout in (10, 300):
        client = AnaplanClient.from_config(
            ConnectionConfig.model_validate(_config(timeout)), token_cache=InMemoryTokenCache()
        )
        assert client.tokens.lock_ttl_s == refresh_lock_seconds(timeout)
        assert client.tokens.lock_ttl_s > 2 * client.session.default_timeout  # type: ignore[attr-defined]


def _config(timeout: int) -> dict[str, object]:
    ana = settings(timeout_seconds=timeout).model_dump(mode="json")
    return {
        "name": "demo",
        "anaplan": ana,
        "dynamics": {
            "environment_url": "https://contoso.operations.dynamics.com",
            "tenant_id": "00000000-0000-0000-0000-000000000001",
            "client_id": "00000000-0000-0000-0000-000000000002",
            "client_secret": "inline:s",
            "companies": ["USMF"],
        },
    }
