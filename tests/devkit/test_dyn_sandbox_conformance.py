"""The F&O sandbox follows the reference (../shared/reference/dynamics-fo.md), not our client.

Each test talks raw HTTP to the sandbox and cites the section it checks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import jwt
import pytest
import requests

from d365_anaplan.http import VerifiedSession
from devkit.sandbox.dynamics import seed
from devkit.sandbox.dynamics.app import SandboxConfig
from devkit.sandbox.dynamics.cli import RunningSandbox, start
from devkit.sandbox.dynamics.testing import raw_token

pytestmark = pytest.mark.integration
NS = "Microsoft.Dynamics.DataEntities"


@pytest.fixture(scope="module")
def sb() -> Iterator[RunningSandbox]:
    running = start(SandboxConfig(gl_lines=30_000, months=3))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(sb: RunningSandbox) -> requests.Session:
    s = VerifiedSession(ca_bundle=sb.ca_bundle, timeout=30)
    s.headers["Authorization"] = f"Bearer {raw_token(sb)}"
    return s


def get(http: requests.Session, sb: RunningSandbox, path: str, **kw: Any) -> requests.Response:
    return http.get(f"{sb.app.environment_url}/data/{path}", **kw)


def test_token_response_shape_and_no_refresh_token(sb: RunningSandbox) -> None:
    """§1.1: success is {"token_type":"Bearer","expires_in":...,"access_token":...}; client credentials never
    return a refresh token."""
    s = VerifiedSession(ca_bundle=sb.ca_bundle)
    resp = s.post(
        f"{sb.app.authority_host}/{sb.app.config.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sb.app.config.client_id,
            "client_secret": sb.app.config.client_secret,
            "scope": f"{sb.app.environment_url}/.default",
        },
    )
    body = resp.json()
    assert resp.status_code == 200 and body["token_type"] == "Bearer" and isinstance(body["expires_in"], int)
    assert "refresh_token" not in body
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert (
        claims["aud"] == sb.app.environment_url and claims["tid"] == sb.app.config.tenant_id and claims["oid"]
    )


def test_token_error_shape(sb: RunningSandbox) -> None:
    """§1.1: errors are HTTP 400 with error, error_description, error_codes, timestamp, trace_id, correlation_id
    (example invalid_scope / AADSTS70011 family)."""
    s = VerifiedSession(ca_bundle=sb.ca_bundle)
    resp = s.post(
        f"{sb.app.authority_host}/{sb.app.config.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sb.app.config.client_id,
            "client_secret": sb.app.config.client_secret,
            "scope": f"{sb.app.environment_url}/user.read",
        },
    )
    body = resp.json()
    assert resp.status_code == 400 and body["error"] == "invalid_scope"
    assert set(body) >= {
        "error",
        "error_description",
        "error_codes",
        "timestamp",
        "trace_id",
        "correlation_id",
    }
    assert body["error_description"].startswith("AADSTS")


@pytest.mark.parametrize("variant", ["trailing-slash", "uppercase"])
def test_audience_must_be_exact_environment_url(sb: RunningSandbox, variant: str) -> None:
    """§1.3: aud must be exactly the environment URL, lowercase, no trailing slash; otherwise F&O answers 401."""
    env = sb.app.environment_url
    # the sandbox host is an IP address, so capitals go into the scheme
    resource = env + "/" if variant == "trailing-slash" else env.replace("https://", "HTTPS://")
    token = raw_token(sb, scope=f"{resource}/.default")
    s = VerifiedSession(ca_bundle=sb.ca_bundle)
    resp = s.get(f"{env}/data/LegalEntities", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401 and "audience" in resp.headers["WWW-Authenticate"]


def test_tenant_specific_endpoint_required(sb: RunningSandbox) -> None:
    """§1.3: acquire tokens from the customer-tenant endpoint, not /organizations."""
    s = VerifiedSession(ca_bundle=sb.ca_bundle)
    resp = s.post(
        f"{sb.app.authority_host}/organizations/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sb.app.config.client_id,
            "client_secret": sb.app.config.client_secret,
            "scope": f"{sb.app.environment_url}/.default",
        },
    )
    assert resp.status_code == 400 and "tenant-specific" in resp.json()["error_description"]


def test_no_token_is_401(sb: RunningSandbox) -> None:
    """§1.3: F&O refuses requests without a valid token with 401."""
    resp = VerifiedSession(ca_bundle=sb.ca_bundle).get(f"{sb.app.environment_url}/data/LegalEntities")
    assert resp.status_code == 401


def test_metadata_has_the_reference_entity_sets_and_keys(http: requests.Session, sb: RunningSandbox) -> None:
    """§2.3: entity sets, keys and property names as in the reference; the posted-GL entity is not published
    by default (§0.1) while the BI entities are."""
    from d365_anaplan.dynamics.metadata import parse_metadata

    resp = get(http, sb, "$metadata")
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/xml")
    meta = parse_metadata(resp.text)
    keys = {name: info.keys for name, info in meta.entity_sets.items()}
    assert keys["MainAccounts"] == ("ChartOfAccounts", "MainAccountId")
    assert keys["FinancialDimensionValues"] == ("FinancialDimension", "LegalEntityId", "DimensionValue")
    assert keys["GeneralJournalEntryBiEntities"] == ("JournalNumber", "FiscalCalendarYear", "Ledger")
    assert keys["GeneralJournalAccountEntryBiEntities"] == ("SourceKey",)
    assert keys["LedgerJournalHeaders"] == ("dataAreaId", "JournalBatchNumber")
    assert keys["LedgerJournalLines"] == ("dataAreaId", "JournalBatchNumber", "LineNumber")
    assert keys["BudgetRegisterEntryHeaders"] == ("dataAreaId", "LegalEntityId", "EntryNumber")
    assert keys["DimensionIntegrationFormats"] == ("DimensionFormatName", "DimensionFormatType")
    assert "GeneralJournalAccountEntries" not in keys
    lines = meta.entity_sets["GeneralJournalAccountEntryBiEntities"].properties
    assert (
        "AccountingDate" not in lines and "LedgerAccount" in lines and "LedgerDimensionValuesJson" in lines
    )  # join to the header
    assert (
        meta.entity_sets["GeneralJournalEntryBiEntities"].properties["AccountingDate"] == "Edm.DateTimeOffset"
    )
    assert meta.entity_sets["LedgerJournalLines"].properties["TransDate"] == "Edm.DateTimeOffset"
    assert "NoYes" in meta.enums and "DimensionHierarchyType" in meta.enums


def test_server_paging_caps_at_10000_with_next_link(http: requests.Session, sb: RunningSandbox) -> None:
    """§2.1: server-driven paging returns at most 10,000 rows per page and a @odata.nextLink to follow."""
    resp = get(
        http,
        sb,
        "GeneralJournalAccountEntryBiEntities",
        params={"$select": "SourceKey"},
        headers={"Prefer": "odata.maxpagesize=50000"},
    )
    body = resp.json()
    assert len(body["value"]) == 10_000 and body["@odata.nextLink"].startswith(
        f"{sb.app.environment_url}/data/"
    )
    nxt = http.get(body["@odata.nextLink"]).json()
    assert nxt["value"][0]["SourceKey"] == body["value"][-1]["SourceKey"] + 1


def test_maxpagesize_preference_and_count(http: requests.Session, sb: RunningSandbox) -> None:
    """§2.1: Prefer odata.maxpagesize (honoured here, reported in Preference-Applied), $count=true adds @odata.count,
    /$count returns the number; $top limits the total."""
    resp = get(
        http, sb, "MainAccounts", params={"$count": "true"}, headers={"Prefer": "odata.maxpagesize=10"}
    )
    body = resp.json()
    assert len(body["value"]) == 10 and body["@odata.count"] == len(seed.MAIN_ACCOUNTS)
    assert (
        resp.headers["Preference-Applied"] == "odata.maxpagesize=10"
        and resp.headers["OData-Version"] == "4.0"
    )
    assert get(http, sb, "MainAccounts/$count").text == str(len(seed.MAIN_ACCOUNTS))
    top = get(http, sb, "MainAccounts", params={"$top": "3"}).json()
    assert len(top["value"]) == 3 and "@odata.nextLink" not in top


def test_select_and_unknown_property(http: requests.Session, sb: RunningSandbox) -> None:
    """§2.1: $select returns only the listed properties; an unknown property is a 400 with OData's error JSON (§5.1)."""
    row = get(http, sb, "MainAccounts", params={"$select": "MainAccountId,Name", "$top": "1"}).json()[
        "value"
    ][0]
    assert set(row) - {"@odata.etag"} == {"MainAccountId", "Name"}
    bad = get(http, sb, "MainAccounts", params={"$select": "Nope"})
    assert bad.status_code == 400 and set(bad.json()["error"]) >= {"code", "message", "innererror"}


