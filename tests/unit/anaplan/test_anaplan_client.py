from __future__ import annotations

import gzip
import io
import json
from typing import Any

import pytest
import requests
import responses
from anaplan_unit_support import MP, FakeClock, add_auth, envelope, paged

from d365_anaplan.anaplan import upload as upload_mod
from d365_anaplan.anaplan.client import AnaplanClient, check_header, classify
from d365_anaplan.anaplan.limits import RateLimiter, next_poll_wait
from d365_anaplan.anaplan.models import ImportMetadata, Outcome, Task
from d365_anaplan.errors import (
    AnaplanError,
    AnaplanFileTooLarge,
    AnaplanHeaderMismatch,
    AnaplanModelArchived,
    AnaplanModelBusy,
    AnaplanModelLocked,
    AnaplanNotFound,
    AnaplanThrottled,
    AnaplanUnavailable,
)
from d365_anaplan.http import parse_retry_after

IMPORTS = [
    {
        "id": "112000000001",
        "name": "Load Accounts",
        "importDataSourceId": "113000000001",
        "importType": "HIERARCHY_DATA",
    },
    {
        "id": "112000000005",
        "name": "Load GL Actuals",
        "importDataSourceId": "113000000005",
        "importType": "MODULE_DATA",
    },
]
HEADER = ["Entity", "Account", "Period", "Version", "Amount"]


def import_meta(headers: list[str] = HEADER) -> dict[str, Any]:
    return envelope(
        importMetadata={
            "name": "Load GL Actuals",
            "type": "FILE",
            "source": {
                "textEncoding": "UTF-8",
                "columnSeparator": ",",
                "textDelimiter": '"',
                "headerRow": 1,
                "firstDataRow": 2,
                "decimalSeparator": ".",
                "headerNames": headers,
                "columnCount": len(headers),
            },
        }
    )


@pytest.fixture
def client(rsps: responses.RequestsMock, clock: FakeClock, make_client: Any) -> AnaplanClient:
    add_auth(rsps, clock)
    c: AnaplanClient = make_client()
    return c


def api_calls(rsps: responses.RequestsMock, needle: str = "/2/0/") -> list[Any]:
    return [c for c in rsps.calls if needle in c.request.url]


# --- metadata ----------------------------------------------------------------------------------------


def test_find_by_name_and_not_found_lists_names(rsps: responses.RequestsMock, client: AnaplanClient) -> None:
    rsps.add(responses.GET, f"{MP}/imports", json=paged("imports", IMPORTS))
    assert client.find_import("Load GL Actuals").import_data_source_id == "113000000005"
    assert client.find_import("112000000001").name == "Load Accounts"
    with pytest.raises(AnaplanNotFound, match=r"no import named 'Load Budget'.*Load Accounts"):
        client.find_import("Load Budget")
    assert len(api_calls(rsps, "/imports")) == 1  # catalogue cached


def test_paging_follows_total_size(rsps: responses.RequestsMock, client: AnaplanClient) -> None:
    first = paged("lists", [{"id": f"1010000000{i:02d}", "name": f"L{i}"} for i in range(5000)])
    first["meta"]["paging"]["totalSize"] = 5002
    second = paged(
        "lists", [{"id": "101000009998", "name": "Cost Centres"}, {"id": "101000009999", "name": "Accounts"}]
    )
    rsps.add(responses.GET, f"{MP}/lists", json=first)
    rsps.add(responses.GET, f"{MP}/lists", json=second)
    assert client.find_list("Accounts").id == "101000009999"
    offsets = [c.request.url.split("offset=")[1].split("&")[0] for c in api_calls(rsps, "/lists")]
    assert offsets == ["0", "5000"]


def test_list_items_by_list_name(rsps: responses.RequestsMock, client: AnaplanClient) -> None:
    rsps.add(responses.GET, f"{MP}/lists", json=paged("lists", [{"id": "101000000001", "name": "Accounts"}]))
    rsps.add(
        responses.GET,
        f"{MP}/lists/101000000001/items",
        json=paged(
            "listItems",
            [{"id": "1", "name": "Cash", "code": "110110"}, {"id": "2", "name": "Revenue", "code": "401100"}],
        ),
    )
    items = client.list_items("Accounts")
    assert [i.code for i in items] == ["110110", "401100"]
    assert "includeAll=true" in api_calls(rsps, "/items")[0].request.url


