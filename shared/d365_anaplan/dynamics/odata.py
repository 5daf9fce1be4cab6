"""F&O OData client: authenticated requests with bounded retries, streamed paging, error parsing.

Facts followed (dynamics-fo.md): server paging up to 10,000 rows with ``@odata.nextLink`` treated as an
opaque URL (§2.1), ``Prefer: odata.maxpagesize``, ``cross-company=true`` for reads beyond the default
company, 429 with ``Retry-After`` in seconds (fallback 30 s, §4.1), errors as
``{"error":{"code","message","innererror":{"message","type"}}}`` (§5.1), ``Edm.Decimal`` parsed as
``Decimal``. A 401 is explained (§1.3/§1.4) after one retry with a fresh token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import requests
from pydantic import ValidationError
from tenacity import RetryCallState
from urllib3.util import parse_url

from d365_anaplan.answers import first_problem
from d365_anaplan.dynamics.ahead import ahead
from d365_anaplan.dynamics.auth import explain_unauthorized
from d365_anaplan.dynamics.odata_shapes import (
    MAX_PAGE_SIZE,
    ODataPage,
    Page,
    Query,
    dumps_exact,
    encode_query,
    loads,
    parse_error,
)
from d365_anaplan.errors import (
    BadInputData,
    DynamicsAuthError,
    DynamicsBadResponse,
    DynamicsError,
    DynamicsThrottled,
    DynamicsUnavailable,
    DynamicsValidationError,
)
from d365_anaplan.http import parse_retry_after
from d365_anaplan.retry import Retryable, call_with_retries, honoured_retry_after, may_repeat
from d365_anaplan.urls import UrlProblem, origin_of, redacted

log = logging.getLogger(__name__)

MAX_URL_LENGTH = 8_000
REQUEST_MARGIN_SECONDS = 10.0  # left to the invocation after its last request, to record where it stopped
MIN_REQUEST_TIMEOUT = 5.0
DEFAULT_RETRY_AFTER = 30.0


class Tokens(Protocol):
    client_id: str

    def token(self) -> str: ...

    def invalidate(self) -> None: ...


class Throttle(Protocol):
    """The environment's throttle shared by every worker (``d365_anaplan.ledger.throttle.SharedThrottle``)."""

    def pause_seconds(self) -> float: ...

    def throttled(self, retry_after: float) -> None: ...


# --- retry plumbing ------------------------------------------------------------------------------------


class _StaleToken(Exception):
    pass


def _retry_after(resp: requests.Response) -> float | None:
    return parse_retry_after(resp.headers.get("Retry-After"))


