"""OData client with `responses`: paging, headers, retries, 401 handling, error parsing (dynamics-fo.md §2, §4, §5)."""

from __future__ import annotations

import json
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from dyn_support import DATA, fo_error_body, make_client, page

from d365_anaplan.dynamics.odata_shapes import Continuation, Query, dumps_exact, parse_error
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


@responses.activate
def test_paging_follows_opaque_next_link_with_headers() -> None:
    client, _tokens, _ = make_client(page_size=2)
    nxt = f"{DATA}/MainAccounts?cross-company=true&$skiptoken=opaque%21token"
    responses.get(f"{DATA}/MainAccounts", body=page([{"MainAccountId": "1"}, {"MainAccountId": "2"}], nxt))
    responses.get(
        nxt,
        body=page([{"MainAccountId": "3"}]),
        match=[
            responses.matchers.query_param_matcher({"cross-company": "true", "$skiptoken": "opaque!token"})
        ],
    )
    rows = list(
        client.iter_rows(
            Query(
                "MainAccounts",
                filter="IsSuspended eq Microsoft.Dynamics.DataEntities.NoYes'No'",
                select=("MainAccountId", "Name"),
            )
        )
    )
    assert [r["MainAccountId"] for r in rows] == ["1", "2", "3"]
    first = responses.calls[0].request
    q = parse_qs(urlsplit(first.url).query)
    assert q["cross-company"] == ["true"]
    assert q["$select"] == ["MainAccountId,Name"]
    assert q["$filter"] == ["IsSuspended eq Microsoft.Dynamics.DataEntities.NoYes'No'"]
    assert first.headers["Prefer"] == "odata.maxpagesize=2"
    assert first.headers["Authorization"] == "Bearer tok0"
    assert first.headers["OData-Version"] == "4.0"
    assert responses.calls[1].request.url == nxt  # followed as-is


@responses.activate
def test_decimals_are_parsed_exactly() -> None:
    client, _, _ = make_client()
    responses.get(f"{DATA}/X", body='{"value":[{"A":0.1,"B":123456789012345.67}]}')
    row = next(client.iter_rows(Query("X")))
    assert (
        row["A"] == Decimal("0.1") and isinstance(row["B"], Decimal) and str(row["B"]) == "123456789012345.67"
    )


@responses.activate
def test_page_size_capped_at_10000() -> None:
    client, _, _ = make_client(page_size=50_000)
    responses.get(f"{DATA}/X", body=page([]))
    list(client.iter_rows(Query("X")))
    assert responses.calls[0].request.headers["Prefer"] == "odata.maxpagesize=10000"


@responses.activate
def test_429_honours_retry_after_then_succeeds() -> None:
    client, _, sleeps = make_client()
    responses.get(
        f"{DATA}/X",
        status=429,
        headers={"Retry-After": "7"},
        body=json.dumps({"error": {"code": "", "message": "high resource utilization"}}),
    )
    responses.get(f"{DATA}/X", body=page([{"a": 1}]))
    assert list(client.iter_rows(Query("X"))) == [{"a": 1}]
    assert sleeps == [7.0]
    assert client.retries == 1


@pytest.mark.parametrize("odd", ["\u00b2", "9" * 5000, "\u0663", "-5", "1e3"])
@responses.activate
def test_an_unreadable_retry_after_is_the_fallback_wait_not_a_crash(odd: str) -> None:
    """A superscript digit, an Arabic-Indic digit or a 5000-digit value is not delay-seconds: treated as absent."""
    client, _, sleeps = make_client()
    responses.get(f"{DATA}/X", status=429, headers={"Retry-After": odd})
    responses.get(f"{DATA}/X", body=page([{"a": 1}]))
    assert list(client.iter_rows(Query("X"))) == [{"a": 1}]
    assert sleeps == [30.0]
    assert parse_retry_after(odd) is None and parse_retry_after(" 120 ") == 120


@responses.activate
def test_429_without_retry_after_uses_30s_and_gives_up_as_throttled() -> None:
    client, _, sleeps = make_client(max_attempts=3)
    for _ in range(3):
        responses.get(f"{DATA}/X", status=429)
    with pytest.raises(DynamicsThrottled, match="429"):
        list(client.iter_rows(Query("X")))
    assert sleeps == [30.0, 30.0]


@responses.activate
def test_retry_after_is_capped() -> None:
    client, _, sleeps = make_client(max_retry_after=20)
    responses.get(f"{DATA}/X", status=429, headers={"Retry-After": "3600"})
    responses.get(f"{DATA}/X", body=page([]))
    list(client.iter_rows(Query("X")))
    assert sleeps == [20.0]


@responses.activate
@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_retried_with_backoff(status: int) -> None:
    client, _, sleeps = make_client(max_attempts=4, backoff_base=1)
    for _ in range(4):
        responses.get(f"{DATA}/X", status=status)
    with pytest.raises(DynamicsUnavailable, match=f"HTTP {status}"):
        list(client.iter_rows(Query("X")))
    assert sleeps == [1, 2, 4]


