"""HTTP sessions with the connector's TLS rules.

TLS verification is never turned off. ``tls.ca_bundle`` adds trust (a private CA or a sandbox's throwaway
CA) to the public roots; the session ignores ``REQUESTS_CA_BUNDLE`` and friends (``trust_env=False``) so the
configured trust is the one used, and every request passes ``verify`` explicitly.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import certifi
import requests
from requests.adapters import HTTPAdapter

USER_AGENT = "d365-anaplan-connector/0.1"


def trust_store(ca_bundle: str | None) -> str:
    """Path of a PEM bundle with the public roots plus ``ca_bundle`` (if any)."""
    if not ca_bundle:
        return certifi.where()
    extra = Path(ca_bundle).read_bytes()
    public = Path(certifi.where()).read_bytes()
    digest = hashlib.sha256(public + extra).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"d365-anaplan-trust-{digest}.pem"
    if not target.exists():
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".pem")
        with os.fdopen(fd, "wb") as fh:
            fh.write(public + b"\n" + extra)
        os.replace(tmp, target)
    return str(target)


class VerifiedSession(requests.Session):
    """A ``requests.Session`` that always verifies against one trust store and applies a default timeout."""

    def __init__(self, ca_bundle: str | None = None, timeout: float = 120, pool_size: int = 10) -> None:
        super().__init__()
        self.trust_env = False  # REQUESTS_CA_BUNDLE etc. must not override the configured trust
        self.verify = trust_store(ca_bundle)
        self.default_timeout = timeout
        self.headers["User-Agent"] = USER_AGENT
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.default_timeout)
        kwargs["verify"] = self.verify  # per request, so nothing in the environment can weaken it
        return super().request(method, url, *args, **kwargs)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110 §10.2.3: delay-seconds or an HTTP date);
    None when absent or unreadable. Both Anaplan and F&O clients honour it through this one parser."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
