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
from devkit.sandbox.dynamics import seed
from devkit.sandbox.dynamics.app import SandboxConfig
from devkit.sandbox.dynamics.cli import RunningSandbox, start
from devkit.sandbox.dynamics.dmf import DEFAULT_EXPORT_PROJECT, DEFAULT_IMPORT_PROJECT
from devkit.sandbox.dynamics.testing import authorised_session

pytestmark = pytest.mark.integration
ACTION = "DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities."
IMPORT_COLUMNS = ["ENTRYNUMBER", "LEGALENTITYID", "BUDGETMODELID", "BUDGETCODE", "DIMENSIONDISPLAYVALUE", "ENTRYDATE",
                  "CURRENCYCODE", "TRANSACTIONCURRENCYAMOUNT", "AMOUNTTYPE", "COMMENT"]  # fmt: skip


@pytest.fixture(scope="module")
def sb() -> Iterator[RunningSandbox]:
    running = start(SandboxConfig(gl_lines=600, months=2))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(sb: RunningSandbox) -> requests.Session:
    return authorised_session(sb)


@pytest.fixture
def blob(sb: RunningSandbox) -> requests.Session:
    return VerifiedSession(ca_bundle=sb.ca_bundle, timeout=30)  # no credential: the SAS is the authorisation


def call(http: requests.Session, sb: RunningSandbox, action: str, body: dict[str, Any]) -> requests.Response:
    return http.post(f"{sb.app.environment_url}/data/{ACTION}{action}", json=body)


def call_post(http: requests.Session, sb: RunningSandbox, entity: str, body: dict[str, Any]) -> Any:
    resp = http.post(f"{sb.app.environment_url}/data/{entity}", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


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


def test_an_import_uploads_to_a_write_url_and_lands_rows_through_the_line_checks(
    http: requests.Session, blob: requests.Session, sb: RunningSandbox
) -> None:
    """§F: GetAzureWriteUrl's value is a JSON text (BlobId, BlobUrl); Put Blob needs x-ms-blob-type:
    BlockBlob; ImportFromPackage runs as a job; refused rows make it PartiallySucceeded with their errors."""
    app = sb.app
    header = call_post(http, sb, "BudgetRegisterEntryHeaders", {"dataAreaId": "usmf", "LegalEntityId": "usmf",
                       "BudgetModelId": "FY2025", "BudgetCode": "Original", "DefaultDate": "2025-01-01T12:00:00Z"})  # fmt: skip
    number = header["EntryNumber"]
    raw = value(call(http, sb, "GetAzureWriteUrl", {"uniqueFileName": "budget.zip"}))
    assert isinstance(raw, str)
    url = json.loads(raw)["BlobUrl"]
    account = next(a for a in seed.MAIN_ACCOUNTS if a.account_type == "Expense").account
    good = [
        number,
        "usmf",
        "FY2025",
        "Original",
        f"{account}--OU_3566-",
        "2025-01-01",
        "USD",
        "100.00",
        "Expense",
        "k1",
    ]
    bad = [number, "usmf", "FY2025", "Original", "999999", "2025-01-01", "USD", "5.00", "Expense", "k2"]
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as zf:
        zf.writestr("Manifest.xml", "<m/>")
        zf.writestr("PackageHeader.xml", "<h/>")
        text = io.StringIO()
        csv.writer(text).writerows([IMPORT_COLUMNS, good, bad])
        zf.writestr("Budget account entries.csv", text.getvalue())
    assert blob.put(url, data=package.getvalue()).status_code == 400, "Put Blob needs x-ms-blob-type"
    assert blob.put(url, data=package.getvalue(), headers={"x-ms-blob-type": "BlockBlob"}).status_code == 201
    body = {"packageUrl": url, "definitionGroupId": DEFAULT_IMPORT_PROJECT, "executionId": "i-1", "execute": True,
            "overwrite": False, "legalEntityId": "USMF"}  # fmt: skip
    assert value(call(http, sb, "ImportFromPackage", body)) == "i-1"
    assert run_to_end(http, sb, "i-1")[-1] == "PartiallySucceeded"
    errors = json.loads(value(call(http, sb, "GetExecutionErrors", {"executionId": "i-1"})))
    assert len(errors) == 1 and "Line 3" in errors[0]
    assert [line["Comment"] for line in app.budget_lines[("USMF", number)]] == ["k1"]
