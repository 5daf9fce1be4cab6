from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from anaplan_unit_support import AUTH, MP, OAUTH, FakeClock, add_auth, auth_body, envelope, paged, settings

from d365_anaplan.anaplan.authenticators import (
    BasicAuthenticator,
    CertificateAuthenticator,
    DeviceGrantAuthenticator,
)
from d365_anaplan.anaplan.client import AnaplanClient, SecretRefreshTokenStore, build_authenticator
from d365_anaplan.anaplan.token_manager import TokenManager
from d365_anaplan.anaplan.tokens import CachedToken, InMemoryTokenCache, cache_key
from d365_anaplan.config import Secret
from d365_anaplan.errors import AnaplanAuthError, AnaplanPollTimeout, AnaplanTaskFailed, AnaplanUnavailable
from d365_anaplan.secrets import SecretResolver


def test_expired_refresh_falls_back_to_a_new_login(
    rsps: responses.RequestsMock, clock: FakeClock, make_client: Any
) -> None:
    add_auth(rsps, clock, "tok-1")
    rsps.add(responses.GET, f"{MP}/imports/112000000001", json=envelope(importMetadata={}))
    client: AnaplanClient = make_client()
    client.import_metadata("112000000001")
    clock.now += 32 * 60
    rsps.add(
        responses.POST,
        f"{AUTH}/token/refresh",
        status=401,
        json={"status": "FAILURE_BAD_CREDENTIAL", "statusMessage": "expired"},
    )
    rsps.add(
        responses.POST, f"{AUTH}/token/authenticate", json=auth_body("tok-2", clock() + 2100), status=201
    )
    client.import_metadata("112000000001")
    assert client.tokens.minted == 2 and client.tokens.refreshed == 0
    assert rsps.calls[-1].request.headers["Authorization"] == "AnaplanAuthToken tok-2"


def test_refresh_lock_timeout_is_transient(clock: FakeClock) -> None:
    cache = InMemoryTokenCache(clock=lambda: 0.0)  # the other holder's lease never runs out
    cache.try_lock("k#lock", "someone-else", 600)
    mgr = TokenManager(
        BasicAuthenticator(AUTH, "u", "p", clock=clock),
        requests.Session(),
        cache,
        "k",
        clock=clock,
        sleep=clock.sleep,
        lock_wait_s=2,
    )
    with pytest.raises(AnaplanUnavailable, match="refresh lock"):
        mgr.token()


def test_cache_ttl_and_lock_semantics() -> None:
    now = [100.0]
    cache = InMemoryTokenCache(clock=lambda: now[0])
    token = CachedToken(value="v", expires_at=1)
    cache.put("k", token, 10)
    assert cache.get("k") == token
    now[0] += 11
    assert cache.get("k") is None
    assert cache.try_lock("l", "a", 5) and cache.try_lock("l", "a", 5) and not cache.try_lock("l", "b", 5)
    cache.unlock("l", "b")  # not the holder: no effect
    assert not cache.try_lock("l", "b", 5)
    now[0] += 6
    assert cache.try_lock("l", "b", 5)
    assert "v" not in repr(token)
    key = cache_key("conn", AUTH, "basic:user@example.com")
    assert "user@example.com" not in key and key.startswith("anaplan-token#conn#")


def test_poll_timeout(rsps: responses.RequestsMock, clock: FakeClock, make_client: Any) -> None:
    add_auth(rsps, clock)
    rsps.add(
        responses.GET,
        f"{MP}/imports/112000000001/tasks/T1",
        json=envelope(task={"taskId": "T1", "taskState": "IN_PROGRESS"}),
    )
    client: AnaplanClient = make_client()
    with pytest.raises(AnaplanPollTimeout, match="import 112000000001 task T1: still IN_PROGRESS"):
        client.wait_for_task("imports", "112000000001", "T1", timeout_s=60)


def test_failed_export_is_reported(rsps: responses.RequestsMock, clock: FakeClock, make_client: Any) -> None:
    add_auth(rsps, clock)
    rsps.add(
        responses.GET,
        f"{MP}/exports",
        json=paged("exports", [{"id": "116000000001", "name": "Export Approved Budget"}]),
    )
    rsps.add(responses.POST, f"{MP}/exports/116000000001/tasks", json=envelope(task={"taskId": "T9"}))
    failed = {
        "taskId": "T9",
        "taskState": "COMPLETE",
        "result": {"successful": False, "objectId": "116000000001"},
    }
    rsps.add(responses.GET, f"{MP}/exports/116000000001/tasks/T9", json=envelope(task=failed))
    with pytest.raises(AnaplanTaskFailed, match=r"Export Approved Budget.*T9.*failed"):
        make_client().run_export("Export Approved Budget", io.BytesIO())