@pytest.mark.parametrize(
    "flt",
    [
        "dataAreaId in ('usmf','demf')",
        f"IsSuspended has {NS}.NoYes'No'",
        "contains(Name,'Bank')",
    ],
)
def test_unsupported_filter_forms_are_rejected(http: requests.Session, sb: RunningSandbox, flt: str) -> None:
    """§2.1: has and in are not supported ("contains" is written as a wildcard eq)."""
    resp = get(http, sb, "MainAccounts", params={"$filter": flt})
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["code"] == "" and err["message"].startswith("The query specified in the URI is not valid")


def test_supported_filter_forms(http: requests.Session, sb: RunningSandbox) -> None:
    """§2.1: eq/ne/gt/ge/lt/le/and/or/not and grouping; wildcard eq for contains; enum literals with
    eq/ne only; quotes doubled inside string literals; DateTimeOffset literals unquoted."""

    def n(flt: str) -> int:
        resp = get(http, sb, "MainAccounts", params={"$filter": flt, "$select": "MainAccountId"})
        assert resp.status_code == 200, resp.text
        return len(resp.json()["value"])

    assert n(f"IsSuspended eq {NS}.NoYes'Yes'") == len(seed.SUSPENDED_ACCOUNTS)
    assert n("Name eq '*Bank*'") == 8
    assert n("MainAccountId ge '601100' and MainAccountId lt '602000'") > 0
    assert (
        n("not (MainAccountId eq '110110') and (MainAccountId eq '110110' or MainAccountId eq '110120')") == 1
    )
    assert n("Name eq 'it''s not there'") == 0
    lt = get(http, sb, "MainAccounts", params={"$filter": f"IsSuspended gt {NS}.NoYes'No'"})
    assert lt.status_code == 400 and "enum" in lt.json()["error"]["innererror"]["message"]
    plain = get(http, sb, "MainAccounts", params={"$filter": "IsSuspended eq 'No'"})
    assert plain.status_code == 400
    dated = get(
        http,
        sb,
        "GeneralJournalEntryBiEntities",
        params={
            "$filter": "AccountingDate ge 2025-03-01T00:00:00Z and AccountingDate lt 2025-03-02T00:00:00Z",
            "$select": "AccountingDate",
        },
    )
    dates = {r["AccountingDate"][:10] for r in dated.json()["value"]}
    assert dates == {"2025-03-01"}