def test_header_mismatch_names_columns() -> None:
    meta = ImportMetadata.model_validate(import_meta()["importMetadata"])
    check_header(b"\xef\xbb\xbfEntity,Account,Period,Version,Amount\r", meta, "Load GL Actuals")
    with pytest.raises(
        AnaplanHeaderMismatch, match=r"missing columns \['Version'\].*unexpected columns \['Versn'\]"
    ):
        check_header(b"Entity,Account,Period,Versn,Amount", meta, "Load GL Actuals")
    with pytest.raises(AnaplanHeaderMismatch, match="different order"):
        check_header(b"Account,Entity,Period,Version,Amount", meta, "Load GL Actuals")


def test_upload_for_import_refuses_wrong_header_before_uploading(
    rsps: responses.RequestsMock, client: AnaplanClient
) -> None:
    rsps.add(responses.GET, f"{MP}/imports", json=paged("imports", IMPORTS))
    rsps.add(responses.GET, f"{MP}/imports/112000000005", json=import_meta())
    with pytest.raises(AnaplanHeaderMismatch, match=r"Load GL Actuals.*Amount"):
        client.upload_for_import(
            "Load GL Actuals", [b"Entity,Account,Period,Version\nUSMF,110110,Jan 25,Actual\n"]
        )
    assert not api_calls(rsps, "/files/")


# --- upload ------------------------------------------------------------------------------------------


def test_small_file_single_shot_put(rsps: responses.RequestsMock, client: AnaplanClient) -> None:
    rsps.add(responses.PUT, f"{MP}/files/113000000005", status=204)
    data = b"Entity,Account,Period,Version,Amount\nUSMF,110110,Jan 25,Actual,100.00\n"
    result = client.upload_file("113000000005", [data[:10], data[10:]])
    put = api_calls(rsps, "/files/")[0].request
    assert put.headers["Content-Type"] == "application/octet-stream"
    assert put.body == data
    assert result.single_shot and result.bytes_read == len(data)


def _csv(n_bytes: int) -> bytes:
    line = b"USMF,110110,001,OU_3566,022,Jan 25,Actual,1234.56\n"
    return b"Entity,Account,BusinessUnit,CostCenter,Department,Period,Version,Amount\n" + line * (
        n_bytes // len(line)
    )


def test_chunked_upload_gzip_complete(rsps: responses.RequestsMock, client: AnaplanClient) -> None:
    fid = "113000000005"
    rsps.add(
        responses.POST,
        f"{MP}/files/{fid}",
        json=envelope(file={"id": fid, "name": "actuals.csv", "chunkCount": -1}),
    )
    for i in range(3):
        rsps.add(responses.PUT, f"{MP}/files/{fid}/chunks/{i}", status=204)
    rsps.add(responses.POST, f"{MP}/files/{fid}/complete", json=envelope(file={"id": fid, "chunkCount": 3}))
    data = _csv(2_500_000)
    result = client.upload_file(fid, io.BytesIO(data), chunk_size_mb=1)
    calls = api_calls(rsps, "/files/")
    assert json.loads(calls[0].request.body) == {"chunkCount": -1}
    puts = [c.request for c in calls if c.request.method == "PUT"]
    assert [p.url.rsplit("/", 1)[1] for p in puts] == ["0", "1", "2"]
    assert all(p.headers["Content-Type"] == "application/x-gzip" for p in puts)
    assert [len(gzip.decompress(p.body)) for p in puts] == [1_000_000, 1_000_000, len(data) - 2_000_000]
    assert b"".join(gzip.decompress(p.body) for p in puts) == data
    complete = json.loads(calls[-1].request.body)
    assert complete["id"] == fid and complete["chunkCount"] == 3 and complete["name"] == "actuals.csv"
    assert result.chunks == 3 and result.compression_ratio > 5


