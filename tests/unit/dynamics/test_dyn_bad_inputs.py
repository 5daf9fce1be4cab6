"""Bad inputs to the F&O writer and reader each end in one clear error naming the record and the field.

No HTTP happens for writer cases: validation runs before anything is sent (the test would fail on an
unexpected request because `responses` is active with no routes)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
import responses
from dyn_support import DATA, make_client

from d365_anaplan.config import JournalSettings
from d365_anaplan.dynamics.dimensions import DimensionFormat
from d365_anaplan.dynamics.journal import JournalWriter
from d365_anaplan.dynamics.journal_records import JournalLineInput
from d365_anaplan.dynamics.reader import DynamicsReader
from d365_anaplan.errors import BadInputData, DynamicsBadResponse

FMT = DimensionFormat.parse("LedgerFormat", "MainAccount-BusinessUnit-CostCenter-Department", "-")
DAY = date(2026, 1, 31)


def line(**kw: Any) -> JournalLineInput:
    base: dict[str, Any] = {
        "account": "601100",
        "dimensions": {"CostCenter": "OU_3566"},
        "trans_date": DAY,
        "amount": Decimal("10.00"),
        "voucher": "V1",
        "source": "plan.csv line 2",
    }
    base.update(kw)
    return JournalLineInput(**base)


def offset(**kw: Any) -> JournalLineInput:
    base: dict[str, Any] = {
        "account": "110110",
        "dimensions": {},
        "trans_date": DAY,
        "amount": Decimal("-10.00"),
        "voucher": "V1",
        "source": "plan.csv line 3",
    }
    base.update(kw)
    return JournalLineInput(**base)


CASES: list[tuple[str, list[JournalLineInput], str]] = [
    ("float amount", [line(amount=10.0), offset()], "must be a Decimal"),
    ("text amount", [line(amount="12,50"), offset()], "must be a Decimal"),
    ("boolean amount", [line(amount=True), offset()], "must be a Decimal"),
    ("NaN amount", [line(amount=Decimal("NaN")), offset()], "not a finite number"),
    (
        "too many decimals",
        [line(amount=Decimal("1.0000001")), offset(amount=Decimal("-1.0000001"))],
        "more than 6 decimals",
    ),
    ("zero amount", [line(amount=Decimal("0.00")), offset()], "amount is zero"),
    (
        "dimension outside the format (extra segment)",
        [line(dimensions={"Project": "P-1"}), offset()],
        "F&O would drop them silently",
    ),
    (
        "delimiter inside a value",
        [line(dimensions={"CostCenter": "OU-3566"}), offset()],
        "contains the segment delimiter",
    ),
    (
        "control character in a value",
        [line(dimensions={"Department": "02\t2"}), offset()],
        "control characters",
    ),
    ("empty main account", [line(account=""), offset()], "main account is empty"),
    ("unknown main account", [line(account="999999"), offset()], "unknown in F&O: '999999'"),
    ("unbalanced voucher", [line(), offset(amount=Decimal("-9.99"))], "not balanced"),
    ("two dates in one voucher", [line(), offset(trans_date=date(2026, 2, 1))], "a voucher has one date"),
    ("date as text", [line(trans_date="2026-01-31"), offset()], "is not a date"),
    ("voucher too long", [line(voucher="V" * 21), offset(voucher="V" * 21)], "voucher"),
    ("empty voucher", [line(voucher=" "), offset(voucher=" ")], "voucher"),
    ("bad currency", [line(currency="US$"), offset(currency="US$")], "3-letter ISO code"),
    ("no lines", [], "no lines to write"),
]


@responses.activate
@pytest.mark.parametrize(("name", "lines", "message"), CASES, ids=[c[0] for c in CASES])
def test_writer_refuses_bad_lines(name: str, lines: list[JournalLineInput], message: str) -> None:
    client, _, _ = make_client()
    reader = DynamicsReader(client, companies=["USMF"])
    reader._ledger_format = FMT
    known = {"601100", "110110", "401100"}
    writer = JournalWriter(client, reader, JournalSettings(currency_code="USD"), known_accounts=known)
    with pytest.raises(BadInputData, match=message) as exc:
        writer.write_ledger_journal("USMF", lines, key="APX")
    if lines and name not in ("unbalanced voucher", "no lines", "unknown main account"):
        assert "plan.csv line" in str(exc.value)  # the record is named
    assert len(responses.calls) == 0


def test_quotes_and_unicode_in_text_are_written_not_refused() -> None:
    client, _, _ = make_client()
    reader = DynamicsReader(client, companies=["USMF"])
    writer = JournalWriter(client, reader, JournalSettings(currency_code="USD"))
    vouchers = writer._prepare("USMF", [line(text='O\'Brien "Q1" Büromaterial ✓'), offset()], FMT)
    text = vouchers["V1"][0].body["Text"]
    assert text.endswith('O\'Brien "Q1" Büromaterial ✓') and len(text) <= 60


@responses.activate
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"value": [', "malformed JSON"),
        ("<html>gateway</html>", "malformed JSON"),
        ('{"value": "not a list"}', "not an OData collection"),
        ('{"values": []}', "not an OData collection"),
    ],
)
def test_reader_refuses_malformed_odata(body: str, message: str) -> None:
    client, _, _ = make_client()
    responses.get(f"{DATA}/MainAccounts", body=body)
    with pytest.raises(DynamicsBadResponse, match=message):
        list(DynamicsReader(client, companies=["USMF"]).main_accounts())


@responses.activate
def test_reader_refuses_row_without_key_field() -> None:
    client, _, _ = make_client()
    responses.get(f"{DATA}/MainAccounts", json={"value": [{"Name": "no id"}]})
    with pytest.raises(DynamicsBadResponse, match="field MainAccountId is missing"):
        list(DynamicsReader(client, companies=["USMF"]).main_accounts())


def test_reader_needs_companies_and_a_date_range() -> None:
    client, _, _ = make_client()
    with pytest.raises(BadInputData, match="at least one company"):
        DynamicsReader(client, companies=[])
    with pytest.raises(BadInputData, match="must be after"):
        DynamicsReader(client, companies=["USMF"]).gl_lines(DAY, DAY)