@responses.activate
def test_timeouts_retried_then_succeed() -> None:
    client, _, sleeps = make_client()
    responses.get(f"{DATA}/X", body=requests.Timeout("slow"))
    responses.get(f"{DATA}/X", body=requests.ConnectionError("reset"))
    responses.get(f"{DATA}/X", body=page([{"a": 1}]))
    assert list(client.iter_rows(Query("X"))) == [{"a": 1}]
    assert len(sleeps) == 2


@responses.activate
def test_no_wait_when_lambda_time_is_short() -> None:
    client, _, sleeps = make_client(remaining_time=lambda: 40.0, safety_seconds=30)
    responses.get(f"{DATA}/X", status=429, headers={"Retry-After": "20"})
    with pytest.raises(DynamicsThrottled, match="not enough time"):
        list(client.iter_rows(Query("X")))
    assert sleeps == []


@responses.activate
def test_writes_not_retried_on_unknown_outcome() -> None:
    client, _, sleeps = make_client()
    responses.post(f"{DATA}/LedgerJournalHeaders", body=requests.Timeout("slow"))
    with pytest.raises(DynamicsUnavailable, match="outcome is unknown"):
        client.post("LedgerJournalHeaders", {"JournalName": "GenJrn"}, what="POST header")
    responses.post(f"{DATA}/LedgerJournalHeaders", status=504)
    with pytest.raises(DynamicsUnavailable, match="outcome is unknown"):
        client.post("LedgerJournalHeaders", {"JournalName": "GenJrn"}, what="POST header")
    assert sleeps == []


@responses.activate
def test_401_refreshes_token_once_then_succeeds() -> None:
    client, tokens, _ = make_client()
    responses.get(f"{DATA}/X", status=401)
    responses.get(f"{DATA}/X", body=page([]))
    list(client.iter_rows(Query("X")))
    assert tokens.invalidated == 1
    assert responses.calls[1].request.headers["Authorization"] == "Bearer tok1"


