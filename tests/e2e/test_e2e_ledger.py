"""Actuals that tie to F&O's own ledger, end to end on the local engine (dynamics-budget-fiscal.md §B-§E).

The F&O sandbox runs with its ledgers and fiscal calendars (USMF: USD, monthly; DEMF: EUR with reporting
currency USD, a 4-4-5 calendar), opening and year-end closing entries, an intercompany voucher, a voucher on
the Tax posting layer, a budget appropriation entry, and ledger account display values in each account
structure's own order (balance sheet MainAccount-BusinessUnit, P&L MainAccount-CostCenter-Department-
BusinessUnit) in one test. Expected cells are computed here from the sandbox's own seed (its generator, its special
vouchers and its calendars), never from the connector's staged files or transforms.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from e2e_support import ACTUAL, cause_of, error_message, label, ledger, s3_put, s3_text

from devkit.engine import LocalEngine
from devkit.sandbox.anaplan.seed import Member
from devkit.sandbox.dynamics import seed as fo_seed
from devkit.sandbox.dynamics.books import SpecialLine
from devkit.stack import BLANK, Stack, running

pytestmark = pytest.mark.integration

FISCAL_FORMAT = "FY{fyname} P{fpp}"
BOOKS = {
    "books": True,
    "fiscal_calendars": {"DEMF": "445"},
    "publish_gl_entity": True,
}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running(gl_lines=700, months=12, dynamics_kwargs=BOOKS) as st:
        _add_fiscal_members(st)
        yield st


def _add_fiscal_members(st: Stack) -> None:
    """The model builder's fiscal time for the 4-4-5 company: members like ``FY2025 P06``."""
    app = st.anaplan.app
    with app._lock:
        periods = app.seed.lists["Periods"]
        for i in range(1, 13):
            code = f"FY2025 P{i:02d}"
            periods.members[code] = Member(code, code, f"29{i:010d}")


def connection(stack: Stack, **ledger_options: Any) -> dict[str, Any]:
    cfg = stack.connection()
    cfg["dynamics"] = {**cfg["dynamics"], "gl_route": "bi"}
    # the sandbox's own ledger settings (how its display values are ordered) stay
    cfg["ledger"] = {**cfg.get("ledger", {}), "fiscal_period_format": FISCAL_FORMAT, **ledger_options}
    return cfg


def run(stack: Stack, first: str, last: str, **opts: Any) -> tuple[Any, dict[str, Any]]:
    """Run the actuals flow for the months on a fresh engine; the result and the run's ledger steps."""
    with LocalEngine(wait_scale=0.0) as engine:
        engine.install_connection(connection(stack, **opts))
        payload = {"connection": "demo", "trigger": "manual", "periods": {"from": first, "to": last}}
        result = engine.run("ActualsFlow", payload, timeout=240)
        return result, {s.step: s for s in ledger(engine).steps(result.name)}


def succeeded(result: Any) -> None:
    assert result.status == "SUCCEEDED", (result.error, result.cause, result.task_failures())


# --- the source of truth: the sandbox's own ledger -------------------------------------------------------


def _vouchers(
    stack: Stack,
) -> Iterator[tuple[str, date, str, str, str, list[tuple[str, str, str, str, int]]]]:
    """(company, date, period type, layer, journal category, lines) of every voucher the sandbox posted."""
    fo = stack.dynamics.app
    gl = fo.gl
    for v in range(gl.voucher_count):
        head = gl.voucher(v)
        lines = [
            (x.account.account, x.business_unit, x.cost_center, x.department, x.cents)
            for x in gl.voucher_lines(v)
        ]
        yield head.company, head.accounting_date, "Operating", "Current", "GeneralJournal", lines
    for sv in fo.books.snapshot():
        lines = [(x.account, x.business_unit, x.cost_center, x.department, x.cents) for x in sv.lines]
        yield sv.company, sv.accounting_date, sv.period_type, sv.posting_layer, sv.journal_category, lines


def _bucket(stack: Stack, company: str, d: date, months: set[str]) -> str | None:
    """The Anaplan period label of a date for the company, if it belongs to the run's months: the calendar
    month for the monthly calendar, the fiscal period (by the month it ends in) for the 4-4-5 one."""
    books = stack.dynamics.app.books
    if books.calendars[company] == "monthly":
        return label(d.year, d.month) if f"{d.year:04d}-{d.month:02d}" in months else None
    p = books.operating_period(company, d)
    if f"{p.end.year:04d}-{p.end.month:02d}" not in months:
        return None
    return f"FY{p.year} P{int(p.name[1:]):02d}"


