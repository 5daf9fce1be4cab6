"""Auth modes, token handling, limits and every injected fault, over real HTTPS."""

from __future__ import annotations

import base64
import io
import json

import pytest
import requests
from anaplan_it_support import SharedClock, make_client

from d365_anaplan.anaplan.authenticators import CertificateAuthenticator, certificate_payload
from d365_anaplan.anaplan.models import Outcome
from d365_anaplan.anaplan.tokens import InMemoryTokenCache
from d365_anaplan.errors import (
    AnaplanAuthError,
    AnaplanModelArchived,
    AnaplanModelBusy,
    AnaplanModelLocked,
    AnaplanThrottled,
    AnaplanUnavailable,
)
from d365_anaplan.http import VerifiedSession
from devkit.sandbox.anaplan.harness import RunningSandbox

pytestmark = pytest.mark.integration


def big_accounts_file(n: int = 40_000) -> bytes:
    return b"Code,Name\n" + b"".join(
        f"9{i:05d},Account {i} with a longer descriptive name\n".encode() for i in range(n)
    )


# --- auth --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", ["v1", "v2"])
def test_certificate_auth(sandbox: RunningSandbox, clock: SharedClock, payload: str) -> None:
    client = make_client(sandbox, clock, mode="certificate", payload=payload)
    assert client.find_import("Load Accounts").id.startswith("112")
    assert sandbox.app.counters[f"certificate_{payload}"] == 1


def test_certificate_wrong_key_and_replay_refused(sandbox: RunningSandbox, clock: SharedClock) -> None:
    import trustme

    other = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert("x", key_type=trustme.KeyType.RSA)
    authn = CertificateAuthenticator(
        sandbox.auth_url, sandbox.cert_path.read_bytes(), other.private_key_pem.bytes(), clock=clock
    )
    session = VerifiedSession(ca_bundle=sandbox.ca_bundle)
    with pytest.raises(AnaplanAuthError, match="FAILURE_BAD_CREDENTIAL"):
        authn.authenticate(session)
    # a replayed (valid) payload is refused
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(sandbox.key_path.read_bytes(), password=None)
    body = certificate_payload(key, clock=clock)  # type: ignore[arg-type]
    header = {"Authorization": "CACertificate " + base64.b64encode(sandbox.cert_path.read_bytes()).decode()}
    first = session.post(f"{sandbox.auth_url}/token/authenticate", json=body, headers=header)
    again = session.post(f"{sandbox.auth_url}/token/authenticate", json=body, headers=header)
    assert (first.status_code, again.status_code) == (201, 401)
    # a stale v2 timestamp is refused
    clock.advance(-3600)
    stale = certificate_payload(key, clock=clock)  # type: ignore[arg-type]
    clock.advance(3600)
    assert (
        session.post(f"{sandbox.auth_url}/token/authenticate", json=stale, headers=header).status_code == 401
    )


def test_basic_bad_password(sandbox: RunningSandbox, clock: SharedClock) -> None:
    sandbox.password = "wrong"
    client = make_client(sandbox, clock)
    with pytest.raises(AnaplanAuthError, match=r"/token/authenticate.*401.*FAILURE_BAD_CREDENTIAL") as err:
        client.find_import("Load Accounts")
    assert "wrong" not in str(err.value)


def test_api_requires_token(sandbox: RunningSandbox) -> None:
    session = VerifiedSession(ca_bundle=sandbox.ca_bundle)
    url = f"{sandbox.api_url}/workspaces/{sandbox.app.seed.workspace_id}/models/{sandbox.app.seed.model_id}/imports"
    assert session.get(url).status_code == 401
    assert session.get(url, headers={"Authorization": "AnaplanAuthToken nope"}).status_code == 401
    # each host answers only its own paths
    assert session.get(f"{sandbox.auth_url}/2/0/workspaces").status_code == 404


def test_token_reused_refreshed_and_few_minted(sandbox: RunningSandbox, clock: SharedClock) -> None:
    cache = InMemoryTokenCache(clock=clock)
    clients = [make_client(sandbox, clock, token_cache=cache) for _ in range(3)]  # three Lambdas of a run
    for _ in range(24):  # two hours, a call every 5 minutes from each
        for c in clients:
            c.forget_catalogue()
            c.find_import("Load Accounts")
        clock.advance(300)
    assert sandbox.app.counters["tokens_minted"] == 1
    assert sandbox.app.counters["tokens_refreshed"] >= 3
    assert sandbox.app.counters["unauthorized"] == 0


def test_token_expiry_fault_reauthenticates_once(sandbox: RunningSandbox, clock: SharedClock) -> None:
    client = make_client(sandbox, clock)
    client.find_import("Load Accounts")
    sandbox.app.expire_tokens()
    client.forget_catalogue()
    client.find_import("Load Accounts")
    assert sandbox.app.counters["unauthorized"] == 1
    assert sandbox.app.counters["tokens_minted"] == 2


