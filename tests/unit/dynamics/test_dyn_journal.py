"""Journal writer with `responses` (dynamics-fo.md §2.5-§2.7, §3, §5): idempotency key lookup before create,
resume of an unposted journal, one voucher per changeset, <=5,000 operations per batch, skip of lines
already present, display values by position, per-line error capture, budget register, posting trigger."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from dyn_support import BI_SETS, DATA, delimiter_rows, fo_error_body, format_rows, make_client, metadata, page

from d365_anaplan.config import JournalSettings
from d365_anaplan.dynamics.batch import Operation, boundary_of, decode_batch, encode_batch, split_multipart
from d365_anaplan.dynamics.journal import JournalWriter
from d365_anaplan.dynamics.journal_records import EntryHeader, JournalLineInput, idempotency_key
from d365_anaplan.dynamics.odata_shapes import dumps_exact
from d365_anaplan.dynamics.reader import DynamicsReader
from d365_anaplan.errors import BadInputData, DynamicsUnavailable, DynamicsValidationError

BAD_ACCOUNT = "999999"


def batch_reply(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
    """Answer a $batch like F&O: each changeset all-or-nothing; a line on BAD_ACCOUNT fails its changeset."""
    body = request.body if isinstance(request.body, bytes) else str(request.body).encode()
    out = []
    boundary = "batchresponse_1"
    for headers, payload in split_multipart(body, boundary_of(request.headers["Content-Type"])):
        ops = split_multipart(payload, boundary_of(headers["content-type"]))
        parsed = []
        for h, p in ops:
            _, _, json_body = p.partition(b"\r\n\r\n")
            parsed.append((h["content-id"], json.loads(json_body)))
        bad = next(
            (cid for cid, b in parsed if str(b.get("AccountDisplayValue", "")).startswith(BAD_ACCOUNT)), None
        )
        out.append(f"--{boundary}\r\n")
        if bad is not None:
            err = fo_error_body(
                f"Write failed for table row of type 'LedgerJournalLineEntity'. Infolog: Error: The value '{BAD_ACCOUNT}' in field 'Main account' is not found."
            )
            out.append(
                f"Content-Type: application/http\r\nContent-ID: {bad}\r\n\r\nHTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\r\n{err}\r\n"
            )
        else:
            out.append("Content-Type: multipart/mixed; boundary=cs_1\r\n\r\n")
            for cid, b in parsed:
                out.append(
                    f"--cs_1\r\nContent-Type: application/http\r\nContent-ID: {cid}\r\n\r\nHTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\r\n{json.dumps({'Text': b.get('Text', '')})}\r\n"
                )
            out.append("--cs_1--\r\n")
    out.append(f"--{boundary}--\r\n")
    return 200, {"Content-Type": f"multipart/mixed; boundary={boundary}"}, "".join(out)


def setup_env(
    *,
    existing_header: dict[str, Any] | None = None,
    existing_lines: list[str] | None = None,
    integration_key: bool = True,
) -> None:
    sets = dict(BI_SETS)
    if not integration_key:
        sets["LedgerJournalHeaders"] = [p for p in sets["LedgerJournalHeaders"] if p != "IntegrationKey"]
    responses.get(f"{DATA}/$metadata", body=metadata(sets))
    responses.get(f"{DATA}/DimensionIntegrationFormats", body=format_rows())
    responses.get(f"{DATA}/DimensionParameters", body=delimiter_rows())
    responses.get(f"{DATA}/LedgerJournalHeaders", body=page([existing_header] if existing_header else []))
    responses.post(
        f"{DATA}/LedgerJournalHeaders",
        status=201,
        json={"dataAreaId": "usmf", "JournalBatchNumber": "USMF-000042", "IsPosted": "No"},
    )
    responses.get(f"{DATA}/LedgerJournalLines", body=page([{"Text": t} for t in existing_lines or []]))
    responses.add_callback(responses.POST, f"{DATA}/$batch", callback=batch_reply)


def writer(**settings: Any) -> JournalWriter:
    client, _, sleeps = make_client()
    r = DynamicsReader(client, companies=["USMF"])
    return JournalWriter(client, r, JournalSettings(**{"currency_code": "USD", **settings}), sleep=sleeps)


def balanced(
    voucher: str, amount: str = "100.00", account: str = "601100", day: date = date(2026, 1, 31)
) -> list[JournalLineInput]:
    return [
        JournalLineInput(
            account,
            {"CostCenter": "OU_3566", "Department": "022"},
            day,
            Decimal(amount),
            voucher,
            text="Plan FY26",
        ),
        JournalLineInput("110110", {"BusinessUnit": "001"}, day, -Decimal(amount), voucher),
    ]


def calls(method: str, fragment: str) -> list[Any]:
    return [c for c in responses.calls if c.request.method == method and fragment in c.request.url]


def batch_bodies() -> list[list[list[dict[str, Any]]]]:
    out = []
    for c in calls("POST", "$batch"):
        body = c.request.body if isinstance(c.request.body, bytes) else str(c.request.body).encode()
        changesets = []
        for h, payload in split_multipart(body, boundary_of(c.request.headers["Content-Type"])):
            changesets.append(
                [
                    json.loads(p.partition(b"\r\n\r\n")[2])
                    for _, p in split_multipart(payload, boundary_of(h["content-type"]))
                ]
            )
        out.append(changesets)
    return out


@responses.activate
def test_new_journal_header_key_lines_and_changesets() -> None:
    setup_env()
    w = writer(journal_name="Budget")
    result = w.write_ledger_journal("usmf", balanced("V1") + balanced("V2", "250.10"), key="APKEY1")
    assert result.journal_batch_number == "USMF-000042" and not result.resumed
    assert result.lines_written == 4 and result.vouchers_written == 2 and result.errors == []
    header_post = json.loads(calls("POST", "LedgerJournalHeaders")[0].request.body)
    assert header_post == {
        "dataAreaId": "usmf",
        "JournalName": "Budget",
        "Description": "Anaplan APKEY1",
        "IntegrationKey": "APKEY1",
    }
    lookup = parse_qs(urlsplit(calls("GET", "LedgerJournalHeaders")[0].request.url).query)
    assert lookup["$filter"] == ["(dataAreaId eq 'usmf') and (IntegrationKey eq 'APKEY1')"]
    (batch,) = batch_bodies()
    assert [len(cs) for cs in batch] == [2, 2]  # one voucher per changeset
    first = batch[0][0]
    assert first["AccountDisplayValue"] == "601100--OU_3566-022"
    assert first["DebitAmount"] == 100 and first["CreditAmount"] == 0
    assert batch[0][1]["AccountDisplayValue"] == "110110-001--"
    assert batch[0][1]["DebitAmount"] == 0 and batch[0][1]["CreditAmount"] == 100
    assert (
        first["TransDate"] == "2026-01-31T12:00:00Z"
        and first["CurrencyCode"] == "USD"
        and first["Voucher"] == "V1"
    )
    assert (
        first["JournalBatchNumber"] == "USMF-000042"
        and first["dataAreaId"] == "usmf"
        and first["AccountType"] == "Ledger"
    )
    assert first["Text"].startswith("L") and first["Text"].endswith("Plan FY26") and len(first["Text"]) <= 60
    raw = calls("POST", "$batch")[0].request.body
    assert b'"DebitAmount":100.00' in raw  # exact decimal, not a float


@responses.activate
def test_description_is_the_key_when_metadata_lacks_integration_key() -> None:
    setup_env(integration_key=False)
    writer().write_ledger_journal("USMF", balanced("V1"), key="APKEY2")
    body = json.loads(calls("POST", "LedgerJournalHeaders")[0].request.body)
    assert "IntegrationKey" not in body and body["Description"] == "Anaplan APKEY2"
    lookup = parse_qs(urlsplit(calls("GET", "LedgerJournalHeaders")[0].request.url).query)
    assert lookup["$filter"] == ["(dataAreaId eq 'usmf') and (Description eq 'Anaplan APKEY2')"]


@responses.activate
def test_existing_unposted_journal_is_resumed_and_present_lines_skipped() -> None:
    # First run: learn the per-line keys the writer produces.
    setup_env()
    writer().write_ledger_journal("USMF", balanced("V1") + balanced("V2"), key="APK")
    first_batch = batch_bodies()[0]
    v1_keys = [line["Text"].split(" ", 1)[0] for line in first_batch[0]]
    responses.reset()
    setup_env(
        existing_header={"dataAreaId": "usmf", "JournalBatchNumber": "USMF-000007", "IsPosted": "No"},
        existing_lines=[f"{k} Plan FY26" for k in v1_keys],
    )
    result = writer().write_ledger_journal("USMF", balanced("V1") + balanced("V2"), key="APK")
    assert result.resumed and result.journal_batch_number == "USMF-000007"
    assert calls("POST", "LedgerJournalHeaders") == []  # never duplicated
    assert result.lines_skipped == 2 and result.lines_written == 2
    (batch,) = batch_bodies()
    assert len(batch) == 1 and {line["Voucher"] for line in batch[0]} == {"V2"}
    assert all(line["JournalBatchNumber"] == "USMF-000007" for line in batch[0])


@responses.activate
def test_posted_journal_for_same_key_is_not_written_again() -> None:
    setup_env(existing_header={"dataAreaId": "usmf", "JournalBatchNumber": "USMF-000003", "IsPosted": "Yes"})
    result = writer().write_ledger_journal("USMF", balanced("V1"), key="APK")
    assert result.already_posted and result.lines_written == 0 and result.lines_skipped == 2
    assert calls("POST", "") == []


@responses.activate
def test_batches_hold_whole_vouchers_within_the_limit() -> None:
    setup_env()
    lines = [line for v in range(7) for line in balanced(f"V{v}", f"{v + 1}.00")]
    result = writer(lines_per_batch=5).write_ledger_journal("USMF", lines, key="APK")
    sizes = [sum(len(cs) for cs in b) for b in batch_bodies()]
    assert sizes == [4, 4, 4, 2] and result.batches == 4 and result.lines_written == 14


@responses.activate
def test_per_line_errors_are_captured_and_voucher_rolled_back() -> None:
    setup_env()
    lines = [
        *balanced("V1"),
        JournalLineInput(BAD_ACCOUNT, {}, date(2026, 1, 31), Decimal("5.00"), "V2", source="plan.csv line 9"),
        JournalLineInput("110110", {}, date(2026, 1, 31), Decimal("-5.00"), "V2", source="plan.csv line 10"),
    ]
    result = writer().write_ledger_journal("USMF", lines, key="APK")
    assert result.lines_written == 2 and result.vouchers_failed == 1 and len(result.errors) == 2
    bad, other = result.errors
    assert bad.voucher == "V2" and "Main account" in bad.message and bad.source == "plan.csv line 9"
    assert "rolled back" in other.message and bad.line_key in other.message
    with pytest.raises(DynamicsValidationError, match="2 line\\(s\\) rejected") as exc:
        result.raise_for_errors()
    assert "plan.csv line 9" in str(exc.value)


@responses.activate
def test_unknown_outcome_of_batch_looks_up_before_resending() -> None:
    setup_env()
    responses.replace(responses.POST, f"{DATA}/$batch", body=requests.ConnectionError("reset"))
    w = writer()
    with pytest.raises(DynamicsUnavailable):
        w.write_ledger_journal("USMF", balanced("V1"), key="APK")
    # three attempts, each after a fresh look at the lines already in the journal
    assert len(calls("POST", "$batch")) == 3
    assert len(calls("GET", "LedgerJournalLines")) == 3


@responses.activate
def test_ledger_journal_header_carries_the_posting_layer() -> None:
    setup_env()
    w = writer(target="ledger_journal", posting_layer="CustomLayer1")
    w.write("USMF", balanced("V1"), EntryHeader("APK", "APK Budget FY2026 2026-01..01 run r1 Budget"))
    header = json.loads(calls("POST", "LedgerJournalHeaders")[0].request.body)
    assert header["PostingLayer"] == "CustomLayer1"
    assert header["Description"] == "APK Budget FY2026 2026-01..01 run r1 Budget"


def budget_env() -> None:
    setup_env()
    responses.get(
        f"{DATA}/MainAccounts",
        body=page([{"MainAccountId": "601100", "Name": "Travel", "MainAccountType": "Expense"},
                   {"MainAccountId": "401100", "Name": "Sales", "MainAccountType": "Revenue"}]),
    )  # fmt: skip
    responses.replace(responses.GET, f"{DATA}/DimensionIntegrationFormats", body=format_rows())


@responses.activate
def test_budget_register_entry() -> None:
    """Amount type from the main account's type; revenue written positive (a -2500 credit is +2500
    Revenue); the header's budget type is left to the budget code; lines in the budget format."""
    budget_env()
    responses.get(f"{DATA}/BudgetRegisterEntryHeaders", body=page([]))
    responses.post(f"{DATA}/BudgetRegisterEntryHeaders", status=201, json={"EntryNumber": "BRE000001"})
    responses.get(f"{DATA}/BudgetRegisterEntryLines", body=page([]))
    w = writer(budget_model="FY2026", budget_code="Original")
    lines = [
        JournalLineInput("601100", {"CostCenter": "OU_3566"}, date(2026, 1, 1), Decimal("1000.00"), "V"),
        JournalLineInput("401100", {}, date(2026, 1, 1), Decimal("-2500.00"), "V"),
        JournalLineInput("601100", {}, date(2026, 1, 1), Decimal("-10.00"), "V"),  # an expense cut
    ]
    result = w.write("USMF", lines, EntryHeader("APB-1", "APB-1 Budget FY2026", budget_code="Revision"))
    assert result.journal_batch_number == "BRE000001" and result.lines_written == 3
    header = json.loads(calls("POST", "BudgetRegisterEntryHeaders")[0].request.body)
    assert (header["BudgetModelId"], header["BudgetCode"], header["ReasonComment"], header["LegalEntityId"]) == (
        "FY2026", "Revision", "APB-1 Budget FY2026", "usmf",
    )  # fmt: skip
    assert "BudgetType" not in header, "the budget type comes from the budget code"
    (batch,) = batch_bodies()
    flat = [line for cs in batch for line in cs]
    assert [
        (line["AmountType"], line["TransactionCurrencyAmount"], line["DimensionDisplayValue"])
        for line in flat
    ] == [
        ("Expense", 1000, "601100--OU_3566-"),
        ("Revenue", 2500, "401100---"),
        ("Expense", -10, "601100---"),
    ]
    assert all(line["EntryNumber"] == "BRE000001" and line["Comment"].startswith("L") for line in flat)
    q = parse_qs(urlsplit(calls("GET", "DimensionIntegrationFormats")[0].request.url).query)["$filter"][0]
    assert "DataEntityBudgetDimensionFormat" in q


