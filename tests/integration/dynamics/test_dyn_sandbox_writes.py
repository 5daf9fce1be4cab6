"""Writing journals and budget register entries to the sandbox over HTTPS (dynamics-fo.md §2.5-§2.7, §3, §5)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from d365_anaplan.config import parse_connection
from d365_anaplan.dynamics.client import DynamicsConnection
from d365_anaplan.dynamics.journal_records import EntryHeader, JournalLineInput, idempotency_key
from d365_anaplan.errors import DynamicsValidationError
from devkit.sandbox.dynamics import budget as fo_budget
from devkit.sandbox.dynamics.cli import RunningSandbox
from devkit.sandbox.dynamics.testing import ANAPLAN_STUB

pytestmark = pytest.mark.integration
DAY = date(2026, 1, 31)


def voucher(v: str, amount: str, account: str = "601100", cc: str = "OU_3566") -> list[JournalLineInput]:
    return [
        JournalLineInput(
            account,
            {"BusinessUnit": "001", "CostCenter": cc, "Department": "022"},
            DAY,
            Decimal(amount),
            v,
            text="Plan FY26 'Q1'",
        ),
        JournalLineInput("110110", {"BusinessUnit": "001"}, DAY, -Decimal(amount), v),
    ]


def test_journal_write_is_idempotent_and_posts(
    sandbox: RunningSandbox, connect_to: Callable[..., DynamicsConnection]
) -> None:
    conn = connect_to(sandbox)
    key = idempotency_key("sandbox", "run-1", "USMF", "Budget")
    lines = voucher("PLAN-0001", "1500.25") + voucher("PLAN-0002", "99.99", account="603100")
    first = conn.writer.write_ledger_journal("USMF", lines, key=key)
    assert first.lines_written == 4 and not first.errors and not first.resumed
    stored = sandbox.app.journal_lines[("USMF", first.journal_batch_number)]
    assert [r["AccountDisplayValue"] for r in stored] == [
        "601100-001-OU_3566-022",
        "110110-001--",
        "603100-001-OU_3566-022",
        "110110-001--",
    ]
    assert stored[0]["DebitAmount"] == Decimal("1500.25") and stored[1]["CreditAmount"] == Decimal("1500.25")
    header = sandbox.app.journal_headers[("USMF", first.journal_batch_number)]
    assert (
        header["IntegrationKey"] == key
        and header["JournalName"] == "Budget"
        and header["JournalTotalDebit"] == Decimal("1600.24")
    )

    again = conn.writer.write_ledger_journal("USMF", lines, key=key)  # a retried step
    assert again.resumed and again.journal_batch_number == first.journal_batch_number
    assert again.lines_written == 0 and again.lines_skipped == 4
    assert len(sandbox.app.journal_headers) == 1 and len(stored) == 4

    assert header["PostingLayer"] == "CustomLayer1", "defaulted from the journal name"
    with sandbox.app.lock:  # the customer's posting (batch job "Journal post" in F&O)
        sandbox.app._run_posting_job()
    assert header["IsPosted"] == "Yes"
    third = conn.writer.write_ledger_journal("USMF", lines, key=key)
    assert third.already_posted and third.lines_written == 0 and len(sandbox.app.journal_headers) == 1


def test_partial_journal_is_completed_on_resume(
    sandbox: RunningSandbox, connect_to: Callable[..., DynamicsConnection]
) -> None:
    conn = connect_to(sandbox)
    key = idempotency_key("sandbox", "run-2", "USMF")
    conn.writer.write_ledger_journal("USMF", voucher("A", "10.00"), key=key)
    result = conn.writer.write_ledger_journal("USMF", voucher("A", "10.00") + voucher("B", "20.00"), key=key)
    assert result.resumed and result.lines_skipped == 2 and result.lines_written == 2
    assert len(sandbox.app.journal_lines[("USMF", result.journal_batch_number)]) == 4


def test_fo_errors_are_captured_per_line_and_the_voucher_is_atomic(
    sandbox: RunningSandbox, connect_to: Callable[..., DynamicsConnection]
) -> None:
    conn = connect_to(sandbox)
    lines = (
        voucher("OK-1", "5.00")
        + voucher("BAD-1", "7.00", cc="OU_0000")
        + voucher("SUSP-1", "3.00", account="110200")
    )
    result = conn.writer.write_ledger_journal("DEMF", lines, key=idempotency_key("sandbox", "run-3", "DEMF"))
    assert result.lines_written == 2 and result.vouchers_failed == 2
    messages = {e.voucher: e.message for e in result.errors if "rolled back" not in e.message}
    assert (
        "not a valid dimension value in account structure" in messages["BAD-1"]
        and "OU_0000" in messages["BAD-1"]
    )
    assert "suspended" in messages["SUSP-1"]
    stored = sandbox.app.journal_lines[("DEMF", result.journal_batch_number)]
    assert {r["Voucher"] for r in stored} == {"OK-1"}  # the failed vouchers left nothing behind
    with pytest.raises(DynamicsValidationError):
        result.raise_for_errors()


def test_unknown_journal_name_is_refused_with_fo_text(
    sandbox: RunningSandbox, connect_to: Callable[..., DynamicsConnection]
) -> None:
    conn = connect_to(sandbox, dynamics={"journal": {"journal_name": "NoSuch"}})
    with pytest.raises(DynamicsValidationError, match="Journal names"):
        conn.writer.write_ledger_journal("USMF", voucher("X", "1.00"), key="APX")


BUDGET = {"target": "budget_register", "budget_model": "FY2026", "budget_code": "Original",
          "revision_budget_code": "Revision"}  # fmt: skip


@pytest.mark.parametrize("entity_sign", ["as_entered", "stored"])
def test_budget_register_entry(
    make_sandbox: Callable[..., RunningSandbox],
    connect_to: Callable[..., DynamicsConnection],
    entity_sign: str,
) -> None:
    """Revenue written positive with AmountType Revenue, the header's budget type from the code, lines in the
    budget register format (not the ledger one); read back in ledger sign whichever sign the entity shows."""
    sandbox = make_sandbox(gl_lines=100, budget_entity_sign=entity_sign)
    conn = connect_to(sandbox, dynamics={"journal": {**BUDGET, "budget_revenue_read_sign": entity_sign}})
    lines = [
        JournalLineInput(
            "601100", {"CostCenter": "OU_3566", "BusinessUnit": "001"}, DAY, Decimal("1200.00"), "V"
        ),
        JournalLineInput("401100", {"BusinessUnit": "002"}, DAY, Decimal("-5000.00"), "V"),
    ]
    head = EntryHeader("APTEST-00000001", "APTEST-00000001 Budget FY2026 2026-01..01 run r1 Budget")
    result = conn.writer.write("USMF", lines, head)
    assert result.lines_written == 2 and not result.errors and result.status == "Draft"
    header = sandbox.app.budget_headers[("USMF", result.journal_batch_number)]
    assert (header["BudgetType"], header["ExpenseBudgetTotal"], header["RevenueBudgetTotal"]) == (
        "OriginalBudget", Decimal("1200.00"), Decimal("5000.00"),
    )  # fmt: skip
    stored = sandbox.app.budget_lines[("USMF", result.journal_batch_number)]
    assert [(r["DimensionDisplayValue"], r["AmountType"]) for r in stored] == [
        ("601100--OU_3566-001", "Expense"),  # MainAccount-Department-CostCenter-BusinessUnit
        ("401100---002", "Revenue"),
    ]
    assert [fo_budget.stored_amount(r) for r in stored] == [Decimal("1200.00"), Decimal("-5000.00")]
    held = conn.writer.held("USMF", "APTEST", DAY, DAY)
    assert [(h.account, h.amount) for h in held] == [
        ("601100", Decimal("1200.00")),
        ("401100", Decimal("-5000.00")),
    ]
    sign, what = conn.writer.observed_revenue_sign("USMF", "APTEST") or ("", "")
    assert sign == entity_sign, what  # found against the raw BudgetTransactionLineBiEntities
    raw = sandbox.app._rows(sandbox.app.defs["BudgetTransactionLineBiEntities"]) or []
    assert sorted(r["TransactionCurrencyAmount"] for r in raw) == [Decimal("-5000.00"), Decimal("1200.00")]
    again = conn.writer.write("USMF", lines, head)
    assert again.resumed and again.lines_written == 0 and len(stored) == 2
    (entry,) = conn.writer.entries("USMF", "APTEST")
    assert entry.pending
    fo_budget.update_budget_balances(sandbox.app)
    (entry,) = conn.writer.entries("USMF", "APTEST")
    assert entry.status == "Completed" and not entry.pending
    done = conn.writer.write("USMF", [*lines, lines[0]], head)
    assert done.already_posted and done.lines_written == 0, "a completed entry is never edited"


def test_budget_register_validations(
    sandbox: RunningSandbox, connect_to: Callable[..., DynamicsConnection]
) -> None:
    conn = connect_to(sandbox, dynamics={"journal": BUDGET})
    line = [JournalLineInput("601100", {}, DAY, Decimal("1.00"), "V")]
    with pytest.raises(DynamicsValidationError, match="Budget model"):
        conn.writer.write_budget_register("USMF", line, key="K1", default_date=DAY, model="NOPE")
    with pytest.raises(DynamicsValidationError, match="Budget code"):
        conn.writer.write_budget_register("USMF", line, key="K2", default_date=DAY, code="NOPE")
    rev = conn.writer.write_budget_register("USMF", line, key="K3", default_date=DAY, code="Revision")
    assert sandbox.app.budget_headers[("USMF", rev.journal_batch_number)]["BudgetType"] == "Amendment"
    # the sandbox refuses an amount type that does not fit the account, and lines on completed entries
    body = {"dataAreaId": "usmf", "EntryNumber": rev.journal_batch_number, "DimensionDisplayValue": "401100",
            "EntryDate": "2026-01-31T12:00:00Z", "CurrencyCode": "USD", "TransactionCurrencyAmount": 5,
            "AmountType": "Expense"}  # fmt: skip
    with pytest.raises(
        DynamicsValidationError, match="Amount type 'Expense' is not valid for main account 401100"
    ):
        conn.client.post("BudgetRegisterEntryLines", body, what="POST line")
    fo_budget.update_budget_balances(sandbox.app)
    with pytest.raises(DynamicsValidationError, match="completed"):
        conn.client.post("BudgetRegisterEntryLines", {**body, "AmountType": "Revenue"}, what="POST line")


def test_print_config_is_a_valid_connection_fragment(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "devkit.cli", "sandbox", "dynamics", "--print-config", "--lines", "100"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    fragment = yaml.safe_load(out.stdout)
    assert set(fragment) == {"dynamics", "tls", "security", "ledger"}
    assert fragment["ledger"] == {"display_value_order": "format"}  # its display values follow the format
    cfg = parse_connection({"name": "from-cli", **fragment, "anaplan": ANAPLAN_STUB})
    assert cfg.dynamics.environment_url.startswith("https://127.0.0.1:")
    assert Path(fragment["tls"]["ca_bundle"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert cfg.dynamics.companies == ["USMF", "DEMF"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            JournalLineInput("601100", {"CostCenter": "Büro"}, DAY, Decimal("1.00"), "U1"),
            "Value 'Büro' for dimension 'CostCenter' is not a valid dimension value",
        ),
        (
            JournalLineInput("999999", {}, DAY, Decimal("1.00"), "U2"),
            "'999999' in field 'Main account' is not found",
        ),
        (
            JournalLineInput("601100", {}, DAY, Decimal("1.00"), "U3", currency="XXX"),
            "'XXX' in field 'Currency' is not found",
        ),
        (JournalLineInput("110200", {}, DAY, Decimal("1.00"), "U4"), "suspended"),
    ],
)
def test_sandbox_rejections_reach_the_caller_per_line(
    sandbox: RunningSandbox,
    connect_to: Callable[..., DynamicsConnection],
    line: JournalLineInput,
    message: str,
) -> None:
    conn = connect_to(sandbox)
    offset = JournalLineInput("110110", {}, DAY, -line.amount, line.voucher, currency=line.currency)
    result = conn.writer.write_ledger_journal("USMF", [line, offset], key="APBAD")
    assert result.lines_written == 0 and result.vouchers_failed == 1
    assert message in result.errors[0].message


def test_quote_in_journal_name_is_escaped_and_refused_by_fo(
    sandbox: RunningSandbox, connect_to: Callable[..., DynamicsConnection]
) -> None:
    conn = connect_to(sandbox, dynamics={"journal": {"journal_name": "O'Brien"}})
    with pytest.raises(
        DynamicsValidationError,
        match="'O'Brien' in field 'Name' is not found in the related table 'Journal names'",
    ):
        conn.writer.write_ledger_journal("USMF", voucher("Q1", "1.00"), key="AP'Q")
    assert (
        conn.reader.dimension_values("Cost'Center").values == []
    )  # the quote is escaped in the filter, not an error
