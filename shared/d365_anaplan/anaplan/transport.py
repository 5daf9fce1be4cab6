"""The Anaplan Integration API v2 transport: send, parse, pages, status -> named error.

Every call goes through :meth:`AnaplanTransport.send`, which

* takes a token from the :class:`~d365_anaplan.anaplan.auth.TokenManager` (re-authenticating once on 401),
* waits on the client-side :class:`~d365_anaplan.anaplan.limits.RateLimiter`,
* retries 429 (``Retry-After`` honoured, else exponential backoff with jitter), 5xx and connection errors
  a bounded number of times on the shared core of :mod:`d365_anaplan.retry` (injectable ``sleep``),
* maps what is left to the named errors of :mod:`d365_anaplan.errors`, naming the call, the object and
  what Anaplan said (never a token).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypedDict, TypeVar

import requests
from pydantic import BaseModel, ValidationError
from tenacity import RetryCallState

from d365_anaplan.anaplan.authenticators import Authenticator
from d365_anaplan.anaplan.limits import RateLimiter, backoff_with_jitter
from d365_anaplan.anaplan.token_manager import TokenManager, http_timeout_of
from d365_anaplan.anaplan.tokens import InMemoryTokenCache, TokenCache, cache_key
from d365_anaplan.answers import first_problem
from d365_anaplan.config import AnaplanSettings
from d365_anaplan.errors import (
    AnaplanAuthError,
    AnaplanError,
    AnaplanModelArchived,
    AnaplanModelBusy,
    AnaplanModelLocked,
    AnaplanNotFound,
    AnaplanThrottled,
    AnaplanUnavailable,
    ConnectorError,
)
from d365_anaplan.http import parse_retry_after
from d365_anaplan.retry import Retryable, call_with_retries, honoured_retry_after, may_repeat

M = TypeVar("M", bound=BaseModel)
PAGE_LIMIT = 5000

_PROCESS_TOKEN_CACHE = InMemoryTokenCache()  # shared by every client of this process (one Lambda container)


def anaplan_said(resp: requests.Response) -> str:
    """What Anaplan said in an error answer (status message of either envelope), shortened."""
    try:
        body = resp.json()
    except ValueError:
        text = resp.text.strip()
        return text[:300] if text else (resp.reason or "")
    if isinstance(body, dict):
        status = body.get("status")
        if isinstance(status, dict) and status.get("message"):
            return str(status["message"])[:300]
        for key in ("statusMessage", "error_description", "message", "error"):
            if body.get(key):
                return str(body[key])[:300]
    return str(body)[:300]


def error_for(resp: requests.Response, call: str, obj: str) -> ConnectorError:
    """The named error for an answer that is neither expected nor worth repeating."""
    message = f"{call} ({obj}): HTTP {resp.status_code}; Anaplan said: {anaplan_said(resp)}"
    status = resp.status_code
    if status == 409:
        return AnaplanModelBusy(message)
    if status == 423:
        return AnaplanModelLocked(message)
    if status == 422:
        return AnaplanModelArchived(message)
    if status == 404:
        return AnaplanNotFound(message)
    if status in (401, 403):
        return AnaplanAuthError(message)
    return AnaplanError(message)


def retryable(resp: requests.Response, *, idempotent: bool) -> Retryable | None:
    """Anaplan's classification: 429 throttled, 5xx unavailable (repeated when safe), anything else final."""
    if resp.status_code == 429:
        return Retryable(
            "throttled", anaplan_said(resp), parse_retry_after(resp.headers.get("Retry-After")), status=429
        )
    if resp.status_code >= 500:
        safe = may_repeat(idempotent, status=resp.status_code)
        return Retryable("unavailable", anaplan_said(resp), status=resp.status_code, repeat=safe)
    return None


class TransportOptions(TypedDict, total=False):
    """What a caller may set on the transport (tests inject clocks, sleep, limiter, jitter)."""

    token_cache: TokenCache | None
    connection: str
    clock: Callable[[], float]
    monotonic: Callable[[], float]
    sleep: Callable[[float], None]
    max_attempts: int
    backoff_base: float
    max_retry_after: float
    limiter: RateLimiter | None
    rng: random.Random | None