@pytest.mark.parametrize(("read_sign", "shown"), [("as_entered", "2500.00"), ("stored", "-2500.00")])
@responses.activate
def test_read_back_gives_ledger_sign_whichever_sign_the_entity_shows(read_sign: str, shown: str) -> None:
    """F&O may show revenue as entered (+2500) or as stored (-2500): UNCONFIRMED, so both are handled and
    the read-back is always the ledger sign (a revenue budget is a credit)."""
    budget_env()
    responses.get(
        f"{DATA}/BudgetRegisterEntryHeaders",
        body=page([{"EntryNumber": "BRE1", "ReasonComment": "APXY-1 Budget", "Status": "Draft"},
                   {"EntryNumber": "BRE2", "ReasonComment": "APXYZ-9 someone else's", "Status": "Completed"}]),
    )  # fmt: skip
    responses.get(
        f"{DATA}/BudgetRegisterEntryLines",
        body=page([
            {"EntryNumber": "BRE1", "DimensionDisplayValue": "401100---", "EntryDate": "2026-01-01T12:00:00Z",
             "TransactionCurrencyAmount": shown, "AmountType": "Revenue", "Comment": "LABC Anaplan Budget 2026-01"},
            {"EntryNumber": "BRE1", "DimensionDisplayValue": "601100--OU_3566-", "EntryDate": "2026-01-31T12:00:00Z",
             "TransactionCurrencyAmount": "1000.00", "AmountType": "Expense", "Comment": "LDEF x"},
            {"EntryNumber": "BRE2", "DimensionDisplayValue": "601100---", "EntryDate": "2026-01-01T12:00:00Z",
             "TransactionCurrencyAmount": "5.00", "AmountType": "Expense", "Comment": "other"},
        ]),
    )  # fmt: skip
    w = writer(budget_model="M", budget_code="C", budget_revenue_read_sign=read_sign)
    held = w.held("USMF", "APXY", date(2026, 1, 1), date(2026, 1, 1))
    assert [(h.number, h.account, dict(h.dimensions), h.period, h.amount) for h in held] == [
        ("BRE1", "401100", {}, date(2026, 1, 1), Decimal("-2500.00")),
        ("BRE1", "601100", {"CostCenter": "OU_3566"}, date(2026, 1, 1), Decimal("1000.00")),
    ]
    (entry,) = w.entries("USMF", "APXY")
    assert entry.pending and entry.status == "Draft"