def test_cross_company(http: requests.Session, sb: RunningSandbox) -> None:
    """§2.1: reads return only the caller's default company unless cross-company=true; dataAreaId filters one company."""
    default = {r["dataAreaId"] for r in get(http, sb, "JournalNames").json()["value"]}
    everything = {
        r["dataAreaId"]
        for r in get(http, sb, "JournalNames", params={"cross-company": "true"}).json()["value"]
    }
    one = {
        r["dataAreaId"]
        for r in get(
            http, sb, "JournalNames", params={"cross-company": "true", "$filter": "dataAreaId eq 'demf'"}
        ).json()["value"]
    }
    assert default == {"usmf"} and everything == {"usmf", "demf"} and one == {"demf"}


def test_decimals_are_json_numbers(http: requests.Session, sb: RunningSandbox) -> None:
    """§7: Edm.Decimal travels as a JSON number (parse with Decimal)."""
    text = get(
        http,
        sb,
        "GeneralJournalAccountEntryBiEntities",
        params={"$top": "1", "$select": "AccountingCurrencyAmount"},
    ).text
    value = json.loads(text)["value"][0]["AccountingCurrencyAmount"]
    assert isinstance(value, float | int)


def test_write_error_shape(http: requests.Session, sb: RunningSandbox) -> None:
    """§5.1: write failures carry code "", message, innererror.message ("Write failed ... Infolog: ...") and
    innererror.type AxODataWriteException."""
    resp = http.post(
        f"{sb.app.environment_url}/data/LedgerJournalHeaders",
        json={"dataAreaId": "usmf", "JournalName": "Nope"},
    )
    err = resp.json()["error"]
    assert resp.status_code >= 400 and err["code"] == ""
    assert err["innererror"]["type"].endswith("AxODataWriteException")
    assert err["innererror"]["message"].startswith(
        "Write failed for table row of type 'LedgerJournalHeaderEntity'. Infolog:"
    )


