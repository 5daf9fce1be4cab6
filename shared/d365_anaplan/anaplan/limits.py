"""Client-side request limiting and retry timing for the Anaplan API."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class RateLimiter:
    """A token bucket keeping one connection under ``per_minute`` requests per minute.

    Refill is ``per_minute / 60`` per second and the burst is a tenth of a minute's allowance, so any
    60-second window holds at most ``1.1 * per_minute`` requests; with the default 540 that stays under
    Anaplan's 600/min tenant limit (a bucket of 600 refilled at 10/s).
    """

    def __init__(self, per_minute: int, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 10.0)
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()
        self.waited = 0.0

    def acquire(self) -> None:
        """Take one token; if none is left, reserve the next one and sleep until it is due."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self.waited += wait
            self._sleep(wait)


def backoff_with_jitter(
    attempt: int, *, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None
) -> float:
    """Full-jitter exponential backoff: uniform in [base, min(cap, base * 2**(attempt-1))]."""
    top = min(cap, base * (2.0 ** max(attempt - 1, 0)))
    value = rng.random() if rng else random.random()  # noqa: S311 - jitter, not security
    return base + value * max(0.0, top - base)


def next_poll_wait(elapsed_seconds: float) -> int:
    """Seconds to wait before the next task poll: never under 5, growing for long-running tasks."""
    if elapsed_seconds < 60:
        return 5
    if elapsed_seconds < 300:
        return 15
    if elapsed_seconds < 1800:
        return 30
    return 60
