"""``ahead``: a chain of fetches run one step ahead of the work on it, in order, bounded, stoppable."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator

import pytest

from d365_anaplan.dynamics.ahead import ahead
from d365_anaplan.errors import DynamicsBadResponse


class Chain:
    """A source that records how far it has been pulled and whether it was closed."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n = n
        self.fail_at = fail_at
        self.produced = 0
        self.closed = False
        self.threads: set[str] = set()

    def __iter__(self) -> Iterator[int]:
        try:
            for i in range(self.n):
                self.threads.add(threading.current_thread().name)
                if i == self.fail_at:
                    raise DynamicsBadResponse(f"page {i}: not an OData collection")
                self.produced += 1
                yield i
        finally:
            self.closed = True


def settle(chain: Chain, expected: int) -> None:
    deadline = time.monotonic() + 2
    while chain.produced < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # give a worker that would run further the chance to


def test_items_arrive_in_order_from_a_worker_thread() -> None:
    chain = Chain(50)
    assert list(ahead(iter(chain), name="test-ahead")) == list(range(50))
    assert chain.threads == {"test-ahead"}
    assert chain.closed


@pytest.mark.parametrize("depth", [1, 3])
def test_the_worker_runs_at_most_depth_items_ahead(depth: int) -> None:
    chain = Chain(20)
    items = ahead(iter(chain), depth=depth)
    assert next(items) == 0
    settle(chain, 1 + depth)
    assert chain.produced == 1 + depth  # the item being worked on, and depth ahead of it
    assert next(items) == 1
    settle(chain, 2 + depth)
    assert chain.produced == 2 + depth
    items.close()


def test_an_error_in_the_worker_is_raised_in_the_caller_after_the_items_before_it() -> None:
    chain = Chain(10, fail_at=3)
    got: list[int] = []
    with pytest.raises(DynamicsBadResponse, match="page 3"):
        got.extend(ahead(iter(chain)))  # extend keeps the items that came before the error
    assert got == [0, 1, 2]
    assert chain.closed


def test_stopping_early_stops_the_worker_and_closes_the_chain() -> None:
    chain = Chain(1000)
    before = {t.name for t in threading.enumerate()}
    for item in ahead(iter(chain), name="stopping-ahead"):
        if item == 2:
            break
    assert chain.closed
    assert chain.produced <= 4
    assert "stopping-ahead" not in {t.name for t in threading.enumerate()} - before


def test_the_worker_sees_the_callers_context() -> None:
    run_id: contextvars.ContextVar[str] = contextvars.ContextVar("run_id", default="none")
    run_id.set("run-42")

    def source() -> Iterator[str]:
        yield run_id.get()

    assert list(ahead(source())) == ["run-42"]


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError):
        next(ahead(iter([1]), depth=0))


def test_a_caller_stopping_early_does_not_wait_for_a_slow_request() -> None:
    """Near the invocation's time limit the read stops at a page boundary; the worker may be in a slow request
    for the next page: the caller returns within about a second, the worker ends on its own afterwards."""
    release, requesting = threading.Event(), threading.Event()

    def slow_chain() -> Iterator[int]:
        yield 0
        requesting.set()
        release.wait(10)  # the next page is slow to come
        yield 1

    items = ahead(slow_chain(), name="slow-ahead")
    assert next(items) == 0
    assert requesting.wait(2), "the worker went on to the next page"
    t0 = time.monotonic()
    items.close()
    assert time.monotonic() - t0 < 3
    release.set()
    worker = next((t for t in threading.enumerate() if t.name == "slow-ahead"), None)
    if worker is not None:
        worker.join(5)
        assert not worker.is_alive()