def _batch(sb: RunningSandbox, changesets: list[list[dict[str, Any]]]) -> bytes:
    out = []
    for i, cs in enumerate(changesets):
        out.append(f"--b\r\nContent-Type: multipart/mixed; boundary=cs{i}\r\n\r\n")
        for n, body in enumerate(cs, start=1):
            out.append(
                f"--cs{i}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {n}\r\n\r\n"
                f"POST {sb.app.environment_url}/data/LedgerJournalLines HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{json.dumps(body)}\r\n"
            )
        out.append(f"--cs{i}--\r\n")
    out.append("--b--\r\n")
    return "".join(out).encode()


def test_batch_changesets_are_atomic_and_extra_segments_dropped(
    http: requests.Session, sb: RunningSandbox
) -> None:
    """§2.1: a changeset inside $batch is all-or-nothing. §3: surplus display-value segments are silently dropped."""
    header = http.post(
        f"{sb.app.environment_url}/data/LedgerJournalHeaders",
        json={"dataAreaId": "usmf", "JournalName": "GenJrn", "Description": "conformance"},
    ).json()
    number = header["JournalBatchNumber"]

    def line(v: str, display: str, debit: float, credit: float) -> dict[str, Any]:
        return {
            "dataAreaId": "usmf",
            "JournalBatchNumber": number,
            "AccountType": "Ledger",
            "AccountDisplayValue": display,
            "TransDate": "2026-01-31T12:00:00Z",
            "Voucher": v,
            "CurrencyCode": "USD",
            "DebitAmount": debit,
            "CreditAmount": credit,
        }

    body = _batch(
        sb,
        [
            [line("OK", "601100-001-OU_3566-022-EXTRA", 10, 0), line("OK", "110110", 0, 10)],
            [line("BAD", "601100-001-OU_3566-022", 5, 0), line("BAD", "601100-001-NOPE-022", 0, 5)],
        ],
    )
    resp = http.post(
        f"{sb.app.environment_url}/data/$batch",
        data=body,
        headers={"Content-Type": "multipart/mixed; boundary=b"},
    )
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("multipart/mixed; boundary=")
    text = resp.text
    assert text.count("HTTP/1.1 201 Created") == 2 and "HTTP/1.1 500" in text and "Content-ID: 2" in text
    rows = get(
        http,
        sb,
        "LedgerJournalLines",
        params={"cross-company": "true", "$filter": f"JournalBatchNumber eq '{number}'"},
    ).json()["value"]
    assert [(r["Voucher"], r["AccountDisplayValue"]) for r in rows] == [
        ("OK", "601100-001-OU_3566-022"),
        ("OK", "110110"),
    ]


