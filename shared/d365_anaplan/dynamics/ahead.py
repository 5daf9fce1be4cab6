"""Running a fetch ahead of the work on what it fetched.

A read of posted GL lines is a chain of requests (a page of journal headers, then the pages of their lines, then
the next page of headers, ...) and CPU work on each page (splitting ledger accounts, Decimal amounts, fiscal
periods). :func:`ahead` walks the chain in one worker thread, at most ``depth`` items ahead of the caller, so the
caller works on page n while page n+1 is on the wire. One worker makes one request at a time, so a reader holds
one request in flight (the bound of concurrent F&O requests is the number of readers) and at most ``depth + 1``
pages in memory (``depth`` fetched or being fetched, one being worked on), however long the read.

The worker runs in a copy of the caller's context (contextvars). An exception in the worker is raised in the
caller when the caller reaches it, after every item produced before it. When the caller stops early (``break``,
an exception, a continuation), the worker is told to stop and the chain's generator is closed in the worker; the
caller waits at most a second for a request still in flight (the client caps each request's timeout at the time
the invocation has left), so stopping near the time limit never waits for a slow page.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Iterator

_POLL_SECONDS = 0.05  # how soon a worker waiting for the caller notices that the caller has stopped
_STOP_WAIT_SECONDS = 1.0  # how long a caller that stops early waits for a worker still in a request


class _End:
    __slots__ = ()


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = _End()


def ahead[T](source: Iterator[T], *, depth: int = 1, name: str = "fetch-ahead") -> Iterator[T]:
    """The items of ``source`` in order, produced by a worker thread at most ``depth`` items ahead."""
    if depth < 1:
        raise ValueError("depth must be at least 1")
    items: queue.SimpleQueue[T | _End | _Failed] = queue.SimpleQueue()
    slots = threading.Semaphore(depth)  # items produced (or being produced) and not yet taken by the caller
    stopped = threading.Event()

    def slot() -> bool:
        while not stopped.is_set():
            if slots.acquire(timeout=_POLL_SECONDS):
                return not stopped.is_set()
        return False

    def work() -> None:
        try:
            while slot():
                try:
                    item = next(source)
                except StopIteration:
                    items.put(_END)
                    return
                items.put(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
            items.put(_Failed(exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(work,), name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = items.get()
            if isinstance(item, _End):
                return
            if isinstance(item, _Failed):
                raise item.error
            slots.release()
            yield item
    finally:
        stopped.set()
        # A worker that already ended is joined at once; one still in a request when the caller stopped early
        # (near the invocation's time limit) is not waited for long: it sees ``stopped`` after its request
        # (bounded by the client's timeout) and ends without handing anything over.
        worker.join(timeout=_STOP_WAIT_SECONDS)