def expected(stack: Stack, months: Iterable[str]) -> dict[tuple[str, ...], Decimal]:
    """Operating-period GL on the Current layer, budget appropriation left out, per Anaplan cell."""
    wanted = set(months)
    sums: dict[tuple[str, ...], int] = defaultdict(int)
    for company, d, kind, layer, category, lines in _vouchers(stack):
        if kind != "Operating" or layer != "Current" or category == "Budget":
            continue
        where = _bucket(stack, company, d, wanted)
        if where is None:
            continue
        for account, bu, cc, dep, cents in lines:
            sums[(company, account, bu or BLANK, cc or BLANK, dep or BLANK, where, ACTUAL)] += cents
    return {k: Decimal(c).scaleb(-2) for k, c in sums.items() if c}


def held(stack: Stack, labels: set[str]) -> dict[tuple[str, ...], Decimal]:
    out: dict[tuple[str, ...], Decimal] = {}
    for key, values in stack.anaplan.app.module_cells("GL Actuals").items():
        amount = values.get("Amount")
        if key[-2] in labels and key[-1] == ACTUAL and isinstance(amount, Decimal) and amount != 0:
            out[key] = amount
    return out


def assert_cells(stack: Stack, months: Iterable[str]) -> dict[tuple[str, ...], Decimal]:
    want = expected(stack, months)
    assert want, "the sandbox posted nothing in the window: the test would prove nothing"
    labels = {k[-2] for k in want}
    got = held(stack, labels)
    missing = {k: v for k, v in want.items() if got.get(k) != v}
    extra = {k: v for k, v in got.items() if k not in want}
    assert not missing and not extra, (
        f"{len(missing)} cell(s) differ (e.g. {list(missing.items())[:3]} held {[got.get(k) for k in list(missing)[:3]]}); "
        f"{len(extra)} unexpected (e.g. {list(extra.items())[:3]})"
    )
    return want


def clear(stack: Stack) -> None:
    app = stack.anaplan.app
    with app._lock:
        app.seed.modules["GL Actuals"].cells.clear()


# --- fiscal periods --------------------------------------------------------------------------------------


def test_closing_entry_in_period_13_leaves_december_pl_intact(stack: Stack) -> None:
    closing = [v for v in stack.dynamics.app.books.vouchers if v.period_type == "Closing"]
    assert {v.company for v in closing} == {"USMF", "DEMF"}
    assert all(v.accounting_date == date(2025, 12, 31) for v in closing)
    clear(stack)
    result, _ = run(stack, "2025-12", "2025-12")
    succeeded(result)
    want = expected(stack, ["2025-12"])
    usmf_pl = {k: v for k, v in want.items() if k[0] == "USMF" and k[1][0] in "4568"}
    got = held(stack, {"Dec 25"})
    assert usmf_pl and {k: got.get(k) for k in usmf_pl} == usmf_pl, (
        "USMF's December P&L as posted, not closed"
    )
    assert_cells(stack, ["2025-12"])


def test_445_company_loads_into_fiscal_period_labels(stack: Stack) -> None:
    clear(stack)
    result, _ = run(stack, "2025-06", "2025-07")
    succeeded(result)
    want = assert_cells(stack, ["2025-06", "2025-07"])
    assert {k[-2] for k in want if k[0] == "DEMF"} == {
        "FY2025 P06",
        "FY2025 P07",
    }  # P06 ends 1 Jul, P07 29 Jul
    assert {k[-2] for k in want if k[0] == "USMF"} == {"Jun 25", "Jul 25"}


def test_intercompany_voucher_lands_in_both_companies(stack: Stack) -> None:
    ic = {v.company: v for v in stack.dynamics.app.books.vouchers if v.voucher == "ICV0000001"}
    assert set(ic) == {"USMF", "DEMF"} and ic["DEMF"].subledger_company == "usmf"
    clear(stack)
    result, _ = run(stack, "2025-06", "2025-07")
    succeeded(result)
    want = expected(stack, ["2025-06", "2025-07"])
    got = held(stack, {k[-2] for k in want})

    def side(company: str, account: str, cells: dict[tuple[str, ...], Decimal]) -> Decimal:
        return sum((v for k, v in cells.items() if k[0] == company and k[1] == account), Decimal(0))

    # USMF's receivable and DEMF's expense and payable, each in its own company, to the cent
    for company, account in (("USMF", "605110"), ("USMF", "130130"), ("DEMF", "605110"), ("DEMF", "200140")):
        assert side(company, account, got) == side(company, account, want), (company, account)
    assert side("DEMF", "200140", want) <= Decimal("-12345.67")
    assert_cells(stack, ["2025-06", "2025-07"])