def test_generator_source_is_rechunked(rsps: responses.RequestsMock, client: AnaplanClient) -> None:
    fid = "113000000005"
    rsps.add(responses.POST, f"{MP}/files/{fid}", json=envelope(file={"id": fid}))
    rsps.add(responses.PUT, f"{MP}/files/{fid}/chunks/0", status=204)
    rsps.add(responses.PUT, f"{MP}/files/{fid}/chunks/1", status=204)
    rsps.add(responses.POST, f"{MP}/files/{fid}/complete", json=envelope(file={"id": fid}))
    data = _csv(1_500_000)
    pieces = (data[i : i + 65536] for i in range(0, len(data), 65536))
    result = client.upload_file(fid, pieces, chunk_size_mb=1)
    assert result.chunks == 2 and result.bytes_read == len(data)


def test_failed_chunk_is_retried_alone(
    rsps: responses.RequestsMock, client: AnaplanClient, clock: FakeClock
) -> None:
    fid = "113000000005"
    rsps.add(responses.POST, f"{MP}/files/{fid}", json=envelope(file={"id": fid}))
    rsps.add(responses.PUT, f"{MP}/files/{fid}/chunks/0", status=204)
    rsps.add(
        responses.PUT,
        f"{MP}/files/{fid}/chunks/1",
        status=503,
        json={"status": {"code": 503, "message": "Unavailable"}},
    )
    rsps.add(responses.PUT, f"{MP}/files/{fid}/chunks/1", body=requests.ConnectionError("reset"))
    rsps.add(responses.PUT, f"{MP}/files/{fid}/chunks/1", status=204)
    rsps.add(responses.PUT, f"{MP}/files/{fid}/chunks/2", status=204)
    rsps.add(responses.POST, f"{MP}/files/{fid}/complete", json=envelope(file={"id": fid}))
    client.upload_file(fid, io.BytesIO(_csv(2_200_000)), chunk_size_mb=1)
    order = [c.request.url.rsplit("/", 1)[1] for c in api_calls(rsps, "/chunks/")]
    assert order == ["0", "1", "1", "1", "2"]
    assert len(clock.sleeps) == 2


def test_too_many_chunks_known_size(
    rsps: responses.RequestsMock, client: AnaplanClient, tmp_path: Any
) -> None:
    big = tmp_path / "big.csv"
    with big.open("wb") as fh:
        fh.truncate(1001 * 1_000_000)
    with big.open("rb") as fh, pytest.raises(AnaplanFileTooLarge, match=r"1001 chunks.*at most 1000"):
        client.upload_file("113000000005", fh, chunk_size_mb=1)
    assert not api_calls(rsps)


def test_too_many_chunks_stream(
    rsps: responses.RequestsMock, client: AnaplanClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upload_mod, "MAX_CHUNKS", 2)
    fid = "113000000005"
    rsps.add(responses.POST, f"{MP}/files/{fid}", json=envelope(file={"id": fid}))
    rsps.add(responses.PUT, f"{MP}/files/{fid}/chunks/0", status=204)
    rsps.add(responses.PUT, f"{MP}/files/{fid}/chunks/1", status=204)
    with pytest.raises(AnaplanFileTooLarge, match="more than 2 chunks"):
        client.upload_file(fid, iter([_csv(2_500_000)]), chunk_size_mb=1)
    assert not api_calls(rsps, "/complete")


def test_chunk_size_bounds(client: AnaplanClient) -> None:
    with pytest.raises(ValueError, match="1-50 MB"):
        client.upload_file("113000000005", [b"x"], chunk_size_mb=51)


# --- tasks -------------------------------------------------------------------------------------------


def test_start_import_body_and_task_id(rsps: responses.RequestsMock, client: AnaplanClient) -> None:
    rsps.add(responses.GET, f"{MP}/imports", json=paged("imports", IMPORTS))
    rsps.add(
        responses.POST,
        f"{MP}/imports/112000000005/tasks",
        json=envelope(
            task={"taskId": "5E6331685CC648A29B725923B8FAEA1C", "taskState": "NOT_STARTED", "creationTime": 1}
        ),
    )
    import_id, task_id = client.start_import(
        "Load GL Actuals", mapping_parameters=[{"entityType": "Version", "entityName": "Actual"}]
    )
    assert (import_id, task_id) == ("112000000005", "5E6331685CC648A29B725923B8FAEA1C")
    raw = api_calls(rsps, "/tasks")[0].request.body
    assert raw.index(b"localeName") < raw.index(b"mappingParameters")
    assert json.loads(raw)["localeName"] == "en_US"


