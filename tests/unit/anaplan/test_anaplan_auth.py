from __future__ import annotations

import base64
import json
import struct

import pytest
import requests
import responses
from anaplan_unit_support import AUTH, MP, OAUTH, FakeClock, add_auth, auth_body, envelope
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from d365_anaplan.anaplan.authenticators import (
    BasicAuthenticator,
    CertificateAuthenticator,
    DeviceGrantAuthenticator,
)
from d365_anaplan.anaplan.device import poll_device_token, start_device_authorization
from d365_anaplan.anaplan.models import DeviceCode
from d365_anaplan.anaplan.token_manager import TokenManager
from d365_anaplan.anaplan.tokens import CachedToken, InMemoryTokenCache
from d365_anaplan.errors import AnaplanAuthError


@pytest.fixture(scope="module")
def cert_pair() -> tuple[bytes, bytes]:
    import trustme

    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    leaf = ca.issue_cert("integration.example.com", key_type=trustme.KeyType.RSA)
    return leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes()


def test_basic_authenticate_sends_basic_header_and_parses_201(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    add_auth(rsps, clock, "abc")
    token = BasicAuthenticator(AUTH, "u@example.com", "secret", clock=clock).authenticate(requests.Session())
    sent = rsps.calls[0].request.headers["Authorization"]
    assert sent == "Basic " + base64.b64encode(b"u@example.com:secret").decode()
    assert token.value == "abc"
    assert token.expires_at == int((clock() + 2100) * 1000)


def test_basic_bad_credentials_message_has_no_password(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    rsps.add(
        responses.POST,
        f"{AUTH}/token/authenticate",
        status=401,
        json={"status": "FAILURE_BAD_CREDENTIAL", "statusMessage": "Invalid credentials"},
    )
    with pytest.raises(AnaplanAuthError) as err:
        BasicAuthenticator(AUTH, "u@example.com", "s3cr3t-pw", clock=clock).authenticate(requests.Session())
    assert "FAILURE_BAD_CREDENTIAL" in str(err.value)
    assert "/token/authenticate" in str(err.value)
    assert "s3cr3t-pw" not in str(err.value)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_certificate_payload_is_signed_and_fresh(
    rsps: responses.RequestsMock, clock: FakeClock, cert_pair: tuple[bytes, bytes], version: str
) -> None:
    cert_pem, key_pem = cert_pair
    add_auth(rsps, clock)
    add_auth(rsps, clock)
    authn = CertificateAuthenticator(AUTH, cert_pem, key_pem, payload=version, clock=clock)  # type: ignore[arg-type]
    authn.authenticate(requests.Session())
    authn.authenticate(requests.Session())
    public = x509.load_pem_x509_certificate(cert_pem).public_key()
    assert isinstance(public, RSAPublicKey)
    bodies = []
    for call in rsps.calls:
        assert call.request.headers["Authorization"] == "CACertificate " + base64.b64encode(cert_pem).decode()
        body = json.loads(call.request.body)
        data = base64.b64decode(body["encodedData"])
        public.verify(base64.b64decode(body["encodedSignedData"]), data, padding.PKCS1v15(), hashes.SHA512())
        if version == "v2":
            assert body["encodedDataFormat"] == "v2"
            (stamp,) = struct.unpack(">Q", data[:8])
            assert stamp == int(clock())
            assert len(data) >= 108
        else:
            assert "encodedDataFormat" not in body
            assert len(data) >= 100
        bodies.append(body["encodedData"])
    assert bodies[0] != bodies[1]  # a fresh payload per request


def test_certificate_signature_fails_with_other_key(cert_pair: tuple[bytes, bytes], clock: FakeClock) -> None:
    from d365_anaplan.anaplan.authenticators import certificate_payload

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = certificate_payload(other, clock=clock)
    public = x509.load_pem_x509_certificate(cert_pair[0]).public_key()
    assert isinstance(public, RSAPublicKey)
    with pytest.raises(InvalidSignature):
        public.verify(
            base64.b64decode(body["encodedSignedData"]),
            base64.b64decode(body["encodedData"]),
            padding.PKCS1v15(),
            hashes.SHA512(),
        )


def test_token_reused_then_refreshed_ahead_of_expiry(
    rsps: responses.RequestsMock, clock: FakeClock, make_client
) -> None:  # type: ignore[no-untyped-def]
    add_auth(rsps, clock, "tok-1")
    rsps.add(responses.GET, f"{MP}/imports", json=envelope(imports=[]))
    client = make_client()
    client.transport.pages(f"{client.model_path}/imports", "imports", call="c", obj="o")
    client.forget_catalogue()
    client.transport.pages(f"{client.model_path}/imports", "imports", call="c", obj="o")
    assert client.tokens.minted == 1
    clock.now += 31 * 60  # 4 minutes left: inside the refresh margin
    rsps.add(
        responses.POST,
        f"{AUTH}/token/refresh",
        json=auth_body("tok-1", clock() + 2100, "Token refreshed"),
        status=200,
    )
    client.transport.pages(f"{client.model_path}/imports", "imports", call="c", obj="o")
    refresh = [c for c in rsps.calls if c.request.url.endswith("/token/refresh")]
    assert len(refresh) == 1
    assert refresh[0].request.headers["Authorization"] == "AnaplanAuthToken tok-1"
    assert client.tokens.minted == 1 and client.tokens.refreshed == 1
    # in steady state: 2 hours of calls every minute mint no further token
    for _ in range(120):
        clock.now += 60
        rsps.replace(
            responses.POST,
            f"{AUTH}/token/refresh",
            json=auth_body("tok-1", clock() + 2100, "Token refreshed"),
            status=200,
        )
        client.transport.pages(f"{client.model_path}/imports", "imports", call="c", obj="o")
    assert client.tokens.minted == 1


def test_token_shared_across_clients_via_cache(
    rsps: responses.RequestsMock, clock: FakeClock, make_client
) -> None:  # type: ignore[no-untyped-def]
    add_auth(rsps, clock)
    rsps.add(responses.GET, f"{MP}/imports", json=envelope(imports=[]))
    cache = InMemoryTokenCache(clock=clock)
    for _ in range(3):  # three "Lambdas" of one run
        make_client(token_cache=cache).find_import.__self__._catalogue("imports")
    assert len([c for c in rsps.calls if c.request.url.endswith("/token/authenticate")]) == 1


def test_401_reauthenticates_once_and_replays(
    rsps: responses.RequestsMock, clock: FakeClock, make_client
) -> None:  # type: ignore[no-untyped-def]
    add_auth(rsps, clock, "tok-1")
    add_auth(rsps, clock, "tok-2")
    rsps.add(
        responses.GET, f"{MP}/imports", status=401, json={"status": {"code": 401, "message": "Unauthorized"}}
    )
    rsps.add(
        responses.GET,
        f"{MP}/imports",
        json=envelope(imports=[{"id": "112000000001", "name": "Load Accounts"}]),
    )
    client = make_client()
    assert client.find_import("Load Accounts").id == "112000000001"
    api = [c for c in rsps.calls if "/imports" in c.request.url]
    assert [c.request.headers["Authorization"] for c in api] == [
        "AnaplanAuthToken tok-1",
        "AnaplanAuthToken tok-2",
    ]


def test_second_401_is_an_auth_error(rsps: responses.RequestsMock, clock: FakeClock, make_client) -> None:  # type: ignore[no-untyped-def]
    add_auth(rsps, clock, "tok-1")
    add_auth(rsps, clock, "tok-2")
    rsps.add(
        responses.GET, f"{MP}/imports", status=401, json={"status": {"code": 401, "message": "Unauthorized"}}
    )
    with pytest.raises(AnaplanAuthError, match=r"GET /workspaces/.*/imports .*HTTP 401.*Unauthorized"):
        make_client().find_import("x")
    assert len([c for c in rsps.calls if "/imports" in c.request.url]) == 2


def test_refresh_waits_for_the_lock_holder(clock: FakeClock) -> None:
    cache = InMemoryTokenCache(clock=clock)
    calls: list[str] = []

    class Authn:
        principal = "p"

        def authenticate(self, session: requests.Session) -> CachedToken:
            calls.append("mint")
            return CachedToken(value="mine", expires_at=int((clock() + 2100) * 1000))

        def refresh(self, session: requests.Session, token: CachedToken) -> CachedToken:
            calls.append("refresh")
            return token

    cache.try_lock("k#lock", "other", 60)
    other_token = CachedToken(value="theirs", expires_at=int((clock() + 2100) * 1000))

    def sleeper(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 3:  # the other caller finishes its refresh
            cache.put("k", other_token, 2000)
            cache.unlock("k#lock", "other")

    mgr = TokenManager(Authn(), requests.Session(), cache, "k", clock=clock, sleep=sleeper)  # type: ignore[arg-type]
    assert mgr.token() == "theirs"
    assert calls == []  # nobody refreshed twice


def test_device_grant_persists_rotated_refresh_token_before_use(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    events: list[str] = []

    class Store:
        value = "rt-1"

        def load(self) -> str:
            events.append("load")
            return self.value

        def save(self, value: str) -> None:
            events.append(f"save:{value}")
            self.value = value

    rsps.add(
        responses.POST,
        f"{OAUTH}/oauth/token",
        json={"access_token": "at-1", "refresh_token": "rt-2", "expires_in": 2100, "token_type": "Bearer"},
    )
    store = Store()
    token = DeviceGrantAuthenticator(OAUTH, "a" * 32, store, clock=clock).authenticate(requests.Session())
    events.append("use")
    body = json.loads(rsps.calls[0].request.body)
    assert body == {"grant_type": "refresh_token", "client_id": "a" * 32, "refresh_token": "rt-1"}
    assert events == ["load", "save:rt-2", "use"]
    assert token.value == "at-1" and store.value == "rt-2"


def test_device_grant_refused_refresh_token(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    class Store:
        def load(self) -> str:
            return "rt-old"

        def save(self, value: str) -> None:
            raise AssertionError("must not save")

    rsps.add(
        responses.POST,
        f"{OAUTH}/oauth/token",
        status=403,
        json={"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."},
    )
    with pytest.raises(AnaplanAuthError, match="invalid_grant") as err:
        DeviceGrantAuthenticator(OAUTH, "a" * 32, Store(), clock=clock).authenticate(requests.Session())
    assert "rt-old" not in str(err.value)


def _code(interval: int = 5, expires_in: int = 900) -> DeviceCode:
    return DeviceCode(
        device_code="dc",
        user_code="ABCD-EFGH",
        verification_uri="https://x/activate",
        expires_in=expires_in,
        interval=interval,
    )


def test_device_flow_start(rsps: responses.RequestsMock) -> None:
    rsps.add(
        responses.POST,
        f"{OAUTH}/oauth/device/code",
        json={
            "device_code": "dc",
            "user_code": "ABCD-EFGH",
            "verification_uri": "https://iam.example/activate",
            "verification_uri_complete": "https://iam.example/activate?user_code=ABCD-EFGH",
            "expires_in": 900,
            "interval": 5,
        },
    )
    code = start_device_authorization(requests.Session(), OAUTH, "b" * 32)
    assert code.user_code == "ABCD-EFGH" and code.interval == 5
    assert json.loads(rsps.calls[0].request.body)["scope"] == "openid profile email offline_access"


def test_device_flow_polls_pending_and_slows_down(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    url = f"{OAUTH}/oauth/token"
    rsps.add(
        responses.POST,
        url,
        status=403,
        json={"error": "authorization_pending", "error_description": "pending"},
    )
    rsps.add(responses.POST, url, status=429, json={"error": "slow_down", "error_description": "slow"})
    rsps.add(
        responses.POST,
        url,
        status=403,
        json={"error": "authorization_pending", "error_description": "pending"},
    )
    rsps.add(responses.POST, url, json={"access_token": "at", "refresh_token": "rt", "expires_in": 2100})
    tokens = poll_device_token(requests.Session(), OAUTH, "c" * 32, _code(), sleep=clock.sleep, clock=clock)
    assert tokens.refresh_token == "rt"
    assert clock.sleeps == [5, 5, 10, 10]
    body = json.loads(rsps.calls[0].request.body)
    assert body["grant_type"] == "urn:ietf:params:oauth:grant-type:device_code"


def test_device_flow_expired(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(
        responses.POST,
        f"{OAUTH}/oauth/token",
        status=400,
        json={"error": "expired_token", "error_description": "x"},
    )
    with pytest.raises(AnaplanAuthError, match="expired"):
        poll_device_token(requests.Session(), OAUTH, "c" * 32, _code(), sleep=clock.sleep, clock=clock)


def test_device_flow_gives_up_at_expiry(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(
        responses.POST,
        f"{OAUTH}/oauth/token",
        status=403,
        json={"error": "authorization_pending", "error_description": "p"},
    )
    with pytest.raises(AnaplanAuthError, match="expired"):
        poll_device_token(
            requests.Session(),
            OAUTH,
            "c" * 32,
            _code(interval=5, expires_in=30),
            sleep=clock.sleep,
            clock=clock,
        )
    assert sum(clock.sleeps) <= 30