def test_two_account_structures_split_into_the_right_dimension_columns(stack: Stack) -> None:
    """LedgerAccount follows each account structure's own order (balance sheet MainAccount-BusinessUnit, P&L
    MainAccount-CostCenter-Department-BusinessUnit), not the integration format's."""
    app = stack.dynamics.app
    app.config.ledger_account_order = "structure"
    try:
        sample = [r["LedgerAccount"] for v in range(4) for r in app._line_rows(v)]
        assert any(x.count("-") == 1 for x in sample) and any(
            x.split("-")[1].startswith("OU_") for x in sample
        )
        clear(stack)
        result, _ = run(stack, "2025-06", "2025-07")
    finally:
        app.config.ledger_account_order = "format"
    succeeded(result)
    want = assert_cells(stack, ["2025-06", "2025-07"])
    assert all(k[2] == BLANK or not k[2].startswith("OU_") for k in want)  # business units in their column
    assert any(k[3].startswith("OU_") for k in want) and any(k[2] != BLANK and k[3] == BLANK for k in want)


def test_eur_and_usd_companies_reconcile_per_currency(stack: Stack) -> None:
    clear(stack)
    result, steps = run(stack, "2025-06", "2025-07")
    succeeded(result)
    want = assert_cells(stack, ["2025-06", "2025-07"])
    rec = steps["ReconcileActuals"].detail["reconciliation"]
    assert set(rec) == {"USD", "EUR"} and all(r["ok"] for r in rec.values())
    per_company = defaultdict(set)
    for k in want:
        per_company[k[0]].add((k[1], k[2], k[3], k[4], k[5]))
    assert rec["USD"]["matched_accounts"] >= len(per_company["USMF"])
    assert rec["EUR"]["matched_accounts"] >= len(per_company["DEMF"])
    by_currency = steps["PrepareActuals"].detail["by_currency"]
    assert set(by_currency) == {"USD", "EUR"} and all(Decimal(v) == 0 for v in by_currency.values())
    assert steps["PrepareActuals"].detail["total"] is None, "EUR and USD are never added"


def test_a_cell_anaplan_holds_differently_fails_the_run_naming_the_cell_in_its_currency(stack: Stack) -> None:
    """The read-back proves the load: a EUR cell that Anaplan holds one cent off after the import (a formula,
    another process writing the module) fails ReconcileActuals, in EUR only, naming the cell."""
    clear(stack)
    app = stack.anaplan.app
    changed: list[tuple[str, ...]] = []

    def one_cent_off_before_the_read_back(handler: Any) -> Any:
        def wrapped(event: dict[str, Any], ctx: Any) -> Any:
            if event.get("step") == "StartReadback":
                with app._lock:
                    cells = app.seed.modules["GL Actuals"].cells
                    key = next(k for k, v in sorted(cells.items()) if k[0] == "DEMF" and v.get("Amount"))
                    cells[key] = {
                        **cells[key],
                        "Amount": Decimal(str(cells[key]["Amount"])) + Decimal("0.01"),
                    }
                    changed.append(key)
            return handler(event, ctx)

        return wrapped

    with LocalEngine(wait_scale=0.0) as engine:
        engine.install_connection(connection(stack))
        engine.wrappers["AnaplanStartFunction"] = one_cent_off_before_the_read_back
        payload = {"connection": "demo", "trigger": "manual", "periods": {"from": "2025-06", "to": "2025-07"}}
        result = engine.run("ActualsFlow", payload, timeout=240)
        steps = {s.step: s for s in ledger(engine).steps(result.name)}
        cause = cause_of(engine, result.name)
    assert result.status == "FAILED" and changed
    assert cause["Error"] == "ReconciliationFailed", cause
    rec = steps["ReconcileActuals"].detail["reconciliation"]
    assert rec["USD"]["ok"] and not rec["EUR"]["ok"], rec
    (problem,) = steps["ReconcileActuals"].detail["problems"]
    company, account = changed[0][0], changed[0][1]
    assert f"{company} {account}" in problem and "difference -0.01" in problem, problem
    assert "F&O [EUR]" in problem and "USD" not in problem


def test_reporting_currency_loads_both_companies_in_usd(stack: Stack) -> None:
    clear(stack)
    result, steps = run(stack, "2025-06", "2025-07", currency="reporting")
    succeeded(result)
    rec = steps["ReconcileActuals"].detail["reconciliation"]
    assert set(rec) == {"USD"}
    rows = stack.dynamics.app._line_rows(stack.dynamics.app.books.vouchers[-1].index)
    assert all("ReportingCurrencyAmount" in r for r in rows)


