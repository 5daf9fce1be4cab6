"""The package API client: F&O's wrapped answers, and the blob host reached with the SAS only (no credential,
no other host, no redirect), the package streamed into S3."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest
import responses
from dyn_support import DATA, NS, fo_error_body, make_client

from d365_anaplan.dynamics.dmf import (
    BlobTransfer,
    ExecutionStatus,
    PackageApi,
    PackageUrlRefused,
    action_value,
)
from d365_anaplan.errors import (
    DynamicsAuthError,
    DynamicsBadResponse,
    DynamicsError,
    DynamicsUnavailable,
    RedirectRefused,
    ResponseTooLarge,
    UnsafeDestination,
)

BUCKET = "staging"
HOST = "https://fostore.blob.core.windows.net"
SAS = f"{HOST}/dmf/exec-1/pkg.zip?sv=2021-08-06&sr=b&sp=r&se=2030-01-01T00%3A00%3A00Z&sig=abc"


def transfer(max_bytes: int = 64 * 1024 * 1024) -> BlobTransfer:
    return BlobTransfer(HOST, ca_bundle=None, timeout=5, max_bytes=max_bytes)


def test_answers_are_unwrapped_once_twice_and_from_a_json_string() -> None:
    assert action_value({"value": "id-1"}, "x") == "id-1"
    assert action_value({"value": {"value": "Succeeded"}}, "x") == "Succeeded"
    write = {"value": '{"BlobId":"{A1}","BlobUrl":"https://h/x?sig=1"}'}
    assert action_value(write, "x", json_string=True) == {"BlobId": "{A1}", "BlobUrl": "https://h/x?sig=1"}
    with pytest.raises(DynamicsBadResponse):
        action_value({"value": "{not json"}, "x", json_string=True)
    assert ExecutionStatus("PartiallySucceeded").failed and ExecutionStatus("NotRun").running


def test_the_package_streams_into_s3_with_no_credential_sent(s3: Any) -> None:
    body = bytes(range(256)) * 50_000  # 12.8 MB: more than one multipart part
    with responses.RequestsMock() as mocked:
        mocked.get(SAS.split("?")[0], body=body, status=200)
        size = transfer().download_to_s3(SAS, s3, BUCKET, "pkg.zip", what="package")
        sent = mocked.calls[0].request
    assert size == len(body)
    assert "Authorization" not in sent.headers and "sig=abc" in str(sent.url)
    stored = s3.get_object(Bucket=BUCKET, Key="pkg.zip")["Body"].read()
    assert hashlib.sha256(stored).digest() == hashlib.sha256(body).digest()


def test_a_url_on_another_host_is_never_requested(s3: Any) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.get("https://evil.example.com/x", body=b"")
        with pytest.raises(UnsafeDestination, match=r"not on dynamics\.package\.blob_host"):
            transfer().download_to_s3("https://evil.example.com/x?sig=1", s3, BUCKET, "k", what="package")
        assert not mocked.calls


def test_an_expired_sas_is_refused_and_redirects_are_not_followed(s3: Any) -> None:
    expired = "<?xml version='1.0'?><Error><Code>AuthenticationFailed</Code><Message>Server failed</Message></Error>"
    with responses.RequestsMock() as mocked:
        mocked.get(SAS.split("?")[0], body=expired, status=403)
        with pytest.raises(PackageUrlRefused, match="403 AuthenticationFailed"):
            transfer().download_to_s3(SAS, s3, BUCKET, "k", what="package")
    with responses.RequestsMock() as mocked:
        mocked.get(SAS.split("?")[0], status=302, headers={"Location": "https://elsewhere.example.com/p"})
        with pytest.raises(RedirectRefused):
            transfer().download_to_s3(SAS, s3, BUCKET, "k", what="package")


def test_a_package_past_the_size_cap_is_refused_while_streaming(s3: Any) -> None:
    with responses.RequestsMock() as mocked:
        mocked.get(SAS.split("?")[0], body=b"x" * 5000, status=200, auto_calculate_content_length=False)
        with pytest.raises(ResponseTooLarge, match="larger than 4,096 bytes"):
            transfer(max_bytes=4096).download_to_s3(SAS, s3, BUCKET, "k", what="package")
    listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    assert not listed, "nothing half-written"


def test_a_package_is_put_as_a_block_blob_with_the_sas_only() -> None:
    with responses.RequestsMock() as mocked:
        mocked.put(SAS.split("?")[0], status=201)
        transfer().upload(SAS, io.BytesIO(b"PK\x05\x06" + bytes(18)), 22, what="package")
        sent = mocked.calls[0].request
    assert sent.headers["x-ms-blob-type"] == "BlockBlob" and "Authorization" not in sent.headers
    with pytest.raises(UnsafeDestination):
        transfer().upload("https://evil.example.com/x?sig=1", io.BytesIO(b""), 0, what="package")


@responses.activate
def test_an_unused_execution_id_reads_as_unknown_whether_fo_says_so_or_errs() -> None:
    """UNCONFIRMED which one F&O does for an id it never saw: both are Unknown; a 401 is still an error."""
    client, _, _ = make_client()
    api = PackageApi(client)
    url = f"{DATA}/DataManagementDefinitionGroups/{NS}.GetExecutionSummaryStatus"
    responses.post(url, json={"value": "Unknown"})
    responses.post(url, status=500, body=fo_error_body("Execution id x was not found", "X.ErrorException"))
    responses.post(url, status=401)
    responses.post(url, status=401)
    assert api.known_status("x") is ExecutionStatus.UNKNOWN
    assert api.known_status("x") is ExecutionStatus.UNKNOWN
    with pytest.raises(DynamicsAuthError):
        api.known_status("x")


@responses.activate
def test_a_status_error_that_does_not_say_the_id_is_unused_never_reads_as_not_started() -> None:
    """A 500 while asking leaves it unknown whether the job was started: transient (the state machine asks
    again), never Unknown (which would start the job a second time); a missing action is an error."""
    client, _, _ = make_client()
    api = PackageApi(client)
    url = f"{DATA}/DataManagementDefinitionGroups/{NS}.GetExecutionSummaryStatus"
    responses.post(url, status=500, body=fo_error_body("Object reference not set", "X.ErrorException"))
    responses.post(url, status=404, body=fo_error_body("The action is not bound", "X.ErrorException"))
    responses.post(url, status=500, body=fo_error_body("Execution id y was not found", "X.ErrorException"))
    with pytest.raises(DynamicsUnavailable, match=r"GetExecutionSummaryStatus x: F&O answered HTTP 500"):
        api.known_status("x")
    with pytest.raises(DynamicsError, match="404"):
        api.known_status("x")
    with pytest.raises(DynamicsUnavailable):
        api.known_status("x")  # another id not found is not this one


@pytest.mark.parametrize("status", [502, 504])
@responses.activate
def test_starting_a_job_is_not_sent_again_when_its_outcome_is_unknown(status: int) -> None:
    client, _, _ = make_client()
    api = PackageApi(client)
    for action in ("ImportFromPackage", "ExportToPackage"):
        responses.post(f"{DATA}/DataManagementDefinitionGroups/{NS}.{action}", status=status)
    with pytest.raises(DynamicsUnavailable, match="outcome is unknown"):
        api.import_from_package(SAS, "Budget import", "exec-1", "USMF")
    with pytest.raises(DynamicsUnavailable, match="outcome is unknown"):
        api.export_to_package("GL export", "exec-2.zip", "exec-2", "USMF")
    assert len(responses.calls) == 2, "each start sent once"


def test_an_error_answer_of_the_blob_host_is_read_no_further_than_64_kib() -> None:
    """An error body is the host's message, not a package: at most 64 KiB of it is read."""
    expired = b"<?xml version='1.0'?><Error><Code>AuthenticationFailed</Code></Error>" + b" " * 5_000_000
    with responses.RequestsMock() as mocked:
        mocked.get(SAS.split("?")[0], body=expired, status=403)
        resp = transfer().session.get(SAS)
    assert len(resp.content) == 64 * 1024
    with responses.RequestsMock() as mocked:
        mocked.get(SAS.split("?")[0], body=expired, status=403)
        with pytest.raises(PackageUrlRefused, match="403 AuthenticationFailed"):
            transfer().download_to_s3(SAS, None, BUCKET, "k", what="package")


@pytest.mark.parametrize("declared", ["\u00b2", "9" * 5000])
def test_an_unreadable_content_length_is_ignored_and_the_read_still_capped(declared: str, s3: Any) -> None:
    with responses.RequestsMock() as mocked:
        mocked.get(SAS.split("?")[0], body=b"x" * 5000, status=200, headers={"Content-Length": declared},
                   auto_calculate_content_length=False)  # fmt: skip
        with pytest.raises(ResponseTooLarge, match="larger than 4,096 bytes"):
            transfer(max_bytes=4096).download_to_s3(SAS, s3, BUCKET, "k", what="package")
