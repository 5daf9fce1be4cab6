"""msal's real client-credentials flow against the sandbox over HTTPS (dynamics-fo.md §1)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from d365_anaplan.dynamics.client import DynamicsConnection
from d365_anaplan.errors import DynamicsAuthError
from devkit.sandbox.dynamics.cli import RunningSandbox

pytestmark = pytest.mark.integration


def rsa_certificate(cn: str = "fo-connector") -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_secret_flow_reads_and_caches_the_token(
    sandbox: RunningSandbox, connect_to: Callable[..., DynamicsConnection]
) -> None:
    conn = connect_to(sandbox)
    assert conn.reader.discover().route.value == "bi"
    assert len(list(conn.reader.main_accounts())) > 100
    conn.reader.legal_entities()
    assert sandbox.app.counters["POST /oauth2/token"] == 1  # one token for many calls
    assert (
        sandbox.app.counters["GET /openid-configuration"] == 1
    )  # msal's tenant discovery on the sandbox authority
    assert conn.tokens.requests_made == 1


def test_certificate_flow_with_signed_client_assertion(
    make_sandbox: Callable[..., RunningSandbox], connect_to: Callable[..., DynamicsConnection]
) -> None:
    cert, key = rsa_certificate()
    sb = make_sandbox(client_certificates=[cert])
    conn = connect_to(
        sb,
        dynamics={"client_secret": None, "certificate": {"cert_pem": cert.decode(), "key_pem": key.decode()}},
    )
    assert [e.company for e in conn.reader.legal_entities()] == ["USMF", "DEMF"]
    conn.tokens.invalidate()  # a second token request (msal may reuse its signed assertion)
    assert len(conn.reader.legal_entities()) == 2
    assert sb.app.counters["POST /oauth2/token"] == 2


def test_unregistered_certificate_is_refused(
    make_sandbox: Callable[..., RunningSandbox], connect_to: Callable[..., DynamicsConnection]
) -> None:
    registered, _ = rsa_certificate("registered")
    other_cert, other_key = rsa_certificate("other")
    sb = make_sandbox(client_certificates=[registered])
    conn = connect_to(
        sb,
        dynamics={
            "client_secret": None,
            "certificate": {"cert_pem": other_cert.decode(), "key_pem": other_key.decode()},
        },
    )
    with pytest.raises(DynamicsAuthError, match="AADSTS700027") as exc:
        conn.reader.legal_entities()
    assert "certificate" in str(exc.value)


def test_wrong_secret_is_explained_without_the_secret(
    sandbox: RunningSandbox, connect_to: Callable[..., DynamicsConnection]
) -> None:
    conn = connect_to(sandbox, dynamics={"client_secret": "definitely-wrong-secret"})
    with pytest.raises(DynamicsAuthError) as exc:
        conn.reader.legal_entities()
    text = str(exc.value)
    assert "invalid_client" in text and "AADSTS7000215" in text and "secret is wrong" in text
    assert "definitely-wrong-secret" not in text and sandbox.app.config.client_secret not in text


def test_unknown_tenant(sandbox: RunningSandbox, connect_to: Callable[..., DynamicsConnection]) -> None:
    conn = connect_to(sandbox, dynamics={"tenant_id": "00000000-0000-0000-0000-000000000000"})
    with pytest.raises(DynamicsAuthError, match="authority"):
        conn.reader.legal_entities()


def test_app_not_registered_in_fo_gives_explained_401(
    make_sandbox: Callable[..., RunningSandbox], connect_to: Callable[..., DynamicsConnection]
) -> None:
    sb = make_sandbox(registered_in_fo=False)
    conn = connect_to(sb)
    with pytest.raises(DynamicsAuthError) as exc:
        conn.reader.legal_entities()
    assert "Microsoft Entra applications" in str(exc.value) and "not registered" in str(exc.value)
    assert sb.app.counters["GET /data/LegalEntities"] == 2  # one retry with a fresh token, then explained
    assert sb.app.counters["POST /oauth2/token"] == 2


def test_token_expired_at_fo_is_renewed_transparently(
    sandbox: RunningSandbox, connect_to: Callable[..., DynamicsConnection]
) -> None:
    conn = connect_to(sandbox)
    conn.reader.legal_entities()
    sandbox.app.inject("expire_token", path_contains="/data/MainAccounts")
    assert len(list(conn.reader.main_accounts())) > 100
    assert sandbox.app.counters["POST /oauth2/token"] == 2
    assert sandbox.app.counters["401"] == 1


def test_short_lived_token_is_requested_again_before_expiry(
    make_sandbox: Callable[..., RunningSandbox], connect_to: Callable[..., DynamicsConnection]
) -> None:
    sb = make_sandbox(token_lifetime=301)  # inside the 300 s renewal margin after one second
    conn = connect_to(sb)
    conn.reader.legal_entities()
    conn.tokens._clock = lambda: 10**12  # far in the future: the cached token is past its margin
    conn.reader.legal_entities()
    assert sb.app.counters["POST /oauth2/token"] == 2
