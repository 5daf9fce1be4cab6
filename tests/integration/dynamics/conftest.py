"""Fixtures: an F&O sandbox over real HTTPS per test, and connections to it built like production ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from d365_anaplan.dynamics.client import DynamicsConnection, connect
from d365_anaplan.secrets import SecretResolver
from devkit.sandbox.dynamics.app import SandboxConfig
from devkit.sandbox.dynamics.cli import RunningSandbox, start
from devkit.sandbox.dynamics.testing import connection_config


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., RunningSandbox]]:
    started: list[RunningSandbox] = []

    def make(**kwargs: Any) -> RunningSandbox:
        kwargs.setdefault("gl_lines", 3000)
        kwargs.setdefault("months", 3)
        sb = start(SandboxConfig(**kwargs))
        started.append(sb)
        return sb

    yield make
    for sb in started:
        sb.stop()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., RunningSandbox]) -> RunningSandbox:
    return make_sandbox()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def connect_to(sleeps: Sleeps) -> Callable[..., DynamicsConnection]:
    def make(
        sb: RunningSandbox,
        *,
        dynamics: dict[str, Any] | None = None,
        companies: list[str] | None = None,
        **kw: Any,
    ) -> DynamicsConnection:
        cfg = connection_config(sb, dynamics=dynamics, companies=companies)
        kw.setdefault("sleep", sleeps)
        return connect(cfg, SecretResolver(), reuse_tokens=False, **kw)

    return make