def test_batch_operation_limit(http: requests.Session, sb: RunningSandbox) -> None:
    """§2.1/§4.1: a batch can hold at most 5,000 operations."""
    body = _batch(sb, [[{"dataAreaId": "usmf"}] * 5001])
    resp = http.post(
        f"{sb.app.environment_url}/data/$batch",
        data=body,
        headers={"Content-Type": "multipart/mixed; boundary=b"},
    )
    assert resp.status_code == 400 and "5000" in resp.json()["error"]["message"]


def test_resource_throttling_429_with_retry_after() -> None:
    """§4.1: resource-based throttling answers 429 with Retry-After in seconds and the 'high resource utilization' text."""
    running = start(SandboxConfig(gl_lines=10, load_budget=2, load_window=60))
    try:
        s = VerifiedSession(ca_bundle=running.ca_bundle)
        s.headers["Authorization"] = f"Bearer {raw_token(running)}"
        codes = [s.get(f"{running.app.environment_url}/data/LegalEntities") for _ in range(3)]
        assert [r.status_code for r in codes] == [200, 200, 429]
        assert int(codes[2].headers["Retry-After"]) >= 1
        assert "high resource utilization" in codes[2].json()["error"]["message"]
    finally:
        running.stop()


def test_posting_action_and_is_posted(http: requests.Session, sb: RunningSandbox) -> None:
    """§2.6: re-queue a batch job with POST /data/BatchJobs/Microsoft.Dynamics.DataEntities.SetBatchJobToWaiting
    {"batchJobId": id}; read IsPosted back on LedgerJournalHeaders."""
    env = sb.app.environment_url
    number = http.post(
        f"{env}/data/LedgerJournalHeaders", json={"dataAreaId": "demf", "JournalName": "GenJrn"}
    ).json()["JournalBatchNumber"]
    for v, (d, c) in enumerate([(12.5, 0), (0, 12.5)]):
        r = http.post(
            f"{env}/data/LedgerJournalLines",
            json={
                "dataAreaId": "demf",
                "JournalBatchNumber": number,
                "AccountDisplayValue": "601100" if v == 0 else "110110",
                "TransDate": "2026-01-31T12:00:00Z",
                "Voucher": "P1",
                "CurrencyCode": "EUR",
                "DebitAmount": d,
                "CreditAmount": c,
            },
        )
        assert r.status_code == 201
    act = http.post(
        f"{env}/data/BatchJobs/{NS}.SetBatchJobToWaiting", json={"batchJobId": seed.POSTING_BATCH_JOB_ID}
    )
    assert act.status_code == 204
    row = http.get(
        f"{env}/data/LedgerJournalHeaders(dataAreaId='demf',JournalBatchNumber='{number}')",
        params={"cross-company": "true"},
    ).json()
    assert row["IsPosted"] == "Yes"
    late = http.post(
        f"{env}/data/LedgerJournalLines",
        json={
            "dataAreaId": "demf",
            "JournalBatchNumber": number,
            "AccountDisplayValue": "601100",
            "TransDate": "2026-01-31T12:00:00Z",
            "Voucher": "P2",
            "CurrencyCode": "EUR",
            "DebitAmount": 1,
            "CreditAmount": 0,
        },
    )
    assert (
        late.status_code >= 400 and "posted" in late.json()["error"]["innererror"]["message"]
    )  # header must be unposted (§2.3)


def test_generated_gl_is_deterministic_and_balanced() -> None:
    """Seed: the generator is indexed by position (same line for the same index) and every voucher balances."""
    a = seed.GLGenerator(total_lines=1_000_000, months=12)
    b = seed.GLGenerator(total_lines=1_000_000, months=12)
    for v in (0, 1, 12345, a.voucher_count - 1):
        assert a.voucher_lines(v) == b.voucher_lines(v)
        assert sum(line.cents for line in a.voucher_lines(v)) == 0
    assert a.line_count <= 1_000_000 and a.voucher(a.voucher_count - 1).accounting_date < date(2026, 1, 1)
    assert len(seed.main_account_codes()) >= 140
