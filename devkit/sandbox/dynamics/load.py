"""Load the F&O sandbox observes and imposes: requests in flight, and environment-wide resource pressure.

* :class:`InFlight` counts ``/data`` requests being served at once (from arrival until the last byte of the
  body is produced, bodies being lazy) and keeps the peak: what a client's concurrency really is. With
  ``latency`` each request takes that long at least (real F&O is far slower than a local server), so
  requests a client sends in parallel do overlap here.
* :class:`Pressure` is resource-based throttling as dynamics-fo.md §4.1 describes it: it belongs to the
  environment, not to a caller, and "continuing heavy traffic makes Retry-After grow". Once armed, after
  ``after`` more ``/data`` requests whose path holds ``path_contains`` the environment is under pressure for ``seconds``; every request arriving
  meanwhile, from any caller, is answered 429 with ``Retry-After`` in whole seconds (the time left, rounded
  up) and keeps the pressure on for ``seconds`` from its arrival. Callers that all wait out the first
  ``Retry-After`` meet one 429 each at most; callers that keep asking meet more. ``served`` counts the 429s.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from devkit.sandbox.server import Response


class InFlight:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.total = 0
        self.latency = 0.0

    def enter(self) -> None:
        with self._lock:
            self.now += 1
            self.total += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self._lock:
            self.now -= 1

    def reset(self) -> None:
        with self._lock:
            self.peak = self.now
            self.total = 0

    def serve(self, produce: Callable[[], Response]) -> Response:
        """``produce()`` counted in flight until its body has been produced."""
        self.enter()
        try:
            if self.latency > 0:
                time.sleep(self.latency)
            resp = produce()
        except BaseException:
            self.leave()
            raise
        if isinstance(resp.body, bytes):
            self.leave()
            return resp
        resp.body = self._counted(resp.body)
        return resp

    def _counted(self, body: Iterable[bytes]) -> Iterator[bytes]:
        try:
            yield from body
        finally:
            self.leave()


@dataclass
class Pressure:
    after: int
    seconds: float
    path_contains: str = "/data/"
    clock: Callable[[], float] = time.monotonic
    until: float | None = None
    served: int = 0
    _seen: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, path: str) -> int | None:
        """Seconds to tell the caller to wait (a 429), or None to serve the request."""
        with self._lock:
            now = self.clock()
            if self.until is None:
                if self.path_contains not in path:
                    return None
                self._seen += 1
                if self._seen <= self.after:
                    return None
                self.until = now + self.seconds
            if now >= self.until:
                return None
            self.served += 1
            self.until = max(self.until, now + self.seconds)
            return max(1, math.ceil(self.until - now))


__all__ = ["InFlight", "Pressure"]
