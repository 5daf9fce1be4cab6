"""Security tests: hostile inputs against the configuration, the HTTP session and both clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sec_support import HostileServer, LeakListener, Responder

from devkit.sandbox.tls import SandboxCA


@pytest.fixture
def leak() -> Iterator[LeakListener]:
    """Records any connection to 127.0.0.2; tests assert it received none."""
    listener = LeakListener()
    yield listener
    listener.stop()


@pytest.fixture(scope="session")
def ca() -> SandboxCA:
    return SandboxCA()


@pytest.fixture
def hostile(ca: SandboxCA) -> Iterator[Callable[[Responder], HostileServer]]:
    servers: list[HostileServer] = []

    def start(responder: Responder) -> HostileServer:
        server = HostileServer(ca, responder)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(autouse=True)
def _no_env_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONNECTOR_ALLOWED_HOSTS", raising=False)
