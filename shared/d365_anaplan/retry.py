"""The retry core both HTTP clients (Anaplan, F&O OData) run on.

Each client classifies its own answers (what is worth repeating, what is fatal, which named error is left) and
raises :class:`Retryable` for an answer that may succeed when repeated; this module owns what is common:

* the bounded retry loop (tenacity: ``max_attempts``, an injectable ``sleep``, the client's wait policy),
* ``Retry-After`` honoured up to a cap (:func:`honoured_retry_after`),
* the idempotency rule (:func:`may_repeat`): a call that changes something (starting a task, posting a journal)
  is repeated only when the service surely did not act on it - it answered 429 or 503, or the connection was
  never established.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

Kind = Literal["throttled", "unavailable"]
NOT_ACTED_ON = frozenset({429, 503})  # answers that prove the request was not processed


class Retryable(Exception):
    """An answer (or a missing one) that may succeed when repeated.

    ``repeat`` is False when the call must not be repeated although the failure is transient (a write whose
    outcome is unknown); the client then maps it to its named error at once.
    """

    def __init__(
        self,
        kind: Kind,
        detail: str,
        retry_after: float | None = None,
        *,
        status: int | None = None,
        repeat: bool = True,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after
        self.status = status
        self.repeat = repeat


def may_repeat(idempotent: bool, *, status: int | None = None, never_connected: bool = False) -> bool:
    """Whether a failed call may be sent again without risking a second effect."""
    return idempotent or never_connected or status in NOT_ACTED_ON


def honoured_retry_after(state: RetryCallState, cap: float) -> float | None:
    """The server's ``Retry-After`` for the last failure (at most ``cap`` seconds), or None."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, Retryable) and exc.retry_after is not None:
        return min(exc.retry_after, cap)
    return None


def call_with_retries[R](
    attempt: Callable[[], R],
    *,
    max_attempts: int,
    wait: Callable[[RetryCallState], float],
    sleep: Callable[[float], None],
    retry_also: tuple[type[BaseException], ...] = (),
) -> R:
    """Run ``attempt`` until it returns, raises something not retriable, or ``max_attempts`` are spent (the last
    :class:`Retryable` is re-raised for the client to name). ``wait`` may raise to give up early."""

    def retriable(exc: BaseException) -> bool:
        return (isinstance(exc, Retryable) and exc.repeat) or isinstance(exc, retry_also)

    retrying = Retrying(
        stop=stop_after_attempt(max_attempts),
        wait=wait,
        retry=retry_if_exception(retriable),
        sleep=sleep,
        reraise=True,
    )
    return retrying(attempt)


__all__ = ["NOT_ACTED_ON", "Retryable", "call_with_retries", "honoured_retry_after", "may_repeat"]