def test_token_expires_server_side_401_then_refresh_refused(
    sandbox: RunningSandbox, clock: SharedClock
) -> None:
    client = make_client(sandbox, clock)
    client.find_import("Load Accounts")
    token = client.tokens.token()
    clock.advance(2101)
    session = VerifiedSession(ca_bundle=sandbox.ca_bundle)
    refresh = session.post(
        f"{sandbox.auth_url}/token/refresh", headers={"Authorization": f"AnaplanAuthToken {token}"}
    )
    assert refresh.status_code == 401
    client.forget_catalogue()
    client.find_import("Load Accounts")  # client notices expiry itself and mints
    assert sandbox.app.counters["tokens_minted"] == 2


# --- limits and retries ------------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", ["3", None])
def test_429_burst(sandbox: RunningSandbox, clock: SharedClock, retry_after: str | None) -> None:
    client = make_client(sandbox, clock)
    sandbox.app.faults.fail("/imports", 429, count=3, retry_after=retry_after)
    assert client.find_import("Load Accounts")
    waits = [s for s in clock.sleeps if s >= 1]
    assert len(waits) == 3
    if retry_after:
        assert waits == [3.0, 3.0, 3.0]
    sandbox.app.faults.fail("/imports", 429, count=10, retry_after=retry_after)
    client.forget_catalogue()
    with pytest.raises(AnaplanThrottled, match="429 after 5 attempts"):
        client.find_import("Load Accounts")


def test_5xx_retried_then_unavailable(sandbox: RunningSandbox, clock: SharedClock) -> None:
    client = make_client(sandbox, clock)
    sandbox.app.faults.fail("/exports", 503, count=2)
    assert client.find_export("Export Approved Budget")
    sandbox.app.faults.fail("/processes", 500, count=10, message="Internal error")
    with pytest.raises(AnaplanUnavailable, match="HTTP 500 after 5 attempts; Anaplan said: Internal error"):
        client.find_process("Load Master Data")


def test_dropped_connection_mid_chunk_retries_that_chunk(sandbox: RunningSandbox, clock: SharedClock) -> None:
    client = make_client(sandbox, clock)
    data = big_accounts_file()
    sandbox.app.faults.drop("/chunks/1", method="PUT")
    sandbox.app.faults.fail("/chunks/2", 502, method="PUT")
    result = client.upload_for_import("Load Accounts", io.BytesIO(data), chunk_size_mb=1)
    assert result.chunks == 3
    assert sandbox.app.counters["chunks_received"] == 3  # each stored once
    assert sandbox.app.counters["fault drop"] == 1 and sandbox.app.counters["fault 502"] == 1
    chunk_puts = [h for h in sandbox.app.seen_headers if h["method"] == "PUT" and "/chunks/" in h["path"]]
    assert [h["path"].rsplit("/", 1)[1] for h in chunk_puts] == ["0", "1", "1", "2", "2"]
    import_id, task_id = client.start_import("Load Accounts")
    assert client.wait_for_task("imports", import_id, task_id).counts.created == 40_000


def test_client_limiter_stays_under_tenant_limit(sandbox: RunningSandbox, clock: SharedClock) -> None:
    from d365_anaplan.anaplan.limits import RateLimiter

    limiter = RateLimiter(
        540, clock=clock, sleep=clock.advance
    )  # the configured default; sandbox enforces 600/min
    client = make_client(sandbox, clock, limiter=limiter)
    imp = client.find_import("Load Accounts")
    for _ in range(650):
        client.import_metadata(imp.id)
    assert sandbox.app.counters["rate_limited"] == 0
    assert client.limiter.waited > 60


def test_tenant_rate_limit_answers_429_with_retry_after(sandbox: RunningSandbox, clock: SharedClock) -> None:
    client = make_client(sandbox, clock, settings={"requests_per_minute": 600})
    sandbox.app.bucket.tokens = 2  # type: ignore[union-attr]  # a nearly empty tenant bucket
    imp = client.find_import("Load Accounts")
    for _ in range(20):
        client.import_metadata(imp.id)
    assert sandbox.app.counters["rate_limited"] >= 1
    assert client.retries >= 1


# --- model state -------------------------------------------------------------------------------------


def test_busy_locked_archived(sandbox: RunningSandbox, clock: SharedClock) -> None:
    client = make_client(sandbox, clock)
    imp = client.find_import("Load Accounts")
    sandbox.app.faults.busy()
    with pytest.raises(
        AnaplanModelBusy,
        match=r"imports/112\d+/tasks \(import 112\d+\): HTTP 409; Anaplan said: The model is busy",
    ):
        client.start_task("imports", imp.id)
    sandbox.app.model_state = "LOCKED"
    with pytest.raises(AnaplanModelLocked, match="HTTP 423"):
        client.start_task("imports", imp.id)
    sandbox.app.model_state = "ARCHIVED"
    with pytest.raises(AnaplanModelArchived, match="HTTP 422; Anaplan said: Model archived"):
        client.import_metadata(imp.id)