def test_idempotency_key_is_deterministic() -> None:
    a = idempotency_key("conn", "run-1", "USMF", "Budget")
    assert a == idempotency_key("conn", "run-1", "USMF", "Budget") and a != idempotency_key(
        "conn", "run-2", "USMF", "Budget"
    )
    assert a.startswith("AP") and len(a) == 20


def test_batch_encoding_round_trip_and_limit() -> None:
    ops = [[Operation("POST", "LedgerJournalLines", {"A": Decimal("1.10")}, "1")]]
    ctype, body = encode_batch(DATA, ops, dumps_exact)
    assert ctype.startswith("multipart/mixed; boundary=batch_")
    assert (
        b"POST https://contoso.operations.dynamics.com/data/LedgerJournalLines HTTP/1.1" in body
        and b'{"A":1.10}' in body
    )
    with pytest.raises(BadInputData, match="5000"):
        encode_batch(DATA, [[Operation("POST", "X", {}, str(i)) for i in range(5001)]], dumps_exact)
    reply = "--b\r\nContent-Type: application/http\r\nContent-ID: 3\r\n\r\nHTTP/1.1 500 Internal Server Error\r\n\r\n{}\r\n--b--\r\n"
    (cs,) = decode_batch("multipart/mixed; boundary=b", reply.encode())
    assert not cs.ok and cs.parts[0].status == 500 and cs.parts[0].content_id == "3"