def test_balance_sheet_accounts_as_period_end_balances_including_the_opening_balance(stack: Stack) -> None:
    clear(stack)
    result, _ = run(stack, "2025-03", "2025-03", balance_sheet="balances")
    succeeded(result)
    sums: dict[tuple[str, ...], int] = defaultdict(int)
    for company, d, kind, layer, category, lines in _vouchers(stack):
        if company != "USMF" or layer != "Current" or category == "Budget" or kind == "Closing":
            continue
        for account, bu, cc, dep, cents in lines:
            bs = fo_seed.main_account(account).is_balance_sheet  # type: ignore[union-attr]
            if (bs and d.year == 2025 and d.month <= 3) or (
                not bs and kind == "Operating" and (d.year, d.month) == (2025, 3)
            ):
                sums[("USMF", account, bu or BLANK, cc or BLANK, dep or BLANK, "Mar 25", ACTUAL)] += cents
    want = {k: Decimal(c).scaleb(-2) for k, c in sums.items() if c}
    opening = [
        v for v in stack.dynamics.app.books.vouchers if v.company == "USMF" and v.period_type == "Opening"
    ]
    assert opening and opening[0].accounting_date == date(2025, 1, 1), (
        "the balances must include an opening entry"
    )
    assert (
        "USMF",
        "290100",
        "001",
        BLANK,
        BLANK,
        "Mar 25",
        ACTUAL,
    ) in want  # retained earnings: opening only
    got = {k: v for k, v in held(stack, {"Mar 25"}).items() if k[0] == "USMF"}
    missing = {k: v for k, v in want.items() if got.get(k) != v}
    extra = {k: v for k, v in got.items() if k not in want}
    assert not missing and not extra, (list(missing.items())[:3], list(extra.items())[:3])


def test_account_attributes_become_property_columns_of_the_account_list(stack: Stack) -> None:
    opts = {
        "account_type_column": "Type",
        "account_category_column": "Category",
        "account_parent_column": "Parent",
    }
    imp = stack.anaplan.app.import_by_name("Load Accounts")
    before = list(imp.header_names)
    imp.header_names = [*before, "Type", "Category", "Parent"]  # the model builder added the list properties
    try:
        with LocalEngine(wait_scale=0.0) as engine:
            engine.install_connection(connection(stack, **opts))
            payload = {
                "connection": "demo",
                "trigger": "manual",
                "periods": {"from": "2025-05", "to": "2025-05"},
            }
            result = engine.run("ActualsFlow", payload, timeout=240)
            succeeded(result)
            text = s3_text(engine, f"runs/demo/{result.name}/master/accounts.csv").decode("utf-8")
    finally:
        imp.header_names = before
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["Code", "Name", "Type", "Category", "Parent"]
    want = [[a.account, a.name, a.account_type, a.category, ""] for a in fo_seed.MAIN_ACCOUNTS]
    assert rows[1:] == want
    assert {r[2] for r in rows[1:]} >= {"Asset", "Liability", "Equity", "Revenue", "Expense"}


# --- control totals ---------------------------------------------------------------------------------------


def test_control_totals_from_the_second_path_agree(stack: Stack) -> None:
    clear(stack)
    result, steps = run(stack, "2025-06", "2025-07", second_path="other_route")
    succeeded(result)
    controls = steps["ControlTotals"].detail
    assert controls["problems"] == [] and set(controls["second_path"]) == {"USD", "EUR"}
    assert all(r["ok"] and r["matched_accounts"] > 0 for r in controls["second_path"].values())
    assert_cells(stack, ["2025-06", "2025-07"])


def _run_planted(
    stack: Stack, lose: Callable[[list[dict[str, Any]]], list[dict[str, Any]]], **opts: Any
) -> tuple[Any, str, int]:
    """Run with an extraction bug planted: after the first ExtractGL slice is staged, ``lose`` drops lines
    from it (as a lost page would). The result, the recorded error text and how many lines were lost."""
    dropped: list[int] = []
    once = threading.Lock()  # the companies' slices run in parallel (Map state)
    with LocalEngine(wait_scale=0.0) as engine:

        def wrap(handler: Any) -> Any:
            def wrapped(event: dict[str, Any], ctx: Any) -> Any:
                out = handler(event, ctx)
                with once:
                    plant = not dropped and bool(out.get("lines"))
                    if plant:
                        dropped.append(0)
                if plant:
                    rows = [
                        json.loads(x) for x in s3_text(engine, out["key"]).decode().splitlines() if x.strip()
                    ]
                    kept = lose(rows)
                    dropped[0] = len(rows) - len(kept)
                    s3_put(engine, out["key"], "".join(json.dumps(r) + "\n" for r in kept).encode())
                return out

            return wrapped

        engine.install_connection(connection(stack, **opts))
        engine.wrappers["ExtractGLFunction"] = wrap
        payload = {"connection": "demo", "trigger": "manual", "periods": {"from": "2025-06", "to": "2025-07"}}
        result = engine.run("ActualsFlow", payload, timeout=240)
        text = error_message(cause_of(engine, result.name)) if result.status == "FAILED" else ""
        return result, text, sum(dropped)


