from __future__ import annotations

import threading
import time
from typing import Any

from d365_anaplan.anaplan.authenticators import BasicAuthenticator, CertificateAuthenticator
from d365_anaplan.anaplan.client import AnaplanClient
from d365_anaplan.anaplan.tokens import InMemoryTokenCache
from d365_anaplan.config import AnaplanSettings
from d365_anaplan.http import VerifiedSession
from devkit.sandbox.anaplan.harness import RunningSandbox


class SharedClock:
    """Fake wall clock shared by the sandbox and the client; sleeping advances it (and naps briefly)."""

    def __init__(self) -> None:
        self.now = time.time()
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds
        time.sleep(min(seconds, 0.02))

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def make_client(
    sbx: RunningSandbox, clock: SharedClock, *, mode: str = "basic", payload: str = "v2", **kwargs: Any
) -> AnaplanClient:
    data = sbx.anaplan_settings("basic")
    data.update(kwargs.pop("settings", {}))
    settings = AnaplanSettings.model_validate(data)
    session = VerifiedSession(ca_bundle=sbx.ca_bundle, timeout=30)
    if mode == "basic":
        authn: Any = BasicAuthenticator(sbx.auth_url, sbx.username, sbx.password, clock=clock)
    else:
        authn = CertificateAuthenticator(
            sbx.auth_url,
            sbx.cert_path.read_bytes(),
            sbx.key_path.read_bytes(),
            payload=payload,
            clock=clock,  # type: ignore[arg-type]
        )
    kwargs.setdefault("token_cache", InMemoryTokenCache(clock=clock))
    return AnaplanClient(
        settings, authn, session=session, clock=clock, monotonic=clock, sleep=clock.sleep, **kwargs
    )
