from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest

from d365_anaplan.config import JournalSettings, PlanExport
from d365_anaplan.errors import BadInputData, ConfigError
from d365_anaplan.flows.journal import (
    account_display_value,
    batch_lines,
    build_journals,
    content_hash,
    journal_key,
    split_display_value,
)
from d365_anaplan.flows.records import PlanRow

SEGMENTS = ["MainAccount", "BusinessUnit", "CostCenter", "Department"]
EXPORT = PlanExport(export_action="Budget export", version="Budget")


def pr(line: int, account: str, amount: str, month: int = 1, company: str = "USMF", **dims: str) -> PlanRow:
    return PlanRow(
        line_number=line,
        company=company,
        account=account,
        dimensions=dims,
        period=date(2025, month, 1),
        version="Budget",
        amount=Decimal(amount),
    )


ROWS = [
    pr(2, "601500", "100.00", CostCenter="CC01", Department="D1"),
    pr(3, "601500", "-40.25", CostCenter="CC02"),
    pr(4, "110110", "0.00"),
    pr(5, "401100", "12", month=2, BusinessUnit="BU1"),
    pr(6, "601500", "7.5", company="DEMF", Department="D9"),
]


def build(rows: list[PlanRow] = ROWS, **kw: object):  # type: ignore[no-untyped-def]
    settings = kw.pop("settings", JournalSettings())
    return build_journals(
        rows, connection="acme", export=EXPORT, settings=settings, segment_order=SEGMENTS, **kw
    )  # type: ignore[arg-type]


def test_display_values_by_position() -> None:
    assert account_display_value("601500", {"CostCenter": "CC01"}, SEGMENTS) == "601500--CC01-"
    assert account_display_value("401100", {}, SEGMENTS) == "401100---"
    assert (
        account_display_value("401100", {"Department": "D1", "CostCenter": ""}, SEGMENTS, "|")
        == "401100|||D1"
    )
    assert (
        account_display_value("6015", {"BusinessUnit": "B"}, ["MainAccount", "BusinessUnit"], "--")
        == "6015--B"
    )


@pytest.mark.parametrize(
    ("account", "dims", "fragment"),
    [
        ("601500", {"Project": "P1"}, "Project='P1'"),
        (
            "601500",
            {"CostCenter": "CC-01"},
            "'dimensions.CostCenter' value 'CC-01' contains the segment delimiter",
        ),
        ("6015-00", {}, "'account' value '6015-00' contains the segment delimiter"),
        ("", {}, "'account' is empty"),
    ],
)
def test_display_value_refusals_name_the_record(account: str, dims: dict[str, str], fragment: str) -> None:
    with pytest.raises(BadInputData) as err:
        account_display_value(account, dims, SEGMENTS, where="plan row from line 9")
    assert "plan row from line 9" in str(err.value)
    assert fragment in str(err.value)


def test_display_value_config_errors() -> None:
    with pytest.raises(ConfigError, match="no MainAccount segment"):
        account_display_value("1", {}, ["CostCenter"])
    with pytest.raises(ConfigError, match="twice"):
        account_display_value("1", {}, ["MainAccount", "CostCenter", "CostCenter"])


def test_split_display_value() -> None:
    assert split_display_value("601500--CC01", SEGMENTS) == {
        "MainAccount": "601500",
        "BusinessUnit": "",
        "CostCenter": "CC01",
        "Department": "",
    }
    with pytest.raises(BadInputData, match="has 5 segments"):
        split_display_value("110110-002-04-ABC-X", SEGMENTS, where="offset")


def test_journals_vouchers_and_debit_credit() -> None:
    plan = build()
    assert [j.company for j in plan.journals] == ["DEMF", "USMF"]
    assert plan.rows == 5
    assert plan.zero_skipped == 1
    usmf = plan.journals[1]
    assert [v.voucher for v in usmf.vouchers] == ["AP-202501-001", "AP-202502-001"]
    jan = usmf.vouchers[0]
    assert [(x.account_display_value, x.debit, x.credit, x.source_line) for x in jan.lines] == [
        ("601500--CC01-D1", Decimal("100.00"), Decimal(0), 2),
        ("601500--CC02-", Decimal(0), Decimal("40.25"), 3),
    ]
    assert all(x.trans_date == date(2025, 1, 1) for x in jan.lines)
    assert usmf.vouchers[1].lines[0].account_display_value == "401100-BU1--"
    assert usmf.total_debit == Decimal("112.00")
    assert usmf.total_credit == Decimal("40.25")
    assert usmf.journal_name == "Budget"
    # Reconciliation view: signed amounts by line, zero row absent.
    assert sorted(plan.items()) == sorted(
        [
            ("USMF", "601500", date(2025, 1, 1), Decimal("100.00")),
            ("USMF", "601500", date(2025, 1, 1), Decimal("-40.25")),
            ("USMF", "401100", date(2025, 2, 1), Decimal("12")),
            ("DEMF", "601500", date(2025, 1, 1), Decimal("7.5")),
        ]
    )
    assert json.loads(json.dumps(plan.to_json()))["journals"][1]["total_credit"] == "40.25"


