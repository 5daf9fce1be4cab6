"""The F&O sandbox's data-management package API follows the reference (dynamics-fo.md §4.3,
dynamics-budget-fiscal.md §F), not our client: raw HTTP, each test citing what it checks."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from d365_anaplan.http import VerifiedSession
from devkit.sandbox.dynamics.app import SandboxConfig
from devkit.sandbox.dynamics.cli import RunningSandbox, start
from devkit.sandbox.dynamics.dmf import DEFAULT_EXPORT_PROJECT
from devkit.sandbox.dynamics.testing import raw_token

pytestmark = pytest.mark.integration
ACTION = "DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities."


@pytest.fixture(scope="module")
def sb() -> Iterator[RunningSandbox]:
    running = start(SandboxConfig(gl_lines=600, months=2))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(sb: RunningSandbox) -> requests.Session:
    s = VerifiedSession(ca_bundle=sb.ca_bundle, timeout=30)
    s.headers["Authorization"] = f"Bearer {raw_token(sb)}"
    return s


@pytest.fixture
def blob(sb: RunningSandbox) -> requests.Session:
    return VerifiedSession(ca_bundle=sb.ca_bundle, timeout=30)  # no credential: the SAS is the authorisation


def call(http: requests.Session, sb: RunningSandbox, action: str, body: dict[str, Any]) -> requests.Response:
    return http.post(f"{sb.app.environment_url}/data/{ACTION}{action}", json=body)


def value(resp: requests.Response) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()["value"]


def export(http: requests.Session, sb: RunningSandbox, execution_id: str, company: str = "USMF") -> Any:
    return value(call(http, sb, "ExportToPackage", {"definitionGroupId": DEFAULT_EXPORT_PROJECT,
                 "packageName": "gl.zip", "executionId": execution_id, "reExecute": False, "legalEntityId": company}))  # fmt: skip


def status(http: requests.Session, sb: RunningSandbox, execution_id: str) -> str:
    return str(value(call(http, sb, "GetExecutionSummaryStatus", {"executionId": execution_id})))


def run_to_end(http: requests.Session, sb: RunningSandbox, execution_id: str) -> list[str]:
    seen = []
    for _ in range(20):
        seen.append(status(http, sb, execution_id))
        if seen[-1] not in ("NotRun", "Executing"):
            break
    return seen


def test_export_runs_as_a_job_whose_status_progresses_over_polls(
    http: requests.Session, sb: RunningSandbox
) -> None:
    """§4.3: ExportToPackage returns the execution id; GetExecutionSummaryStatus answers one of Unknown,
    NotRun, Executing, Succeeded, ...; the URL is there only once the package is created."""
    assert status(http, sb, "never-started") == "Unknown"
    assert export(http, sb, "c-1") == "c-1"
    assert value(call(http, sb, "GetExportedPackageUrl", {"executionId": "c-1"})) == ""
    seen = run_to_end(http, sb, "c-1")
    assert seen[0] == "NotRun" and "Executing" in seen and seen[-1] == "Succeeded"


def test_the_package_lies_on_another_host_behind_a_sas_with_the_reference_layout(
    http: requests.Session, blob: requests.Session, sb: RunningSandbox
) -> None:
    """§F: a zip of a manifest, a package header and one file per entity; §4.3: a blob URL with a SAS."""
    export(http, sb, "c-2", "DEMF")
    run_to_end(http, sb, "c-2")
    url = value(call(http, sb, "GetExportedPackageUrl", {"executionId": "c-2"}))
    assert url.startswith("https://") and "sig=" in url and "se=" in url
    assert url.split("/")[2] != sb.app.environment_url.split("/")[2], (
        "the storage host is not the environment"
    )
    resp = blob.get(url)
    assert resp.status_code == 200
    zf = zipfile.ZipFile(io.BytesIO(resp.content))
    assert sorted(zf.namelist()) == ["General journal account entry.csv", "Manifest.xml", "PackageHeader.xml"]
    rows = list(csv.DictReader(io.StringIO(zf.read("General journal account entry.csv").decode("utf-8-sig"))))
    assert rows and {r["DATAAREA"] for r in rows} == {"demf"}
    assert {"ACCOUNTINGDATE", "ACCOUNTINGCURRENCYAMOUNT", "ACCOUNTDISPLAYVALUE", "VOUCHER"} <= set(rows[0])
    unsigned = url.split("?")[0]
    refused = blob.get(unsigned)
    assert refused.status_code == 403 and "<Code>AuthenticationFailed</Code>" in refused.text


def test_an_expired_sas_is_403_authentication_failed(
    http: requests.Session, blob: requests.Session, sb: RunningSandbox
) -> None:
    """§4.3: the SAS is time-limited; Azure answers an expired one with 403 AuthenticationFailed."""
    export(http, sb, "c-3")
    run_to_end(http, sb, "c-3")
    sb.app.packages.expire_next_urls = 1
    expired = value(call(http, sb, "GetExportedPackageUrl", {"executionId": "c-3"}))
    resp = blob.get(expired)
    assert resp.status_code == 403 and "AuthenticationFailed" in resp.text and "expiry" in resp.text
    fresh = value(call(http, sb, "GetExportedPackageUrl", {"executionId": "c-3"}))
    assert blob.get(fresh).status_code == 200


def test_a_failed_export_reports_failed_and_its_errors(http: requests.Session, sb: RunningSandbox) -> None:
    """§4.3: Failed is a final status; GetExecutionErrors gives a JSON list of messages."""
    sb.app.packages.fail_next_export = "Ledger account is missing"
    export(http, sb, "c-4")
    assert run_to_end(http, sb, "c-4")[-1] == "Failed"
    errors = value(call(http, sb, "GetExecutionErrors", {"executionId": "c-4"}))
    assert any("Ledger account is missing" in e for e in json.loads(errors))
    assert value(call(http, sb, "GetExportedPackageUrl", {"executionId": "c-4"})) == ""


def test_an_unknown_project_is_refused_and_actions_need_the_token(
    sb: RunningSandbox, http: requests.Session
) -> None:
    """§4.3: the data project must exist; the API uses the same OAuth as OData."""
    resp = call(
        http,
        sb,
        "ExportToPackage",
        {"definitionGroupId": "nope", "executionId": "c-5", "legalEntityId": "USMF"},
    )
    assert resp.status_code == 500 and "nope" in resp.json()["error"]["innererror"]["message"]
    anonymous = VerifiedSession(ca_bundle=sb.ca_bundle, timeout=30)
    assert call(anonymous, sb, "GetExecutionSummaryStatus", {"executionId": "c-1"}).status_code == 401
