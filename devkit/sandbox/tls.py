"""A throwaway certificate authority for the sandboxes (msal and our clients only talk https).

The CA and the server certificate are generated with ``trustme``; the CA's PEM is written to a file that a
client names in ``tls.ca_bundle``. Verification stays on everywhere: the client trusts this CA explicitly.
"""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import trustme


@dataclass
class SandboxCA:
    """One CA for every sandbox of a process; ``ca_bundle`` is the file clients trust."""

    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="d365-anaplan-ca-")))
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._ca = trustme.CA(organization_name="d365-anaplan sandbox CA (throwaway)")
        self._leaf = self._ca.issue_cert(*self.hosts)
        self.ca_bundle = self.directory / "sandbox-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_bundle))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._leaf.configure_cert(ctx)
        return ctx

    def issue_client_cert(self, common_name: str) -> tuple[bytes, bytes]:
        """(cert PEM, key PEM) of a client certificate signed by this CA (e.g. for Anaplan CA auth)."""
        leaf = self._ca.issue_cert(common_name)
        return leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes()

    @property
    def ca_pem(self) -> bytes:
        return self._ca.cert_pem.bytes()


_default: SandboxCA | None = None


def default_ca() -> SandboxCA:
    """The process-wide sandbox CA (created on first use)."""
    global _default
    if _default is None:
        _default = SandboxCA()
    return _default
