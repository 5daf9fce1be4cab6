"""No secret in a repr; trust-store files never taken over from someone else's file in the shared temp
folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import certifi
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sec_support import SECRET

from d365_anaplan import http
from d365_anaplan.anaplan.authenticators import (
    BasicAuthenticator,
    CertificateAuthenticator,
    DeviceGrantAuthenticator,
)
from d365_anaplan.dynamics.auth import Credential
from devkit.sandbox.tls import SandboxCA


def test_credential_repr_hides_the_secret_and_the_key() -> None:
    assert SECRET not in repr(Credential(client_secret=SECRET))
    assert SECRET not in str(Credential(client_secret=SECRET))
    assert SECRET not in repr(Credential(private_key_pem=SECRET, certificate_pem="cert"))


def test_anaplan_authenticators_repr_hides_credentials() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    store = type("Store", (), {"load": lambda self: SECRET, "save": lambda self, v: None})()
    for auth in (
        BasicAuthenticator("https://auth.anaplan.com", "user", SECRET),
        CertificateAuthenticator("https://auth.anaplan.com", b"cert", pem),
        DeviceGrantAuthenticator("https://us1a.app.anaplan.com", "c1", store),
    ):
        assert SECRET not in repr(auth)
        assert pem.decode() not in repr(auth)


@pytest.fixture
def fresh_trust_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    monkeypatch.setattr(http, "_private_dir", None)
    return shared


def expected_bundle(ca: SandboxCA) -> bytes:
    return Path(certifi.where()).read_bytes() + b"\n" + Path(ca.ca_bundle).read_bytes()


def old_layout_name(ca: SandboxCA) -> str:
    """Where the trust store used to live: the shared temp folder, named by a digest anyone can compute."""
    import hashlib

    digest = hashlib.sha256(Path(certifi.where()).read_bytes() + Path(ca.ca_bundle).read_bytes())
    return f"d365-anaplan-trust-{digest.hexdigest()[:16]}.pem"


def test_trust_store_planted_by_someone_else_is_not_trusted(fresh_trust_dir: Path, ca: SandboxCA) -> None:
    import hashlib

    content = expected_bundle(ca)
    digest = hashlib.sha256(content).hexdigest()[:16]
    planted = b"-----BEGIN CERTIFICATE-----\nattacker\n-----END CERTIFICATE-----\n"
    # where an older layout put it, and where the private layout would put it
    (fresh_trust_dir / old_layout_name(ca)).write_bytes(planted)
    private = fresh_trust_dir / f"d365-anaplan-{os.getuid()}"
    private.mkdir(mode=0o700)
    (private / f"trust-{digest}.pem").write_bytes(planted)
    path = Path(http.trust_store(str(ca.ca_bundle)))
    assert path.read_bytes() == content
    assert path.stat().st_mode & 0o077 == 0
    assert path.parent.stat().st_mode & 0o077 == 0


def test_a_shared_directory_others_can_write_is_not_used(fresh_trust_dir: Path, ca: SandboxCA) -> None:
    loose = fresh_trust_dir / f"d365-anaplan-{os.getuid()}"
    loose.mkdir()
    loose.chmod(0o777)
    path = Path(http.trust_store(str(ca.ca_bundle)))
    assert path.parent != loose
    assert path.parent.stat().st_mode & 0o077 == 0
    assert path.read_bytes() == expected_bundle(ca)


def test_a_symlink_in_place_of_the_trust_store_is_not_followed(fresh_trust_dir: Path, ca: SandboxCA) -> None:
    import hashlib

    content = expected_bundle(ca)
    private = fresh_trust_dir / f"d365-anaplan-{os.getuid()}"
    private.mkdir(mode=0o700)
    elsewhere = fresh_trust_dir / "elsewhere.pem"
    elsewhere.write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()[:16]
    # someone else's link (today right, tomorrow whatever they write), in either layout
    (private / f"trust-{digest}.pem").symlink_to(elsewhere)
    (fresh_trust_dir / old_layout_name(ca)).symlink_to(elsewhere)
    path = Path(http.trust_store(str(ca.ca_bundle)))
    assert not path.is_symlink()
    assert path.read_bytes() == content