def test_keys_are_deterministic_short_and_content_sensitive() -> None:
    a = build()
    b = build(list(reversed(ROWS)))
    assert [j.key for j in a.journals] == [j.key for j in b.journals]
    assert [x.line_key for x in a.journals[1].lines()] == [x.line_key for x in b.journals[1].lines()]
    key = a.journals[1].key
    assert key.startswith("AP-")
    assert len(key) == 23
    # Cut to 60 characters: the export name loses its last letter, the key is whole.
    assert a.journals[1].description == key + " Budget 2025-01..2025-02 Budget expor"
    assert len(a.journals[1].description) == 60
    keys = [x.line_key for x in a.journals[1].lines()]
    assert len(set(keys)) == len(keys)
    assert all(k.startswith(key + "-") and len(k) <= 60 for k in keys)
    # A changed amount changes the journal key; the line key (natural key) stays.
    changed = [*ROWS[:4], pr(6, "601500", "7.6", company="DEMF", Department="D9")]
    c = build(changed)
    assert c.journals[0].key != a.journals[0].key
    assert c.journals[1].key == a.journals[1].key  # USMF unchanged
    # Different run range or other connection: other key.
    assert build(period_from=date(2024, 12, 1)).journals[1].key != key
    assert (
        build_journals(
            ROWS, connection="other", export=EXPORT, settings=JournalSettings(), segment_order=SEGMENTS
        )
        .journals[1]
        .key
        != key
    )


def test_content_hash_ignores_order_line_numbers_and_trailing_zeros() -> None:
    h = content_hash([pr(2, "1", "1.50"), pr(3, "2", "2")])
    assert h == content_hash([pr(9, "2", "2.00"), pr(8, "1", "1.5")])
    assert h != content_hash([pr(2, "1", "1.51"), pr(3, "2", "2")])
    assert journal_key("c", "e", "v", date(2025, 1, 1), date(2025, 1, 1), h) != journal_key(
        "c", "e", "v", date(2025, 1, 1), date(2025, 2, 1), h
    )


def test_offset_line_balances_each_voucher() -> None:
    settings = JournalSettings(offset_account="999999")
    plan = build(settings=settings)
    for j in plan.journals:
        for v in j.vouchers:
            assert v.balance == 0
            assert v.lines[-1].is_offset
    jan = plan.journals[1].vouchers[0]
    offset = jan.lines[-1]
    # 100.00 - 40.25 = 59.75 net debit -> credit 59.75 on the offset account.
    assert (offset.account_display_value, offset.debit, offset.credit) == (
        "999999---",
        Decimal(0),
        Decimal("59.75"),
    )
    assert offset.line_key == plan.journals[1].key + "-O202501001"
    assert plan.offset_lines == 3
    assert sum(1 for _ in plan.items()) == 4  # offsets are not plan lines


def test_offset_given_as_display_value_and_too_many_segments() -> None:
    plan = build(settings=JournalSettings(offset_account="999999-BU1"))
    assert plan.journals[0].vouchers[0].lines[-1].account_display_value == "999999-BU1--"
    with pytest.raises(BadInputData, match="has 5 segments"):
        build(settings=JournalSettings(offset_account="9-9-9-9-9"))


def test_budget_register_is_single_sided_and_refuses_offset() -> None:
    plan = build(settings=JournalSettings(target="budget_register"))
    assert plan.offset_lines == 0
    with pytest.raises(ConfigError, match="offset_account"):
        build(settings=JournalSettings(target="budget_register", offset_account="999999"))


def test_vouchers_split_and_batches_keep_vouchers_whole() -> None:
    rows = [pr(i + 2, f"6{i:05d}", str(i + 1)) for i in range(10)] + [
        pr(20 + i, f"7{i:05d}", "1", month=2) for i in range(3)
    ]
    plan = build(rows, settings=JournalSettings(offset_account="999999"), max_lines_per_voucher=4)
    j = plan.journals[0]
    assert [(v.voucher, len(v.lines)) for v in j.vouchers] == [
        ("AP-202501-001", 4),
        ("AP-202501-002", 4),
        ("AP-202501-003", 4),
        ("AP-202501-004", 2),
        ("AP-202502-001", 4),
    ]
    assert all(v.balance == 0 for v in j.vouchers)
    batches = list(batch_lines(j, 9))
    assert [len(b) for b in batches] == [8, 6, 4]
    for b in batches:
        vouchers = {x.voucher for x in b}
        for v in j.vouchers:
            if v.voucher in vouchers:
                assert all(x in b for x in v.lines)
    assert sum(len(b) for b in batches) == j.line_count
    with pytest.raises(BadInputData, match="do not fit in a batch of 3"):
        list(batch_lines(j, 3))


def test_transaction_day_last() -> None:
    plan = build(transaction_day="last")
    assert plan.journals[1].vouchers[1].lines[0].trans_date == date(2025, 2, 28)


def test_bad_rows() -> None:
    with pytest.raises(
        BadInputData, match=r"line 3: same company, account, dimensions, period and version as line 2"
    ):
        build([pr(2, "601500", "1"), pr(3, "601500", "2")])
    with pytest.raises(BadInputData, match=r"line 2.*'amount' value '1.005' has more than 2 decimal"):
        build([pr(2, "601500", "1.005")])
    with pytest.raises(BadInputData, match="more than 0 decimal"):
        build([pr(2, "601500", "1.5")], settings=JournalSettings(currency_code="JPY"))
    with pytest.raises(BadInputData, match=r"line 2 \(company USMF, account 601500\).*Project='X'"):
        build([pr(2, "601500", "1", Project="X")])
    with pytest.raises(BadInputData, match=r"outside the run's range 2025-02\.\.2025-02"):
        build([pr(2, "601500", "1")], period_from=date(2025, 2, 1), period_to=date(2025, 2, 1))


def test_negative_zero_is_skipped() -> None:
    plan = build([pr(2, "601500", "-0.00"), pr(3, "601600", "1")])
    assert plan.zero_skipped == 1
    assert [x.account for x in plan.journals[0].lines()] == ["601600"]
