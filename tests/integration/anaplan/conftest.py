from __future__ import annotations

from collections.abc import Iterator

import pytest
from anaplan_it_support import SharedClock

from devkit.sandbox.anaplan.harness import RunningSandbox, start


@pytest.fixture
def clock() -> SharedClock:
    return SharedClock()


@pytest.fixture
def sandbox(clock: SharedClock) -> Iterator[RunningSandbox]:
    with start(clock=clock, task_start_delay_s=0.01, task_run_delay_s=0.05, device_interval_s=5) as sbx:
        yield sbx