def test_failed_import_with_dump(sandbox: RunningSandbox, clock: SharedClock) -> None:
    client = make_client(sandbox, clock)
    client.upload_for_import("Load Cost Centres", [b"Code,Name\nOU_7000,Plant 7\n"])
    sandbox.app.faults.fail_next_import()
    import_id, task_id = client.start_import("Load Cost Centres")
    check = client.wait_for_task("imports", import_id, task_id)
    assert check.outcome is Outcome.FAILED and check.failure_dump_available
    out = io.BytesIO()
    assert client.download_dump(import_id, task_id, out) > 0
    assert b"_Error_1_" in out.getvalue()


def test_device_grant_against_sandbox(sandbox: RunningSandbox, clock: SharedClock) -> None:
    from d365_anaplan.anaplan.authenticators import DeviceGrantAuthenticator
    from d365_anaplan.anaplan.device import poll_device_token, start_device_authorization

    session = VerifiedSession(ca_bundle=sandbox.ca_bundle)
    code = start_device_authorization(session, sandbox.oauth_url, sandbox.client_id)
    assert code.verification_uri.startswith(sandbox.oauth_url)
    sandbox.app.device_auto_approve_after = None
    waits: list[str] = []

    def nap(seconds: float) -> None:
        clock.sleep(seconds)
        if len(waits) == 2:  # the user approves in the browser after two polls
            assert (
                requests.get(
                    code.verification_uri_complete or "", verify=sandbox.ca_bundle, timeout=5
                ).status_code
                == 200
            )

    early = session.post(
        f"{sandbox.oauth_url}/oauth/token",
        json={
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": code.device_code,
            "client_id": sandbox.client_id,
        },
    )
    assert early.json()["error"] == "authorization_pending"
    tokens = poll_device_token(
        session,
        sandbox.oauth_url,
        sandbox.client_id,
        code,
        sleep=nap,
        clock=clock,
        on_wait=lambda e, i: waits.append(e),
    )
    assert tokens.refresh_token
    assert "slow_down" not in waits  # polled at the server's interval

    class Store:
        value = tokens.refresh_token or ""

        def load(self) -> str:
            return self.value

        def save(self, value: str) -> None:
            self.value = value

    store = Store()
    authn = DeviceGrantAuthenticator(sandbox.oauth_url, sandbox.client_id, store, clock=clock)
    first = authn.authenticate(session)
    rotated = store.value
    assert rotated != tokens.refresh_token  # rotating client
    old = session.post(
        f"{sandbox.oauth_url}/oauth/token",
        json={
            "grant_type": "refresh_token",
            "client_id": sandbox.client_id,
            "refresh_token": tokens.refresh_token,
        },
    )
    assert old.status_code == 403 and old.json()["error"] == "invalid_grant"
    url = f"{sandbox.api_url}/workspaces/{sandbox.app.seed.workspace_id}/models/{sandbox.app.seed.model_id}/imports"
    assert session.get(url, headers={"Authorization": f"AnaplanAuthToken {first.value}"}).status_code == 200


def test_device_poll_too_fast_gets_slow_down(sandbox: RunningSandbox, clock: SharedClock) -> None:
    session = VerifiedSession(ca_bundle=sandbox.ca_bundle)
    from d365_anaplan.anaplan.device import start_device_authorization

    code = start_device_authorization(session, sandbox.oauth_url, sandbox.client_id)
    body = {
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "device_code": code.device_code,
        "client_id": sandbox.client_id,
    }
    answers = [
        json.loads(session.post(f"{sandbox.oauth_url}/oauth/token", json=body).text)["error"]
        for _ in range(2)
    ]
    assert answers == ["authorization_pending", "slow_down"]
    clock.advance(900)
    assert session.post(f"{sandbox.oauth_url}/oauth/token", json=body).json()["error"] == "expired_token"


def test_admin_endpoint_injects_faults_and_reports_counters(
    sandbox: RunningSandbox, clock: SharedClock
) -> None:
    admin = VerifiedSession(ca_bundle=sandbox.ca_bundle)
    base = sandbox.servers["api"].base_url
    ok = admin.post(
        f"{base}/_sandbox/faults", json={"kind": "fail", "match": "/exports", "status": 503, "count": 1}
    )
    assert ok.status_code == 204
    assert admin.post(f"{base}/_sandbox/faults", json={"kind": "nonsense"}).status_code == 400
    client = make_client(sandbox, clock)
    client.find_export("Export Approved Budget")
    counters = admin.get(f"{base}/_sandbox/counters").json()
    assert counters["fault 503"] == 1 and counters["tokens_minted"] == 1
    admin.post(f"{base}/_sandbox/faults", json={"kind": "model_state", "state": "LOCKED"})
    with pytest.raises(AnaplanModelLocked):
        client.start_task("imports", client.find_import("Load Accounts").id)
