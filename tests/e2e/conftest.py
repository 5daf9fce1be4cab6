"""Fixtures of the end-to-end tests: both sandboxes (small data, one stack per test file) and a fresh local
engine per test with the connection installed. A file that needs other data defines its own ``stack``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devkit.engine import LocalEngine
from devkit.stack import Stack, running


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running(gl_lines=400, months=3) as st:
        yield st


@pytest.fixture
def engine(stack: Stack) -> Iterator[LocalEngine]:
    stack.anaplan.app.faults.clear()
    stack.dynamics.app.faults.clear()
    with LocalEngine(wait_scale=0.0) as eng:
        eng.install_connection(stack.connection())
        yield eng
    stack.anaplan.app.faults.clear()
    stack.dynamics.app.faults.clear()


@pytest.fixture(scope="module")
def module_engine(stack: Stack) -> Iterator[LocalEngine]:
    """One engine for a whole file, for files whose cases are independent executions."""
    with LocalEngine(wait_scale=0.0) as eng:
        eng.install_connection(stack.connection())
        yield eng
