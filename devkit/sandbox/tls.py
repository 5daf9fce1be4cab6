"""Certificate authorities for the sandboxes (msal and our clients only talk https).

The CA and the server certificate are generated with ``trustme``; the CA's PEM is written to a file that a
client names in ``tls.ca_bundle``. Verification stays on everywhere: the client trusts this CA explicitly.

* :class:`SandboxCA` - a throwaway CA for one process (tests, the demo). Its temporary folder is removed
  when the CA is garbage-collected or the process exits, so nothing is left behind in ``$TMPDIR``.
* :class:`PersistentCA` - a CA whose key lives in a directory, so every process that names the directory
  (``sandbox anaplan`` and ``sandbox dynamics`` both default to :data:`SHARED_CA_DIR`) serves certificates
  from the same trust anchor, and one ``tls.ca_bundle`` reaches both sandboxes across restarts.
"""

from __future__ import annotations

import shutil
import ssl
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import trustme

# Where ``sandbox anaplan`` and ``sandbox dynamics`` keep their common CA unless told otherwise (--ca-dir).
SHARED_CA_DIR = Path.home() / ".cache" / "d365-anaplan" / "sandbox-ca"
_ORG = "d365-anaplan sandbox CA (throwaway)"


@dataclass
class SandboxCA:
    """One CA for every sandbox of a process; ``ca_bundle`` is the file clients trust.

    Without ``directory`` the CA lives in a temporary folder that is removed again with the CA."""

    directory: Path | None = None
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
    _owned: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="d365-anaplan-ca-"))
            self._owned = True
            weakref.finalize(self, shutil.rmtree, str(self.directory), True)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._ca = self._load_or_create(self.directory)
        self._leaf = self._ca.issue_cert(*self.hosts)
        self.ca_bundle = self.directory / "sandbox-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_bundle))

    def _load_or_create(self, directory: Path) -> trustme.CA:
        return trustme.CA(organization_name=_ORG)

    @property
    def path(self) -> Path:
        assert self.directory is not None
        return self.directory

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


@dataclass
class PersistentCA(SandboxCA):
    """A :class:`SandboxCA` whose CA key lives in ``directory`` so restarts (and other sandbox processes
    naming the same directory) keep the same trust anchor. Creation is serialised by a lock file, so two
    sandboxes started at once still end up with one CA."""

    def _load_or_create(self, directory: Path) -> trustme.CA:
        import fcntl

        cert, key = directory / "ca-cert.pem", directory / "ca-key.pem"
        with (directory / ".ca.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if cert.exists() and key.exists():
                return trustme.CA.from_pem(cert.read_bytes(), key.read_bytes())
            ca = trustme.CA(organization_name=_ORG)
            key.touch(mode=0o600)
            ca.private_key_pem.write_to_path(str(key))
            ca.cert_pem.write_to_path(str(cert))
            return ca


_default: SandboxCA | None = None


def default_ca() -> SandboxCA:
    """The process-wide throwaway sandbox CA (created on first use, removed at exit)."""
    global _default
    if _default is None:
        _default = SandboxCA()
    return _default