def test_build_authenticator_for_each_mode(tmp_path: Path) -> None:
    import trustme

    leaf = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert("x", key_type=trustme.KeyType.RSA)
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_bytes(leaf.cert_chain_pems[0].bytes())
    key.write_bytes(leaf.private_key_pem.bytes())
    resolver = SecretResolver()
    assert isinstance(build_authenticator(settings(), resolver), BasicAuthenticator)
    cert_settings = settings(
        auth={"mode": "certificate", "cert_pem": f"file:{cert}", "key_pem": f"file:{key}", "payload": "v1"}
    )
    authn = build_authenticator(cert_settings, resolver)
    assert isinstance(authn, CertificateAuthenticator) and authn.payload == "v1"
    device = settings(
        auth={"mode": "device", "client_id": "a" * 32, "refresh_token": f"file:{tmp_path / 'rt'}"}
    )
    assert isinstance(build_authenticator(device, resolver), DeviceGrantAuthenticator)
    with pytest.raises(AnaplanAuthError, match="anaplan-login"):
        build_authenticator(settings(auth={"mode": "device", "client_id": "a" * 32}), resolver)
    bad = settings(auth={"mode": "certificate", "cert_pem": f"file:{cert}", "key_pem": "not a key"})
    with pytest.raises(AnaplanAuthError, match="private key") as err:
        build_authenticator(bad, resolver)
    assert "not a key" not in str(err.value)


def test_refresh_token_store_reads_fresh_and_writes_atomically(
    tmp_path: Path, rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    path = tmp_path / "rt"
    path.write_text("rt-1\n")
    store = SecretRefreshTokenStore(SecretResolver(), Secret.model_validate(f"file:{path}"))
    rsps.add(
        responses.POST,
        f"{OAUTH}/oauth/token",
        json={"access_token": "a1", "refresh_token": "rt-2", "expires_in": 2100},
    )
    DeviceGrantAuthenticator(OAUTH, "a" * 32, store, clock=clock).authenticate(requests.Session())
    assert path.read_text() == "rt-2" and oct(path.stat().st_mode & 0o777) == "0o600"
    assert b'"refresh_token": "rt-1"' in rsps.calls[0].request.body


def test_task_start_is_not_repeated_when_anaplan_may_have_acted(
    rsps: responses.RequestsMock, clock: FakeClock, make_client: Any
) -> None:
    add_auth(rsps, clock)
    url = f"{MP}/imports/112000000001/tasks"
    rsps.add(responses.POST, url, status=502, body="bad gateway")
    client: AnaplanClient = make_client()
    with pytest.raises(AnaplanUnavailable, match="not repeated"):
        client.start_task("imports", "112000000001")
    rsps.replace(responses.POST, url, body=requests.ConnectionError("reset after send"))
    with pytest.raises(AnaplanUnavailable, match="not repeated"):
        client.start_task("imports", "112000000001")
    assert len([c for c in rsps.calls if c.request.url == url]) == 2
    rsps.replace(responses.POST, url, status=503, body="unavailable")
    rsps.add(responses.POST, url, json=envelope(task={"taskId": "T2"}))
    assert client.start_task("imports", "112000000001") == "T2"  # 503: not processed, safe to repeat


def test_while_another_refreshes_the_current_token_is_used(clock: FakeClock) -> None:
    cache = InMemoryTokenCache(clock=clock)
    cache.put(
        "k", CachedToken(value="current", expires_at=int((clock() + 120) * 1000)), 120
    )  # inside the margin
    cache.try_lock("k#lock", "other", 60)

    class Authn:
        principal = "p"

        def authenticate(self, session: requests.Session) -> CachedToken:
            raise AssertionError("must not mint while another caller refreshes")

        refresh = authenticate

    mgr = TokenManager(Authn(), requests.Session(), cache, "k", clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    assert mgr.token() == "current"
    assert clock.sleeps == []