@responses.activate
def test_header_create_with_unknown_outcome_is_looked_up_not_duplicated() -> None:
    setup_env()
    responses.replace(responses.POST, f"{DATA}/LedgerJournalHeaders", body=requests.ConnectionError("reset"))
    responses.replace(responses.GET, f"{DATA}/LedgerJournalHeaders", body=page([]))
    responses.add(
        responses.GET,
        f"{DATA}/LedgerJournalHeaders",
        body=page([{"dataAreaId": "usmf", "JournalBatchNumber": "USMF-000099", "IsPosted": "No"}]),
    )
    result = writer().write_ledger_journal("USMF", balanced("V1"), key="APK")
    assert result.journal_batch_number == "USMF-000099"
    assert (
        len(calls("POST", "LedgerJournalHeaders")) == 1
    )  # the timed-out create landed; it was found, not repeated
    assert result.lines_written == 2


@responses.activate
def test_write_dispatches_on_target() -> None:
    setup_env()
    head = EntryHeader("APK", "APK text", journal_name="Budget")
    result = writer(target="ledger_journal", posting_layer="CustomLayer1").write("USMF", balanced("V1"), head)
    assert result.journal_batch_number == "USMF-000042"
    w = writer(target="budget_register")
    with pytest.raises(BadInputData, match="budget_model"):
        w.write("USMF", balanced("V1"), head)
    with pytest.raises(BadInputData, match="no lines"):
        w.write("USMF", [], head)


@responses.activate
def test_dry_run_goes_through_the_same_writer_and_sends_nothing() -> None:
    budget_env()
    w = writer(budget_model="FY2026", budget_code="Original")
    head = EntryHeader("APB-1", "APB-1 Budget")
    lines = [JournalLineInput("401100", {}, date(2026, 1, 1), Decimal("-2500.00"), "V")]
    assert w.write("USMF", lines, head, dry_run=True).lines_planned == 1
    with pytest.raises(BadInputData, match="main account '999999' is unknown in F&O"):
        w.write(
            "USMF", [JournalLineInput("999999", {}, date(2026, 1, 1), Decimal("1"), "V")], head, dry_run=True
        )
    ledger = writer(target="ledger_journal", posting_layer="CustomLayer1")
    assert ledger.write("USMF", balanced("V1"), head, dry_run=True).lines_planned == 2
    assert [c for c in responses.calls if c.request.method == "POST"] == [], "nothing is sent"