def test_start_task_bare_task_id_answer(rsps: responses.RequestsMock, client: AnaplanClient) -> None:
    rsps.add(responses.POST, f"{MP}/exports/116000000001/tasks", json={"taskId": "ABC"})
    assert client.start_task("exports", "116000000001") == "ABC"


def _task(state: str, **result: Any) -> dict[str, Any]:
    task: dict[str, Any] = {"taskId": "T1", "taskState": state, "creationTime": 1}
    if result:
        task["result"] = {"objectId": "112000000005", **result}
    return task


def _details(**counts: int) -> list[dict[str, Any]]:
    values: list[str] = ["hierarchyName", "Accounts"]
    for k, v in counts.items():
        values += [k, str(v)]
    return [
        {
            "type": "hierarchyRowsProcessed",
            "localMessageText": "Accounts: rows",
            "occurrences": 0,
            "values": values,
        }
    ]


@pytest.mark.parametrize(
    ("task", "outcome"),
    [
        (_task("IN_PROGRESS"), None),
        (_task("NOT_STARTED"), None),
        (_task("CANCELLING"), None),
        (_task("CANCELLED"), Outcome.CANCELLED),
        (
            _task(
                "COMPLETE",
                successful=True,
                failureDumpAvailable=False,
                details=_details(successRowCount=5, totalRowCount=5),
            ),
            Outcome.SUCCESS,
        ),
        (_task("COMPLETE", successful=True, failureDumpAvailable=True), Outcome.SUCCESS_WITH_WARNINGS),
        (
            _task("COMPLETE", successful=True, details=_details(totalRowCount=5, ignoredCount=1)),
            Outcome.SUCCESS_WITH_WARNINGS,
        ),
        (_task("COMPLETE", successful=False, failureDumpAvailable=True), Outcome.FAILED),
        (
            _task(
                "COMPLETE",
                successful=True,
                nestedResults=[
                    {"objectId": "112000000001", "successful": True},
                    {"objectId": "112000000005", "successful": False},
                ],
            ),
            Outcome.FAILED,
        ),
        (
            _task(
                "COMPLETE",
                successful=True,
                nestedResults=[
                    {"objectId": "112000000001", "successful": True, "failureDumpAvailable": True}
                ],
            ),
            Outcome.SUCCESS_WITH_WARNINGS,
        ),
    ],
)
def test_classify(task: dict[str, Any], outcome: Outcome | None) -> None:
    assert classify(Task.model_validate(task)) == outcome


def test_check_task_counts_and_wait(
    rsps: responses.RequestsMock, client: AnaplanClient, clock: FakeClock
) -> None:
    url = f"{MP}/imports/112000000005/tasks/T1"
    rsps.add(responses.GET, url, json=envelope(task=_task("IN_PROGRESS")))
    rsps.add(
        responses.GET,
        url,
        json=envelope(
            task=_task(
                "COMPLETE",
                successful=True,
                failureDumpAvailable=True,
                details=_details(totalRowCount=10, successRowCount=8, failedCount=2),
            )
        ),
    )
    first = client.check_task("imports", "112000000005", "T1", elapsed_seconds=0)
    assert not first.terminal and first.next_wait_seconds == 5
    second = client.check_task("imports", "112000000005", "T1", elapsed_seconds=400)
    assert clock.sleeps == [5.0]  # never two polls of one task within 5 s
    assert second.terminal and second.outcome is Outcome.SUCCESS_WITH_WARNINGS
    assert second.counts.total == 10 and second.counts.failed == 2
    assert second.next_wait_seconds == 30


def test_poll_interval_grows() -> None:
    waits = [next_poll_wait(s) for s in (0, 59, 60, 299, 300, 1799, 1800, 10_000)]
    assert waits == sorted(waits) and min(waits) >= 5 and waits[-1] == 60


