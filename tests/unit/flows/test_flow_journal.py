from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest

from d365_anaplan.config import JournalSettings, PlanExport
from d365_anaplan.errors import BadInputData, ConfigError
from d365_anaplan.flows.display_values import account_display_value, split_display_value
from d365_anaplan.flows.journal import batch_lines, build_entries
from d365_anaplan.flows.journal_keys import entry_description, export_tag
from d365_anaplan.flows.plan_deltas import plan_deltas
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


JAN, FEB, MAR = date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)
WINDOW = [JAN, FEB, MAR]
CURRENCIES = {"USMF": "USD", "DEMF": "EUR"}  # the companies' ledger currencies (resolved by the step)
BUDGET = JournalSettings(budget_model="FY2025", budget_code="Original", revision_budget_code="Revision")
LEDGER = JournalSettings(target="ledger_journal", posting_layer="CustomLayer1")


def held(
    *items: tuple[str, str, str, date, str], **dims: str
) -> list[tuple[str, str, dict[str, str], date, Decimal]]:
    return [(c, a, dict(dims), p, Decimal(v)) for c, a, _, p, v in items]


def build(rows: list[PlanRow] = ROWS, holding=(), **kw: object):  # type: ignore[no-untyped-def]
    settings = kw.pop("settings", BUDGET)
    export = kw.pop("export", EXPORT)
    deltas, _ = plan_deltas(rows, holding, WINDOW)
    return build_entries(
        deltas,
        connection="acme",
        run_id="arn:aws:states:x:execution:Plans:run-0001",
        export=export,
        settings=settings,
        currencies=CURRENCIES,
        segment_order=SEGMENTS,
        **kw,
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


def test_first_load_writes_every_non_zero_cell_under_the_original_code() -> None:
    deltas, approved = plan_deltas(ROWS, [], WINDOW)
    assert len(approved) == 5 and len(deltas) == 4, "the zero cell is approved but nothing to write"
    assert not any(d.revision for d in deltas)
    plan = build()
    assert [(j.company, j.budget_model, j.budget_code, j.revision) for j in plan.journals] == [
        ("DEMF", "FY2025", "Original", False),
        ("USMF", "FY2025", "Original", False),
    ]
    usmf = plan.journals[1]
    jan = usmf.vouchers[0]
    assert [(x.account_display_value, x.debit, x.credit, x.source_line) for x in jan.lines] == [
        ("601500--CC01-D1", Decimal("100.00"), Decimal(0), 2),
        ("601500--CC02-", Decimal(0), Decimal("40.25"), 3),
    ]
    assert [x.memo for x in jan.lines] == ["Anaplan Budget 2025-01 row 2", "Anaplan Budget 2025-01 row 3"]
    assert usmf.total_debit == Decimal("112.00") and usmf.total_credit == Decimal("40.25")
    assert json.loads(json.dumps(plan.to_json()))["journals"][1]["total_credit"] == "40.25"


def test_revision_writes_only_the_differences() -> None:
    holding = held(("USMF", "601500", "", JAN, "100.00"), ("USMF", "401100", "", FEB, "12"),
                   ("DEMF", "601500", "", JAN, "7.5"), ("USMF", "110110", "", MAR, "5"))  # fmt: skip
    holding[0] = ("USMF", "601500", {"CostCenter": "CC01", "Department": "D1"}, JAN, Decimal("100.00"))
    holding[1] = ("USMF", "401100", {"BusinessUnit": "BU1"}, FEB, Decimal("12"))
    holding[2] = ("DEMF", "601500", {"Department": "D9"}, JAN, Decimal("7.5"))
    rows = [
        pr(2, "601500", "150.00", CostCenter="CC01", Department="D1"),  # up by 50
        pr(3, "601500", "-40.25", CostCenter="CC02"),  # new cell
        pr(5, "401100", "0", month=2, BusinessUnit="BU1"),  # cut to zero
        pr(6, "601500", "7.50", company="DEMF", Department="D9"),  # unchanged (7.5 = 7.50)
    ]  # and USMF 110110 in March is held but left the plan: reversed
    deltas, _ = plan_deltas(rows, holding, WINDOW)
    got = [(d.company, d.account, d.period, d.amount, d.revision, d.source_line) for d in deltas]
    assert got == [
        ("USMF", "110110", MAR, Decimal("-5"), True, None),
        ("USMF", "401100", FEB, Decimal("-12"), True, 5),
        ("USMF", "601500", JAN, Decimal("50.00"), True, 2),
        ("USMF", "601500", JAN, Decimal("-40.25"), False, 3),
    ]
    plan = build(rows, holding)
    assert [(j.budget_code, j.revision, j.line_count) for j in plan.journals] == [
        ("Original", False, 1),
        ("Revision", True, 3),
    ]
    assert any(x.memo == "Anaplan Budget 2025-03 removed" for x in plan.journals[1].lines())
    # the same plan again: nothing to write
    again = plan_deltas(rows, [*holding, *((d.company, d.account, d.dimensions, d.period, d.amount) for d in deltas)],
                        WINDOW)[0]  # fmt: skip
    assert again == []


def test_held_lines_outside_the_window_are_never_touched() -> None:
    holding = held(("USMF", "601500", "", date(2025, 6, 1), "999"))
    deltas, _ = plan_deltas([pr(2, "601500", "1")], holding, WINDOW)
    assert [(d.period, d.amount) for d in deltas] == [(JAN, Decimal("1"))]


def test_codes_and_models_per_export_and_fiscal_year() -> None:
    export = PlanExport(export_action="Forecast export", version="Forecast", budget_models={2025: "FC2025", 2026: "FC2026"},
                        budget_code="FcOrig", revision_budget_code="FcRev")  # fmt: skip
    rows = [PlanRow(line_number=2, company="USMF", account="601500", dimensions={}, period=JAN, version="Forecast", amount=Decimal("1")),
            PlanRow(line_number=3, company="USMF", account="601500", dimensions={}, period=date(2025, 7, 1), version="Forecast", amount=Decimal("2"))]  # fmt: skip
    deltas, _ = plan_deltas(rows, [], [JAN, date(2025, 7, 1)])
    plan = build_entries(deltas, connection="acme", run_id="r1", export=export, settings=BUDGET,
                         currencies=CURRENCIES, segment_order=SEGMENTS, fiscal_year_start_month=7)  # fmt: skip
    assert [(j.budget_model, j.budget_code) for j in plan.journals] == [
        ("FC2025", "FcOrig"),
        ("FC2026", "FcOrig"),
    ]
    assert [j.description.split(" ")[1:3] for j in plan.journals] == [
        ["Forecast", "FY2025"],
        ["Forecast", "FY2026"],
    ]
    with pytest.raises(ConfigError, match="revision_budget_code"):
        build([pr(2, "601500", "2")], held(("USMF", "601500", "", JAN, "1")),
              settings=JournalSettings(budget_model="M", budget_code="C"))  # fmt: skip
    with pytest.raises(ConfigError, match="budget model and a budget code"):
        build(settings=JournalSettings())


def test_keys_tags_and_descriptions_are_readable_and_stable() -> None:
    a, b = build(), build(list(reversed(ROWS)))
    assert [j.key for j in a.journals] == [j.key for j in b.journals]
    tag = export_tag("acme", "Budget export")
    assert all(j.key.startswith(tag + "-") and len(j.key) == 15 for j in a.journals)
    assert export_tag("other", "Budget export") != tag
    text = a.journals[1].description
    assert text == f"{a.journals[1].key} Budget FY2025 2025-01..02 run run-0001 Budget export"[:60]
    assert len(entry_description("K" * 15, "V" * 30, 2025, JAN, MAR, "r", "E" * 30)) == 60
    keys = [x.line_key for x in a.journals[1].lines()]
    assert len(set(keys)) == len(keys) and all(k.startswith(a.journals[1].key + "-") for k in keys)
    other_run = build_entries(plan_deltas(ROWS, [], WINDOW)[0], connection="acme", run_id="run-0002", export=EXPORT,
                              settings=BUDGET, currencies=CURRENCIES, segment_order=SEGMENTS)  # fmt: skip
    assert other_run.journals[1].key != a.journals[1].key


def test_ledger_journal_vouchers_are_unique_per_entry_and_balance() -> None:
    settings = LEDGER.model_copy(update={"offset_account": "999999"})
    plan = build(settings=settings)
    usmf = plan.journals[1]
    stem = usmf.key.split("-", 1)[1]
    assert [v.voucher for v in usmf.vouchers] == [f"{stem}-20250101", f"{stem}-20250201"]
    for j in plan.journals:
        for v in j.vouchers:
            assert v.balance == 0 and v.lines[-1].is_offset
    offset = usmf.vouchers[0].lines[-1]
    assert (offset.account_display_value, offset.debit, offset.credit, offset.memo) == (
        "999999---", Decimal(0), Decimal("59.75"), "Anaplan offset 2025-01",
    )  # fmt: skip
    assert plan.offset_lines == 3
    assert all(j.budget_code is None for j in plan.journals)


def test_ledger_journal_needs_a_non_current_posting_layer_and_budget_register_no_offset() -> None:
    with pytest.raises(ValueError, match="posting layer"):
        JournalSettings(target="ledger_journal")
    with pytest.raises(ValueError, match="posting layer"):
        JournalSettings(target="ledger_journal", posting_layer="Current")
    with pytest.raises(ValueError, match="offset_account"):
        JournalSettings(offset_account="999999")
    assert JournalSettings().target == "budget_register"


def test_offset_given_as_display_value_and_too_many_segments() -> None:
    plan = build(settings=LEDGER.model_copy(update={"offset_account": "999999-BU1"}))
    assert plan.journals[0].vouchers[0].lines[-1].account_display_value == "999999-BU1--"
    with pytest.raises(BadInputData, match="has 5 segments"):
        build(settings=LEDGER.model_copy(update={"offset_account": "9-9-9-9-9"}))


def test_vouchers_split_and_batches_keep_vouchers_whole() -> None:
    rows = [pr(i + 2, f"6{i:05d}", str(i + 1)) for i in range(10)] + [
        pr(20 + i, f"7{i:05d}", "1", month=2) for i in range(3)
    ]
    plan = build(
        rows, settings=LEDGER.model_copy(update={"offset_account": "999999"}), max_lines_per_voucher=4
    )
    j = plan.journals[0]
    assert [len(v.lines) for v in j.vouchers] == [4, 4, 4, 2, 4]
    assert all(v.balance == 0 for v in j.vouchers)
    batches = list(batch_lines(j, 9))
    assert [len(b) for b in batches] == [8, 6, 4]
    for b in batches:
        vouchers = {x.voucher for x in b}
        for v in j.vouchers:
            if v.voucher in vouchers:
                assert all(x in b for x in v.lines)
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
    with pytest.raises(BadInputData, match=r"plan cell USMF 601500 2025-01 \(export line 2\).*Project='X'"):
        build([pr(2, "601500", "1", Project="X")])
    with pytest.raises(BadInputData, match=r"line 2: period 2025-06 is outside the run's window"):
        build([pr(2, "601500", "1", month=6)])