class ODataClient:
    """Requests against ``<environment>/data`` for one environment."""

    def __init__(
        self,
        environment_url: str,
        tokens: Tokens,
        session: requests.Session,
        *,
        page_size: int = 5000,
        max_attempts: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        max_retry_after: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        remaining_time: Callable[[], float] | None = None,
        safety_seconds: float = 30.0,
        throttle: Throttle | None = None,
    ) -> None:
        self.environment_url = environment_url.rstrip("/").lower()
        self._origin = origin_of(self.environment_url)
        self.base = f"{self.environment_url}/data"
        self.tokens = tokens
        self.session = session
        self.page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.sleep = sleep
        self.remaining_time = remaining_time
        self.safety_seconds = safety_seconds
        self.requests_made = 0
        self.retries = 0
        self.throttle = throttle
        self.throttle_pauses = 0  # requests held back because another worker was told to wait

    # -- URLs ---------------------------------------------------------------------------------------------

    def url(self, path: str, params: list[tuple[str, str]] | None = None) -> str:
        url = f"{self.base}/{path.lstrip('/')}"
        if params:
            url += "?" + encode_query(params)
        if len(url) > MAX_URL_LENGTH:
            raise BadInputData(
                f"OData request for {path}: the URL is {len(url)} characters (limit {MAX_URL_LENGTH}); split the filter"
            )
        return url

    def check_link(self, link: str, what: str) -> str:
        """A next link is followed as-is, but only to our own environment (the bearer token goes with it)."""
        try:
            origin = origin_of(link)
        except UrlProblem as exc:
            raise DynamicsBadResponse(f"{what}: @odata.nextLink {exc}; not followed") from None
        bad = next((ch for ch in link if ch == "\\" or ch.isspace() or not 0x20 < ord(ch) < 0x7F), None)
        if origin != self._origin or not (parse_url(link).path or "").startswith("/data/") or bad is not None:
            raise DynamicsBadResponse(
                f"{what}: @odata.nextLink points outside {self.environment_url}/data ({redacted(link)})"
            )
        return link

    # -- requests -----------------------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        honoured = honoured_retry_after(state, self.max_retry_after)
        if honoured is not None:
            delay = honoured
        elif isinstance(exc, Retryable) and exc.kind == "throttled":
            delay = DEFAULT_RETRY_AFTER
        else:
            delay = min(self.backoff_max, self.backoff_base * (2 ** (state.attempt_number - 1)))
        if self.remaining_time is not None and self.remaining_time() - delay < self.safety_seconds:
            # Not enough Lambda time left to wait: give up now and let the state machine retry later.
            raise _GiveUp() from exc
        self.retries += 1
        return delay

    def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
        idempotent: bool = True,
    ) -> requests.Response:
        """One logical call with bounded retries (429/502/503/504/timeouts) and one token refresh on 401.

        With ``idempotent=False`` (writes) only answers that prove the request was not processed (429, 503)
        are retried; a timeout, a dropped connection, 502 or 504 leave the outcome unknown and raise
        :class:`DynamicsUnavailable` at once so the caller can look up what landed before trying again.
        """
        refreshed = [False]

        def attempt() -> requests.Response:
            return self._once(
                method,
                url,
                what=what,
                headers=headers,
                json_body=json_body,
                data=data,
                ok=ok,
                refreshed=refreshed,
                idempotent=idempotent,
            )

        try:
            return call_with_retries(
                attempt,
                max_attempts=self.max_attempts,
                wait=self._wait,
                sleep=self.sleep,
                retry_also=(_StaleToken,),
            )
        except Retryable as exc:
            if exc.kind == "throttled":
                raise DynamicsThrottled(
                    f"{what}: F&O kept answering 429 after {self.max_attempts} attempts ({exc.detail})"
                ) from None
            raise DynamicsUnavailable(f"{what}: {exc.detail} after {self.max_attempts} attempts") from None
        except _GiveUp as exc:
            cause = exc.__cause__
            detail = cause.detail if isinstance(cause, Retryable) else "transient failure"
            cls = (
                DynamicsThrottled
                if isinstance(cause, Retryable) and cause.kind == "throttled"
                else DynamicsUnavailable
            )
            raise cls(
                f"{what}: {detail}; not enough time left in this invocation to wait and retry"
            ) from None
        except _StaleToken:
            raise DynamicsAuthError(
                explain_unauthorized(self.environment_url, self.tokens.client_id, None)
            ) from None

    def _once(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str] | None,
        json_body: Any,
        data: bytes | None,
        ok: tuple[int, ...],
        refreshed: list[bool],
        idempotent: bool = True,
    ) -> requests.Response:
        h = {
            "Accept": "application/json",
            "OData-Version": "4.0",
            "OData-MaxVersion": "4.0",
            "Authorization": f"Bearer {self.tokens.token()}",
        }
        if headers:
            h.update(headers)
        body = data
        if json_body is not None:
            body = dumps_exact(json_body).encode("utf-8")
            h.setdefault("Content-Type", "application/json; charset=utf-8")
        self._honour_shared_throttle(what)
        self.requests_made += 1
        try:
            timeout = self._timeout()
            resp = (
                self.session.request(method, url, headers=h, data=body)
                if timeout is None  # the session's own default timeout applies
                else self.session.request(method, url, headers=h, data=body, timeout=timeout)
            )
        except requests.Timeout:
            if not idempotent:
                raise DynamicsUnavailable(f"{what}: request timed out; the outcome is unknown") from None
            raise Retryable("unavailable", "request timed out") from None
        except requests.ConnectionError as exc:
            if not idempotent:
                raise DynamicsUnavailable(
                    f"{what}: connection failed ({type(exc).__name__}); the outcome is unknown"
                ) from None
            raise Retryable("unavailable", f"connection failed ({type(exc).__name__})") from None
        status = resp.status_code
        if status in ok:
            return resp
        if status == 429:
            if self.throttle is not None:  # every worker of the environment waits, not only this one
                self.throttle.throttled(min(_retry_after(resp) or DEFAULT_RETRY_AFTER, self.max_retry_after))
            raise Retryable(
                "throttled",
                f"HTTP 429 {parse_error(status, resp.content).text()[:160]}",
                _retry_after(resp),
                status=status,
            )
        if status in (502, 503, 504):
            if not may_repeat(idempotent, status=status):
                raise DynamicsUnavailable(f"{what}: HTTP {status}; the outcome is unknown")
            raise Retryable("unavailable", f"HTTP {status}", _retry_after(resp), status=status)
        if status == 401:
            if not refreshed[0]:
                refreshed[0] = True
                self.tokens.invalidate()
                raise _StaleToken()
            raise DynamicsAuthError(
                explain_unauthorized(
                    self.environment_url, self.tokens.client_id, resp.headers.get("WWW-Authenticate")
                )
            )
        err = parse_error(status, resp.content)
        if status == 403:
            raise DynamicsAuthError(
                f"{what}: F&O answered 403: the F&O user mapped to client {self.tokens.client_id} lacks a role or company access ({err.text()[:200]})"
            )
        if status == 404:
            raise DynamicsError(
                f"{what}: F&O answered 404 ({err.text()[:200]}); is the entity set published?"
            )
        if (
            status in (400, 409, 412, 422)
            or "AxODataWriteException" in err.inner_type
            or "Write failed" in err.inner_message
        ):
            raise DynamicsValidationError(
                f"{what}: F&O rejected the request (HTTP {status}): {err.text()[:1000]}"
            )
        raise DynamicsError(f"{what}: F&O answered HTTP {status}: {err.text()[:500]}")

    def _timeout(self) -> float | None:
        """No request outlives the invocation: with ``remaining_time`` the session's timeout is capped at the
        time left less a margin to record where the read stopped (never below 5 s)."""
        if self.remaining_time is None:
            return None
        default = getattr(self.session, "default_timeout", None)
        left = self.remaining_time() - REQUEST_MARGIN_SECONDS
        cap = min(default, left) if isinstance(default, int | float) else left
        return max(MIN_REQUEST_TIMEOUT, cap)

    def _honour_shared_throttle(self, what: str) -> None:
        """Wait while the environment has asked any worker of this connection to wait (a 429 elsewhere)."""
        if self.throttle is None:
            return
        pause = self.throttle.pause_seconds()
        if pause <= 0:
            return
        if self.remaining_time is not None and self.remaining_time() - pause < self.safety_seconds:
            raise DynamicsThrottled(
                f"{what}: F&O asked this connection's workers to wait {pause:.0f} s; not enough time left in "
                "this invocation to wait"
            )
        self.throttle_pauses += 1
        self.sleep(pause)

    # -- reads ------------------------------------------------------------------------------------------------

    def get_json(
        self,
        path_or_url: str,
        *,
        what: str,
        params: list[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        url = path_or_url if path_or_url.startswith("https://") else self.url(path_or_url, params)
        resp = self.request("GET", url, what=what, headers=headers, ok=(200,))
        return loads(resp.content, what)

    def metadata(self) -> str:
        resp = self.request(
            "GET",
            f"{self.base}/$metadata",
            what="GET $metadata",
            headers={"Accept": "application/xml"},
            ok=(200,),
        )
        return resp.content.decode("utf-8", "replace")

    def get_page(self, url: str, *, what: str, page_size: int | None = None) -> Page:
        size = min(page_size or self.page_size, MAX_PAGE_SIZE)
        resp = self.request("GET", url, what=what, headers={"Prefer": f"odata.maxpagesize={size}"}, ok=(200,))
        payload = loads(resp.content, what)
        plain = _plain_page(payload)
        if plain is not None:
            rows, link, count = plain
        else:
            try:
                page = ODataPage.model_validate(payload)
            except ValidationError as exc:
                loc, msg = first_problem(exc)
                raise DynamicsBadResponse(
                    f"{what}: the response is not an OData collection ({loc}: {msg})"
                ) from None
            rows, link, count = page.value, page.next_link, page.count
        next_link = self.check_link(link, what) if link else None
        return Page(rows, next_link, count)

    def first_url(self, query: Query) -> str:
        return self.url(query.entity_set, query.params())

    def iter_pages(
        self,
        query: Query | None = None,
        *,
        resume: str | None = None,
        page_size: int | None = None,
        prefetch: bool = False,
    ) -> Iterator[Page]:
        """Pages of ``query`` (or from a next link ``resume``), following ``@odata.nextLink`` to the end."""
        if resume is not None:
            url: str | None = self.check_link(resume, "resume")
            what = "GET " + (parse_url(resume).path or "").removeprefix("/data/")
        elif query is not None:
            url = self.first_url(query)
            what = f"GET {query.entity_set}"
        else:
            raise BadInputData("iter_pages needs a query or a continuation")
        pages = self._pages(url, what, page_size)
        return ahead(pages, name="odata-prefetch") if prefetch else pages

    def _pages(self, url: str | None, what: str, page_size: int | None) -> Iterator[Page]:
        while url is not None:
            page = self.get_page(url, what=what, page_size=page_size)
            yield page
            url = page.next_link

    def iter_rows(
        self, query: Query, *, page_size: int | None = None, prefetch: bool = False
    ) -> Iterator[dict[str, Any]]:
        for page in self.iter_pages(query, page_size=page_size, prefetch=prefetch):
            yield from page.rows

    def should_stop(self, reserve: float | None = None) -> bool:
        """True when the invocation is close to its time limit (``remaining_time`` below the reserve)."""
        if self.remaining_time is None:
            return False
        return self.remaining_time() < (self.safety_seconds if reserve is None else reserve)

    # -- writes -----------------------------------------------------------------------------------------------

    def post(self, entity_set: str, body: Mapping[str, Any], *, what: str) -> dict[str, Any]:
        # Writes are not blindly retried on timeouts by callers: idempotency comes from the lookups before.
        resp = self.request(
            "POST",
            self.url(entity_set),
            what=what,
            json_body=dict(body),
            ok=(200, 201, 204),
            idempotent=False,
        )
        if resp.status_code == 204 or not resp.content:
            return {}
        data = loads(resp.content, what)
        if not isinstance(data, dict):
            raise DynamicsBadResponse(f"{what}: expected a JSON object")
        return data

    def action(self, path: str, body: Mapping[str, Any], *, what: str, idempotent: bool = True) -> Any:
        """POST an OData action. Starting a job is not idempotent (``idempotent=False``): a timeout, 502 or
        504 leaves its outcome unknown and raises at once instead of sending it again."""
        resp = self.request(
            "POST", self.url(path), what=what, json_body=dict(body), ok=(200, 201, 204), idempotent=idempotent
        )
        return loads(resp.content, what) if resp.content else None


class _GiveUp(Exception):
    pass


def _plain_page(payload: Any) -> tuple[list[dict[str, Any]], str | None, int | None] | None:
    """(rows, next link, count) of a collection that is already what :class:`ODataPage` accepts unchanged
    (the usual page: no copy of its rows); None for anything else, which :class:`ODataPage` then judges."""
    if not isinstance(payload, dict) or "next_link" in payload or "count" in payload:
        return None
    rows = payload.get("value")
    link = payload.get("@odata.nextLink")
    count = payload.get("@odata.count")
    if (
        type(rows) is not list
        or not (link is None or type(link) is str)
        or not (count is None or type(count) is int)
        or not all(type(r) is dict for r in rows)
    ):
        return None
    return rows, link, count