def test_cancel_uses_delete(rsps: responses.RequestsMock, client: AnaplanClient) -> None:
    rsps.add(responses.DELETE, f"{MP}/imports/112000000005/tasks/T1", json=envelope(task=_task("CANCELLING")))
    task = client.cancel_task("imports", "112000000005", "T1")
    assert task is not None and task.task_state == "CANCELLING"


# --- downloads ---------------------------------------------------------------------------------------


def test_export_download_streams_chunks_in_order(rsps: responses.RequestsMock, client: AnaplanClient) -> None:
    fid = "116000000001"
    rsps.add(
        responses.GET,
        f"{MP}/files/{fid}/chunks",
        json=paged("chunks", [{"id": "0", "name": "Chunk 0"}, {"id": "1", "name": "Chunk 1"}]),
    )
    rsps.add(
        responses.GET,
        f"{MP}/files/{fid}/chunks/0",
        body=b"Entity,Amount\n",
        content_type="application/octet-stream",
    )
    rsps.add(
        responses.GET,
        f"{MP}/files/{fid}/chunks/1",
        body=b"USMF,1.00\n",
        content_type="application/octet-stream",
    )
    out = io.BytesIO()
    assert client.download_file(fid, out) == 24
    assert out.getvalue() == b"Entity,Amount\nUSMF,1.00\n"


def test_dump_download(rsps: responses.RequestsMock, client: AnaplanClient) -> None:
    base = f"{MP}/imports/112000000005/tasks/T1/dump"
    rsps.add(responses.GET, f"{base}/chunks", json=paged("chunks", [{"id": "0", "name": "Chunk 0"}]))
    rsps.add(responses.GET, f"{base}/chunks/0", body=b"_Status_,_Line_,_Error_1_\nE,2,Item not located\n")
    out = io.BytesIO()
    client.download_dump("112000000005", "T1", out)
    assert out.getvalue().startswith(b"_Status_")


def test_process_dump_path(rsps: responses.RequestsMock, client: AnaplanClient) -> None:
    base = f"{MP}/processes/118000000001/tasks/T1/dumps/112000000005"
    rsps.add(responses.GET, f"{base}/chunks", json=paged("chunks", [{"id": "0"}]))
    rsps.add(responses.GET, f"{base}/chunks/0", body=b"x")
    out = io.BytesIO()
    assert client.download_process_dump("118000000001", "T1", "112000000005", out) == 1


# --- errors and limits -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "said"),
    [
        (409, AnaplanModelBusy, "Model is busy"),
        (423, AnaplanModelLocked, "Model locked"),
        (422, AnaplanModelArchived, "Model archived"),
        (404, AnaplanNotFound, "Not Found"),
        (400, AnaplanError, "Bad request"),
    ],
)
def test_model_state_errors(
    rsps: responses.RequestsMock, client: AnaplanClient, status: int, error: type[Exception], said: str
) -> None:
    rsps.add(
        responses.POST,
        f"{MP}/imports/112000000005/tasks",
        status=status,
        json={
            "status": {"code": status, "message": said},
            "path": "/2/0/x",
            "timestamp": "2026-01-01T00:00:00Z",
        },
    )
    with pytest.raises(error) as err:
        client.start_task("imports", "112000000005")
    text = str(err.value)
    assert (
        f"POST /workspaces/{client.workspace_id}/models/{client.model_id}/imports/112000000005/tasks" in text
    )
    assert "import 112000000005" in text and said in text and f"HTTP {status}" in text
    assert "tok-1" not in text
    assert len(api_calls(rsps)) == 1  # not retried in-call (the ASL retries Transient ones)


def test_429_honours_retry_after(
    rsps: responses.RequestsMock, client: AnaplanClient, clock: FakeClock
) -> None:
    url = f"{MP}/imports"
    rsps.add(
        responses.GET,
        url,
        status=429,
        headers={"Retry-After": "7"},
        json={"status": {"code": 429, "message": "Too many"}},
    )
    rsps.add(responses.GET, url, status=429, headers={"Retry-After": "2"})
    rsps.add(responses.GET, url, json=paged("imports", IMPORTS))
    client.find_import("Load Accounts")
    assert clock.sleeps == [7.0, 2.0]