@responses.activate
def test_repeated_401_is_explained_not_retried_blindly() -> None:
    client, _tokens, _ = make_client()
    for _ in range(5):
        responses.get(f"{DATA}/X", status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    with pytest.raises(DynamicsAuthError) as exc:
        list(client.iter_rows(Query("X")))
    assert len(responses.calls) == 2
    text = str(exc.value)
    assert "Microsoft Entra applications" in text and "audience" in text
    assert "tok0" not in text and "tok1" not in text


@responses.activate
def test_403_names_user_mapping() -> None:
    client, _, _ = make_client()
    responses.get(f"{DATA}/X", status=403, body=fo_error_body("Access denied", "X"))
    with pytest.raises(DynamicsAuthError, match="lacks a role"):
        list(client.iter_rows(Query("X")))


@responses.activate
def test_write_exception_becomes_validation_error_with_innererror_text() -> None:
    client, _, _ = make_client()
    responses.post(
        f"{DATA}/LedgerJournalHeaders",
        status=500,
        body=fo_error_body(
            "Write failed for table row of type 'LedgerJournalHeaderEntity'. Infolog: Error: journal name"
        ),
    )
    with pytest.raises(DynamicsValidationError, match="journal name"):
        client.post("LedgerJournalHeaders", {"JournalName": "Nope"}, what="POST header")


@responses.activate
def test_other_500_is_dynamics_error() -> None:
    client, _, _ = make_client()
    responses.get(f"{DATA}/X", status=500, body="<html>oops</html>")
    with pytest.raises(DynamicsError, match="HTTP 500"):
        list(client.iter_rows(Query("X")))


@responses.activate
def test_malformed_json_is_bad_response() -> None:
    client, _, _ = make_client()
    responses.get(f"{DATA}/X", body='{"value": [ {"a": 1}, ')
    with pytest.raises(DynamicsBadResponse, match="malformed JSON"):
        list(client.iter_rows(Query("X")))


@responses.activate
def test_non_collection_is_bad_response() -> None:
    client, _, _ = make_client()
    responses.get(f"{DATA}/X", body='{"value": {"a": 1}}')
    with pytest.raises(DynamicsBadResponse, match="not an OData collection"):
        list(client.iter_rows(Query("X")))


@responses.activate
def test_next_link_to_another_host_is_refused() -> None:
    client, _, _ = make_client()
    responses.get(f"{DATA}/X", body=page([], "https://evil.example.com/data/X?$skiptoken=1"))
    with pytest.raises(DynamicsBadResponse, match="outside"):
        list(client.iter_rows(Query("X")))


def test_parse_error_shapes() -> None:
    err = parse_error(500, fo_error_body("Write failed. Infolog: Error: x"))
    assert err.text() == "Write failed. Infolog: Error: x" and err.inner_type.endswith(
        "AxODataWriteException"
    )
    assert parse_error(400, '{"error":{"code":"","message":"bad query"}}').text() == "bad query"
    assert parse_error(502, "<html>Bad gateway</html>").text() == "<html>Bad gateway</html>"


def test_url_too_long_refused() -> None:
    client, _, _ = make_client()
    with pytest.raises(BadInputData, match="split the filter"):
        client.first_url(Query("X", filter="a eq 1 or " * 1000 + "a eq 2"))


def test_continuation_round_trip_and_garbage() -> None:
    token = Continuation(f"{DATA}/X?$skiptoken=5", {"a": 1}).encode()
    back = Continuation.decode(token)
    assert back.next_link.endswith("$skiptoken=5") and back.state == {"a": 1}
    with pytest.raises(BadInputData, match="continuation token"):
        Continuation.decode("not-a-token!!")


def test_dumps_exact_keeps_decimal_digits() -> None:
    assert (
        dumps_exact({"DebitAmount": Decimal("1234567890.10"), "Text": "é'\""})
        == '{"DebitAmount":1234567890.10,"Text":"é\'\\""}'
    )
    with pytest.raises(BadInputData):
        dumps_exact({"x": Decimal("Infinity")})


@responses.activate
def test_prefetch_keeps_page_order_and_stops_cleanly() -> None:
    client, _, _ = make_client()
    links = [f"{DATA}/X?$skiptoken={i}" for i in range(1, 5)]
    responses.get(
        f"{DATA}/X",
        body=page([{"n": 0}], links[0]),
        match=[responses.matchers.query_param_matcher({"cross-company": "true"})],
    )
    for i, link in enumerate(links, start=1):
        responses.get(link, body=page([{"n": i}], links[i] if i < len(links) else None))
    assert [r["n"] for r in client.iter_rows(Query("X"), prefetch=True)] == [0, 1, 2, 3, 4]
    responses.calls.reset()
    pages = client.iter_pages(Query("X"), prefetch=True)
    assert next(pages).rows == [{"n": 0}]
    pages.close()  # the consumer stops early: at most the one prefetched page was requested
    assert len(responses.calls) <= 2


class SharedRecord:
    """The throttle record as every worker of an environment sees it (ledger/throttle.py in the cloud)."""

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause
        self.reported: list[float] = []
        self.reads = 0

    def pause_seconds(self) -> float:
        self.reads += 1
        return self.pause

    def throttled(self, retry_after: float) -> None:
        self.reported.append(retry_after)


@responses.activate
def test_a_429_is_reported_to_the_shared_throttle() -> None:
    record = SharedRecord()
    client, _, sleeps = make_client(throttle=record)
    responses.get(f"{DATA}/X", status=429, headers={"Retry-After": "7"})
    responses.get(f"{DATA}/X", body=page([{"a": 1}]))
    assert list(client.iter_rows(Query("X"))) == [{"a": 1}]
    assert record.reported == [7.0] and sleeps == [7.0]
    assert record.reads == 2, "read before each request"


@responses.activate
def test_a_worker_waits_while_another_was_told_to_wait() -> None:
    record = SharedRecord(pause=12.0)
    client, _, sleeps = make_client(throttle=record)
    responses.get(f"{DATA}/X", body=page([{"a": 1}]))
    assert list(client.iter_rows(Query("X"))) == [{"a": 1}]
    assert sleeps == [12.0] and client.throttle_pauses == 1
    assert record.reported == [], "it met no 429 itself"


@responses.activate
def test_no_time_left_to_wait_for_the_environment_is_throttled() -> None:
    record = SharedRecord(pause=120.0)
    client, _, sleeps = make_client(throttle=record, remaining_time=lambda: 60.0)
    with pytest.raises(DynamicsThrottled, match="wait 120 s"):
        list(client.iter_rows(Query("X")))
    assert sleeps == [] and len(responses.calls) == 0


def test_no_request_outlives_the_invocation() -> None:
    """With the invocation's remaining time known, each request's timeout is capped at the time left less a
    margin (never below 5 s); without it the session's default applies."""
    from unittest import mock

    left = [300.0]
    client, _, _ = make_client(remaining_time=lambda: left[0])
    client.session.default_timeout = 120  # type: ignore[attr-defined]
    seen: list[object] = []

    def request(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("timeout", "session default"))
        raise requests.Timeout("slow")

    with mock.patch.object(client.session, "request", side_effect=request):
        for remaining in (300.0, 40.0, 8.0):
            left[0] = remaining
            with pytest.raises(Exception):  # noqa: B017 - the timeout itself is what is looked at
                client.get_json("X", what="GET X")
    assert seen[0] == 120 and 30.0 in seen and seen[-1] == 5.0, seen
    plain, _, _ = make_client()
    seen.clear()
    with mock.patch.object(plain.session, "request", side_effect=request), pytest.raises(Exception):  # noqa: B017
        plain.get_json("X", what="GET X")
    assert set(seen) == {"session default"}