def test_a_dropped_page_of_vouchers_is_caught_by_the_second_path(stack: Stack) -> None:
    """Whole vouchers lost (a page of headers): every company x period still nets to zero, only the second
    path through F&O sees the gap."""

    def drop_vouchers(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        vouchers = sorted({r["voucher"] for r in rows})
        lost = set(vouchers[: max(1, len(vouchers) // 4)])
        return [r for r in rows if r["voucher"] not in lost]

    clear(stack)
    result, text, dropped = _run_planted(stack, drop_vouchers, second_path="other_route")
    assert dropped > 0
    assert result.status == "FAILED", "a lost page of vouchers must fail the run"
    assert "via the published route" in text and "do not reconcile" in text, text[:800]
    assert held(stack, {"Jun 25", "Jul 25", "FY2025 P06", "FY2025 P07"}) == {}, "nothing was loaded"


def test_a_dropped_line_is_caught_by_the_balance_control(stack: Stack) -> None:
    def drop_one_line(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return rows[1:]

    clear(stack)
    result, text, dropped = _run_planted(stack, drop_one_line)
    assert dropped == 1 and result.status == "FAILED"
    assert "nets to" in text and "not zero" in text, text[:800]


# --- late postings ----------------------------------------------------------------------------------------


def _month(d: date, delta: int) -> date:
    index = d.year * 12 + d.month - 1 + delta
    return date(index // 12, index % 12 + 1, 1)


def test_a_posting_into_an_already_loaded_month_is_picked_up_by_the_next_scheduled_run() -> None:
    today = datetime.now(UTC).date()
    start = _month(today, -4)
    with running(gl_lines=300, months=4, start_month=start) as st:
        cfg = st.connection()
        cfg["close_calendar"] = {
            **cfg["close_calendar"],
            "timezone": "UTC",
            "first_period": start.strftime("%Y-%m"),
        }
        cfg["dynamics"] = {**cfg["dynamics"], "gl_route": "bi"}
        app = st.anaplan.app
        with app._lock:  # the model's time range covers the months the schedule loads
            for i in range(4):
                m = _month(start, i)
                code = label(m.year, m.month)
                app.seed.lists["Periods"].members.setdefault(code, Member(code, code, f"28{i:010d}"))
        with LocalEngine(wait_scale=0.0) as engine:
            engine.install_connection(cfg)
            scheduled = {"connection": "demo", "trigger": "schedule", "periods": None}
            first = engine.run("ActualsFlow", scheduled, timeout=240)
            succeeded(first)
            loaded = first.output["gate"]["periods"]
            assert loaded, "the first scheduled run loads the due months"
            target = date.fromisoformat(loaded[-1] + "-15")
            st.dynamics.app.books.post_late(
                "USMF", target,
                [SpecialLine("601500", "001", "OU_3566", "022", 4_321_09, "Late travel invoice"),
                 SpecialLine("200110", "001", "", "", -4_321_09, "Late travel invoice")],
                "LATE000001",
            )  # fmt: skip
            second = engine.run("ActualsFlow", scheduled, timeout=240)
            succeeded(second)
            assert loaded[-1] in second.output["gate"]["periods"]
            want = _expected_monthly(st, [loaded[-1]])
            cells = held(st, {label(target.year, target.month)})
            assert cells == want
            late = ("USMF", "601500", "001", "OU_3566", "022", label(target.year, target.month), ACTUAL)
            assert late in cells


def _expected_monthly(st: Stack, months: list[str]) -> dict[tuple[str, ...], Decimal]:
    wanted = set(months)
    sums: dict[tuple[str, ...], int] = defaultdict(int)
    for company, d, kind, layer, category, lines in _vouchers(st):
        key = f"{d.year:04d}-{d.month:02d}"
        if key not in wanted or kind != "Operating" or layer != "Current" or category == "Budget":
            continue
        for account, bu, cc, dep, cents in lines:
            sums[
                (company, account, bu or BLANK, cc or BLANK, dep or BLANK, label(d.year, d.month), ACTUAL)
            ] += cents
    return {k: Decimal(c).scaleb(-2) for k, c in sums.items() if c}