def test_429_without_retry_after_backs_off_exponentially(
    rsps: responses.RequestsMock, clock: FakeClock, make_client: Any
) -> None:
    import random

    add_auth(rsps, clock)
    client = make_client(rng=random.Random(1), max_attempts=5)
    url = f"{MP}/imports"
    for _ in range(5):
        rsps.add(
            responses.GET, url, status=429, json={"status": {"code": 429, "message": "Rate limit exceeded"}}
        )
    with pytest.raises(AnaplanThrottled, match=r"imports .*429 after 5 attempts.*Rate limit exceeded"):
        client.find_import("Load Accounts")
    sleeps = [s for s in clock.sleeps if s >= 1.0]
    assert len(sleeps) == 4
    caps = [1, 2, 4, 8]
    assert all(1.0 <= s <= cap for s, cap in zip(sleeps, caps, strict=True))
    assert sleeps != [1.0, 2.0, 4.0, 8.0]  # jittered


def test_5xx_and_connection_errors_retried_then_unavailable(
    rsps: responses.RequestsMock, client: AnaplanClient
) -> None:
    url = f"{MP}/imports"
    rsps.add(responses.GET, url, status=502, body="Bad gateway")
    rsps.add(responses.GET, url, body=requests.ConnectionError("reset"))
    rsps.add(responses.GET, url, json=paged("imports", IMPORTS))
    assert client.find_import("Load Accounts").id == "112000000001"
    rsps.replace(responses.GET, url, status=503, body="down")
    client.forget_catalogue()
    with pytest.raises(AnaplanUnavailable, match=r"imports .*HTTP 503 after 5 attempts.*down"):
        client.find_import("Load Accounts")


def test_retry_after_http_date() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_rate_limiter_keeps_under_limit(clock: FakeClock) -> None:
    limiter = RateLimiter(540, clock=clock, sleep=clock.sleep)
    start = clock()
    times = []
    for _ in range(2000):
        limiter.acquire()
        times.append(clock())
    # any 60-second window holds fewer than 600 requests
    j = 0
    worst = 0
    for i, t in enumerate(times):
        while times[j] <= t - 60:
            j += 1
        worst = max(worst, i - j + 1)
    assert worst < 600
    assert clock() - start > 60 * (2000 - 54) / 540 - 1


def test_client_uses_limiter(rsps: responses.RequestsMock, clock: FakeClock, make_client: Any) -> None:
    add_auth(rsps, clock)
    client = make_client(limiter=RateLimiter(60, clock=clock, sleep=clock.sleep))
    rsps.add(responses.GET, f"{MP}/imports/112000000005", json=import_meta())
    for _ in range(20):
        client.import_metadata("112000000005")
    assert sum(clock.sleeps) >= 13  # burst of 6, then one per second


def test_find_workspace_and_model_by_name(rsps: responses.RequestsMock, client: AnaplanClient) -> None:
    from anaplan_unit_support import API, MODEL, WS

    rsps.add(
        responses.GET,
        f"{API}/workspaces",
        json=paged("workspaces", [{"id": WS, "name": "FP&A", "active": True}]),
    )
    rsps.add(
        responses.GET,
        f"{API}/workspaces/{WS}/models",
        json=paged("models", [{"id": MODEL, "name": "Plan", "activeState": "UNLOCKED"}]),
    )
    assert client.find_workspace("FP&A").id == WS
    assert client.find_model("Plan").id == MODEL
    with pytest.raises(AnaplanNotFound, match="no model named 'Budget'"):
        client.find_model("Budget")


def test_model_status(rsps: responses.RequestsMock, client: AnaplanClient) -> None:
    from anaplan_unit_support import API, MODEL

    rsps.add(
        responses.GET,
        f"{API}/models/{MODEL}/status",
        json={"requestStatus": {"currentStep": "Processing ...", "progress": 0.4, "taskId": "T"}},
    )
    status = client.model_status()
    assert status.busy and status.task_id == "T"
