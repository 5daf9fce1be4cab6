"""The F&O data-management package API (dynamics-fo.md §4.3, dynamics-budget-fiscal.md §F).

Every call is an OData action on ``DataManagementDefinitionGroups`` through the connection's
:class:`~d365_anaplan.dynamics.odata.ODataClient` (bearer token, retries). Answers wrap their result in
``value``, sometimes twice, and some return a JSON *string* (``GetExecutionErrors``, ``GetAzureWriteUrl``):
:func:`action_value` unwraps all of these.

Packages travel through Azure blob storage on SAS URLs. :class:`BlobTransfer` is the only thing that talks
to the blob host: its own :class:`~d365_anaplan.http.VerifiedSession` may reach the configured
``dynamics.package.blob_host`` and nothing else, carries no credential (the SAS in the URL is the
authorisation; the F&O token never goes there), follows no redirect and streams the package into S3 with
a multipart upload, so a package never sits whole in memory. A refused SAS (HTTP 403
``AuthenticationFailed``, e.g. expired) is :class:`PackageUrlRefused` for the caller to request a fresh URL.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from enum import StrEnum
from typing import Any

import requests
from boto3.s3.transfer import TransferConfig

from d365_anaplan.dynamics.odata import ODataClient
from d365_anaplan.dynamics.odata_shapes import loads, parse_error
from d365_anaplan.errors import (
    DynamicsAuthError,
    DynamicsBadResponse,
    DynamicsError,
    DynamicsUnavailable,
    UnsafeDestination,
)
from d365_anaplan.http import Destinations, VerifiedSession
from d365_anaplan.urls import UrlProblem, origin_of, parse_base_url, redacted

log = logging.getLogger(__name__)

ACTION_SET = "DataManagementDefinitionGroups"
_ACTION = f"{ACTION_SET}/Microsoft.Dynamics.DataEntities."
BLOB = "fo-package-blob"  # destination kind of the blob host (no credential ever goes there)
_TRANSFER = TransferConfig(multipart_chunksize=8 * 1024 * 1024, max_concurrency=2, use_threads=True)


class ExecutionStatus(StrEnum):
    """``GetExecutionSummaryStatus`` answers (§4.3)."""

    UNKNOWN = "Unknown"
    NOT_RUN = "NotRun"
    EXECUTING = "Executing"
    SUCCEEDED = "Succeeded"
    PARTIALLY_SUCCEEDED = "PartiallySucceeded"
    FAILED = "Failed"
    CANCELED = "Canceled"

    @property
    def running(self) -> bool:
        return self in (ExecutionStatus.NOT_RUN, ExecutionStatus.EXECUTING)

    @property
    def failed(self) -> bool:
        return self in (
            ExecutionStatus.PARTIALLY_SUCCEEDED,
            ExecutionStatus.FAILED,
            ExecutionStatus.CANCELED,
        )


def action_value(payload: Any, what: str, *, json_string: bool = False) -> Any:
    """The result of an action: ``value`` unwrapped (once or twice); with ``json_string`` a JSON text
    inside it parsed too (``GetAzureWriteUrl``)."""
    value = payload
    for _ in range(2):
        if isinstance(value, dict) and "value" in value:
            value = value["value"]
    if json_string and isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise DynamicsBadResponse(f"{what}: value is not the JSON text F&O documents") from None
    return value


class PackageApi:
    """The package actions of one environment (``definitionGroupId`` is the data project's name)."""

    def __init__(self, client: ODataClient) -> None:
        self.client = client

    def _call(self, action: str, body: dict[str, Any], what: str, *, idempotent: bool = True) -> Any:
        return self.client.action(f"{_ACTION}{action}", body, what=what, idempotent=idempotent)

    def _start(self, action: str, project: str, execution_id: str, legal_entity: str, **extra: Any) -> str:
        """Start a job of the data project for one legal entity; the execution id F&O returns."""
        what = f"{action} {project!r} for {legal_entity}"
        body = {
            "definitionGroupId": project,
            "executionId": execution_id,
            "legalEntityId": legal_entity,
            **extra,
        }
        # Never sent twice by the client: a start whose answer was lost is found by the status check of the
        # state machine's retry, not repeated blindly.
        value = action_value(self._call(action, body, what, idempotent=False), what)
        if not isinstance(value, str) or not value:
            raise DynamicsBadResponse(f"{what}: no execution id returned")
        return value

    def export_to_package(self, project: str, package_name: str, execution_id: str, legal_entity: str) -> str:
        return self._start(
            "ExportToPackage", project, execution_id, legal_entity, packageName=package_name, reExecute=False
        )

    def status(self, execution_id: str) -> ExecutionStatus:
        what = f"GetExecutionSummaryStatus {execution_id}"
        return _status_of(self._call("GetExecutionSummaryStatus", {"executionId": execution_id}, what), what)

    def known_status(self, execution_id: str) -> ExecutionStatus:
        """:meth:`status` of an id that may never have been used, read before starting a job under it.

        Only an answer that says so means "never started": the documented ``Unknown``, or (F&O's answer for an
        unused id is UNCONFIRMED) an error whose text says this execution id was not found. Any other HTTP 5xx
        leaves it unknown whether the job was started: :class:`DynamicsUnavailable`, so the state machine asks
        again later and the job is never started twice. Other errors (authorisation, a missing action) raise.
        """
        what = f"GetExecutionSummaryStatus {execution_id}"
        url = self.client.url(f"{_ACTION}GetExecutionSummaryStatus")
        try:
            resp = self.client.request(
                "POST", url, what=what, json_body={"executionId": execution_id}, ok=(200, 201, 204, 500)
            )
        except DynamicsAuthError:
            raise
        except DynamicsError as exc:
            if _says_unused(str(exc), execution_id):
                return ExecutionStatus.UNKNOWN
            raise
        if resp.status_code < 300:
            return _status_of(loads(resp.content, what) if resp.content else None, what)
        text = parse_error(resp.status_code, resp.content).text()
        if _says_unused(text, execution_id):
            return ExecutionStatus.UNKNOWN
        raise DynamicsUnavailable(
            f"{what}: F&O answered HTTP {resp.status_code} ({text[:200]}); whether the job was already "
            "started is unknown, so it is not started again until F&O answers"
        )

    def errors(self, execution_id: str) -> list[str]:
        """``GetExecutionErrors``: a JSON list of messages (also accepted as a JSON text of one)."""
        what = f"GetExecutionErrors {execution_id}"
        try:
            value = action_value(
                self._call("GetExecutionErrors", {"executionId": execution_id}, what), what, json_string=True
            )
        except DynamicsBadResponse:
            return []
        if isinstance(value, list):
            return [str(v.get("ErrorMessage", v) if isinstance(v, dict) else v)[:500] for v in value]
        return [str(value)[:500]] if value else []

    def exported_package_url(self, execution_id: str) -> str:
        what = f"GetExportedPackageUrl {execution_id}"
        value = action_value(self._call("GetExportedPackageUrl", {"executionId": execution_id}, what), what)
        if not isinstance(value, str) or not value.startswith("https://"):
            raise DynamicsBadResponse(f"{what}: no https package URL returned")
        return value

    def azure_write_url(self, unique_file_name: str) -> str:
        """The SAS URL to upload a package to (``value`` is a JSON text of BlobId and BlobUrl)."""
        what = f"GetAzureWriteUrl {unique_file_name}"
        value = action_value(
            self._call("GetAzureWriteUrl", {"uniqueFileName": unique_file_name}, what), what, json_string=True
        )
        if not isinstance(value, dict) or not isinstance(value.get("BlobUrl"), str):
            raise DynamicsBadResponse(f"{what}: no BlobUrl returned")
        return str(value["BlobUrl"])

    def import_from_package(
        self, package_url: str, project: str, execution_id: str, legal_entity: str
    ) -> str:
        """Start an import that also runs staging to target (``execute``); ``overwrite`` false (§F)."""
        return self._start(
            "ImportFromPackage", project, execution_id, legal_entity, packageUrl=package_url, execute=True,
            overwrite=False,
        )  # fmt: skip


def _status_of(payload: Any, what: str) -> ExecutionStatus:
    value = action_value(payload, what)
    try:
        return ExecutionStatus(str(value))
    except ValueError:
        raise DynamicsBadResponse(f"{what}: unknown status {str(value)[:40]!r}") from None


def _says_unused(text: str, execution_id: str) -> bool:
    """F&O's error names this execution id as not found / not existing (the UNCONFIRMED form of "Unknown")."""
    if not execution_id or not re.search(rf"(?<![\w-]){re.escape(execution_id)}(?![\w-])", text):
        return False
    lowered = text.lower()
    return "not found" in lowered or "does not exist" in lowered


# --- blob storage ---------------------------------------------------------------------------------------


class PackageUrlRefused(DynamicsError):
    """The blob host refused the SAS URL (HTTP 403 AuthenticationFailed): request a fresh URL."""


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (for ``upload_fileobj``)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        self.total += n
        return n


class BlobTransfer:
    """Downloads and uploads of packages on SAS URLs of the one configured blob host."""

    def __init__(self, blob_host: str, *, ca_bundle: str | None, timeout: float, max_bytes: int) -> None:
        self.origin = parse_base_url(blob_host).origin
        self.session = VerifiedSession(
            ca_bundle=ca_bundle,
            timeout=timeout,
            destinations=Destinations({BLOB: frozenset({self.origin})}),
            max_response_bytes=max_bytes,
            stream_bodies=True,
        )

    def _check(self, url: str, what: str) -> None:
        try:
            origin = origin_of(url)
        except UrlProblem as exc:
            raise UnsafeDestination(f"{what}: the package URL {exc}; not used") from None
        if origin != self.origin:
            raise UnsafeDestination(
                f"{what}: F&O handed out a package URL on {origin}, not on dynamics.package.blob_host "
                f"{self.origin}; not used (allow and configure the storage host F&O uses)"
            )

    def _answer(self, resp: requests.Response, what: str) -> None:
        status = resp.status_code
        if 200 <= status < 300:
            return
        body = resp.content[:2000].decode("utf-8", "replace")
        resp.close()
        code = _xml_text(body, "Code")
        if status == 403 and code in ("AuthenticationFailed", "AuthorizationFailure", ""):
            raise PackageUrlRefused(
                f"{what}: the blob host refused the SAS URL (HTTP 403 {code or 'Forbidden'})"
            )
        if status in (429, 500, 502, 503, 504):
            raise DynamicsUnavailable(f"{what}: the blob host answered HTTP {status} {code}".rstrip())
        raise DynamicsError(
            f"{what}: the blob host answered HTTP {status} {code} {_xml_text(body, 'Message')[:200]}".rstrip()
        )

    def download_to_s3(self, url: str, s3: Any, bucket: str, key: str, *, what: str) -> int:
        """Stream the blob at ``url`` into ``s3://bucket/key``; the number of bytes."""
        self._check(url, what)
        where = f"{what} ({redacted(url)})"
        try:
            resp = self.session.get(url, headers={"x-ms-version": "2021-08-06"})
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise DynamicsUnavailable(f"{where}: {type(exc).__name__}") from None
        self._answer(resp, where)
        reader = _ChunkReader(self.session.iter_bounded(resp, 1024 * 1024))
        try:
            s3.upload_fileobj(reader, bucket, key, Config=_TRANSFER)
        except (requests.RequestException, OSError) as exc:
            raise DynamicsUnavailable(f"{where}: download interrupted ({type(exc).__name__})") from None
        log.info("%s: %d bytes staged at s3://%s/%s", where, reader.total, bucket, key)
        return reader.total

    def upload(self, url: str, body: Any, length: int, *, what: str) -> None:
        """Put Blob from a file object, with ``x-ms-blob-type: BlockBlob`` (which Put Blob requires)."""
        self._check(url, what)
        where = f"{what} ({redacted(url)})"
        headers = {"x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06",
                   "Content-Type": "application/zip", "Content-Length": str(length)}  # fmt: skip
        try:
            resp = self.session.put(url, data=body, headers=headers)
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise DynamicsUnavailable(f"{where}: {type(exc).__name__}") from None
        self._answer(resp, where)
        resp.close()


def _xml_text(body: str, tag: str) -> str:
    start = body.find(f"<{tag}>")
    end = body.find(f"</{tag}>")
    if start < 0 or end < start:
        return ""
    return body[start + len(tag) + 2 : end].strip()