class AnaplanTransport:
    """Authenticated, rate-limited, retried calls to one Anaplan API host."""

    def __init__(
        self,
        settings: AnaplanSettings,
        authenticator: Authenticator,
        *,
        session: requests.Session,
        token_cache: TokenCache | None = None,
        connection: str = "default",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 5,
        backoff_base: float = 1.0,
        max_retry_after: float = 120.0,
        limiter: RateLimiter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.api_url = settings.api_url.rstrip("/")
        self.session = session
        self.sleep = sleep
        self.monotonic = monotonic
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.max_retry_after = max_retry_after
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.limiter = limiter or RateLimiter(settings.requests_per_minute, clock=monotonic, sleep=sleep)
        cache = token_cache if token_cache is not None else _PROCESS_TOKEN_CACHE
        self.tokens = TokenManager(
            authenticator,
            session,
            cache,
            cache_key(connection, settings.auth_url, authenticator.principal),
            clock=clock,
            sleep=sleep,
            http_timeout_s=http_timeout_of(session, settings.timeout_seconds),
        )
        self.requests_made = 0
        self.retries = 0

    def _wait(self, state: RetryCallState) -> float:
        honoured = honoured_retry_after(state, self.max_retry_after)
        if honoured is not None:
            return honoured
        return backoff_with_jitter(state.attempt_number, base=self.backoff_base, rng=self.rng)

    def send(
        self,
        method: str,
        path: str,
        *,
        call: str,
        obj: str,
        expected: tuple[int, ...] = (200,),
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        idempotent: bool = True,
    ) -> requests.Response:
        """One API call with auth, limiting, bounded retries and error mapping.

        A non-idempotent call (starting a task) is repeated only when Anaplan surely did not act on it:
        429, 503, or a connection that was never established.
        """
        url = path if path.startswith("https://") else self.api_url + path

        def attempt() -> requests.Response:
            reauthenticated = False
            while True:
                self.limiter.acquire()
                token = self.tokens.token()
                h = {"Authorization": f"AnaplanAuthToken {token}", **(headers or {})}
                if json_body is not None:
                    h.setdefault("Content-Type", "application/json")
                self.requests_made += 1
                try:
                    resp = self.session.request(
                        method, url, json=json_body, data=data, headers=h, params=params
                    )
                except (requests.ConnectionError, requests.Timeout) as exc:
                    safe = may_repeat(idempotent, never_connected=isinstance(exc, requests.ConnectTimeout))
                    self.retries += int(safe)
                    raise Retryable(
                        "unavailable", f"connection error ({type(exc).__name__})", repeat=safe
                    ) from None
                if resp.status_code == 401 and not reauthenticated:
                    reauthenticated = True
                    self.tokens.invalidate(token)
                    continue
                failure = retryable(resp, idempotent=idempotent)
                if failure is not None:
                    self.retries += int(failure.repeat)
                    raise failure
                return resp

        try:
            resp = call_with_retries(
                attempt, max_attempts=self.max_attempts, wait=self._wait, sleep=self.sleep
            )
        except Retryable as exc:
            where = f"{call} ({obj})"
            if exc.status == 429:
                raise AnaplanThrottled(
                    f"{where}: HTTP 429 after {self.max_attempts} attempts; Anaplan said: {exc.detail}"
                ) from None
            status = f"HTTP {exc.status}" if exc.status else "no answer"
            if not exc.repeat:
                raise AnaplanUnavailable(
                    f"{where}: {status}; not repeated because Anaplan may have acted on it; Anaplan said: {exc.detail}"
                ) from None
            raise AnaplanUnavailable(
                f"{where}: {status} after {self.max_attempts} attempts; Anaplan said: {exc.detail}"
            ) from None
        if resp.status_code not in expected:
            raise error_for(resp, call, obj)
        return resp

    def json(self, method: str, path: str, *, call: str, obj: str, **kwargs: Any) -> dict[str, Any]:
        """:meth:`send`, then the answer as a JSON object."""
        resp = self.send(method, path, call=call, obj=obj, **kwargs)
        try:
            body = resp.json()
        except ValueError:
            raise AnaplanError(
                f"{call} ({obj}): HTTP {resp.status_code} with a body that is not JSON"
            ) from None
        if not isinstance(body, dict):
            raise AnaplanError(f"{call} ({obj}): expected a JSON object")
        return body

    @staticmethod
    def parse(model: type[M], data: Any, call: str, obj: str) -> M:
        """Validate ``data`` as ``model``; an unexpected answer names the call, the object and the field."""
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            field, msg = first_problem(exc)
            raise AnaplanError(f"{call} ({obj}): unexpected answer, field {field!r}: {msg}") from None

    def pages(
        self, path: str, key: str, *, call: str, obj: str, params: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Every item of a paged collection (``offset``/``limit``, ``meta.paging.totalSize``)."""
        items: list[dict[str, Any]] = []
        offset, limit = 0, PAGE_LIMIT
        while True:
            body = self.json(
                "GET",
                path,
                call=call,
                obj=obj,
                params={**(params or {}), "offset": str(offset), "limit": str(limit)},
            )
            page = body.get(key) or []
            if not isinstance(page, list):
                raise AnaplanError(f"{call} ({obj}): {key!r} is not a list")
            items.extend(page)
            paging = (body.get("meta") or {}).get("paging") or {}
            total = paging.get("totalSize")
            if not page or total is None or len(items) >= int(total) or len(page) < limit:
                return items
            offset += len(page)
