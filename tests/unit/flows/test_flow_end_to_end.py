"""Both flows chained the way the Lambda handlers call them (still no I/O: StringIO / bytes in memory)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from d365_anaplan.config import (
    ActualsMapping,
    CloseCalendar,
    DimensionMapping,
    JournalSettings,
    Mappings,
    PlanExport,
    PlansMapping,
)
from d365_anaplan.errors import AlignmentFailed, ReconciliationFailed
from d365_anaplan.flows.actuals import aggregate_actuals
from d365_anaplan.flows.actuals_file import write_actuals_csv
from d365_anaplan.flows.alignment import (
    ACCOUNT,
    check_alignment,
    collect_references,
    references_from_plans,
    resolve_actuals_alignment,
    resolve_alignment,
)
from d365_anaplan.flows.calendar import fiscal_horizon, periods_due
from d365_anaplan.flows.journal import batch_lines, build_entries
from d365_anaplan.flows.periods import parse_period_label
from d365_anaplan.flows.plan_currency import plan_currencies
from d365_anaplan.flows.plan_deltas import plan_deltas
from d365_anaplan.flows.plans import parse_plan_export
from d365_anaplan.flows.reconcile import assert_reconciled, reconcile
from d365_anaplan.flows.records import GLLine

DIMS = [DimensionMapping(name="CostCenter", column="Cost Centre", unmapped_member="CC_NONE")]


def test_actuals_flow() -> None:
    cal = CloseCalendar(timezone="Europe/London", business_day=3)
    due = periods_due(cal, datetime(2025, 3, 6, 9, tzinfo=UTC), date(2025, 1, 1))
    assert due == [date(2025, 2, 1)]
    lines = [
        GLLine(
            company="USMF",
            account=a,
            dimensions={"CostCenter": cc},
            accounting_date=date(2025, 2, d),
            amount=Decimal(x),
        )
        for a, cc, d, x in [
            ("601500", "CC01", 3, "120.40"),
            ("601500", "CC01", 27, "-20.40"),
            ("601500", "CC77", 5, "33.33"),
            ("123456", "CC01", 9, "-0.01"),
        ]
    ]
    mappings = Mappings(
        dimensions=DIMS, actuals=ActualsMapping(unmapped_policy="map", unmapped_account="999999")
    )
    members = {ACCOUNT: {"601500", "999999"}, "CostCenter": {"CC01", "CC_NONE"}}

    rows = aggregate_actuals(lines, dimensions=DIMS, companies={"USMF"}, periods=set(due)).rows()
    report = check_alignment(collect_references(rows, DIMS), members, target="anaplan")
    assert [(u.dimension, u.value) for u in report.unmatched] == [
        ("MainAccount", "123456"),
        ("CostCenter", "CC77"),
    ]
    remap = resolve_actuals_alignment(report, mappings, members)

    buf = io.StringIO()
    totals = write_actuals_csv(rows, buf, mapping=mappings.actuals, dimensions=DIMS, remap=remap)

    # Read the file back independently and reconcile it with the totals returned.
    read_back = [
        ("USMF", r["Account"], parse_period_label(r["Period"], "{Mon} {yy}"), Decimal(r["Amount"]))
        for r in csv.DictReader(io.StringIO(buf.getvalue()))
    ]
    assert_reconciled(
        reconcile(totals.items(), read_back, currency="USD", left_name="totals", right_name="file")
    )
    # Per company and period the source lines reconcile with the file even though accounts were remapped.
    source = reconcile(
        [(x.company, x.account, x.accounting_date, x.amount) for x in lines],
        read_back,
        currency="USD",
        left_name="dynamics",
        right_name="file",
    )
    assert source.matched_periods == 1
    assert [d.level for d in source.differences] == ["account", "account"]  # 123456 -> 999999 only
    assert totals.total == Decimal("133.32")


EXPORT_TEXT = (
    "Entity,Account,Cost Centre,Period,Version,Approval,Amount\n"
    "USMF,601500,CC01,FY26 Jul,Budget,Approved,1000.00\n"
    "USMF,601500,CC01,FY26 Aug,Budget,Approved,-250.00\n"
    "USMF,601500,CC02,FY26 Jul,Budget,Approved,0\n"
    "USMF,601500,CC01,FY26 Jul,Forecast,Approved,5\n"
    "DEMF,401100,,FY26 Jul,Budget,Approved,75.25\n"
)


def test_plans_flow() -> None:
    cal = CloseCalendar(fiscal_year_start_month=7)
    export = PlanExport(export_action="Budget FY26", version="Budget", journal_name="BudgetJrn")
    reader = parse_plan_export(
        [EXPORT_TEXT.encode()],
        export=export,
        plans=PlansMapping(exports=[export]),
        dimensions=DIMS,
        companies=["USMF", "DEMF"],
        calendar=cal,
        period_format="FY{fyy} {Mon}",
        latest=fiscal_horizon(cal, datetime(2025, 5, 1, tzinfo=UTC)),
    )
    rows = list(reader)
    assert reader.counters.accepted == 4
    assert reader.counters.skipped_version == {"Forecast": 1}
    assert [r.period for r in rows] == [
        date(2025, 7, 1),
        date(2025, 8, 1),
        date(2025, 7, 1),
        date(2025, 7, 1),
    ]

    fo_members = {ACCOUNT: {"601500", "401100"}, "CostCenter": {"CC01"}}
    report = check_alignment(
        references_from_plans(rows, DIMS), fo_members, target="dynamics", partial={"CostCenter"}
    )
    with pytest.raises(AlignmentFailed, match="CostCenter"):
        resolve_alignment(report, policy="fail", unmapped={})
    fo_members["CostCenter"] |= {"CC02", ""}
    report = check_alignment(
        references_from_plans(rows, DIMS), fo_members, target="dynamics", partial={"CostCenter"}
    )
    assert report.ok

    settings = JournalSettings(
        target="ledger_journal", posting_layer="CustomLayer1", offset_account="999999", lines_per_batch=3,
        currency_codes={"DEMF": "EUR"},
    )  # fmt: skip
    currencies = plan_currencies(
        settings, ["USMF", "DEMF"], {"USMF": "USD", "DEMF": "EUR"}
    )  # the ledgers' currencies
    deltas, _ = plan_deltas(rows, [], [date(2025, 7, 1), date(2025, 8, 1)])
    plan = build_entries(
        deltas, connection="acme", run_id="run-1", export=export, settings=settings, currencies=currencies,
        segment_order=["MainAccount", "CostCenter"], fiscal_year_start_month=7,
    )  # fmt: skip
    assert len(deltas) == 3, "the zero row writes nothing"
    assert [j.journal_name for j in plan.journals] == ["BudgetJrn", "BudgetJrn"]
    usmf = plan.journals[1]
    stem = usmf.key.split("-", 1)[1]
    assert [(x.voucher, x.account_display_value, x.debit, x.credit) for x in usmf.lines()] == [
        (f"{stem}-20250701", "601500-CC01", Decimal("1000.00"), Decimal(0)),
        (f"{stem}-20250701", "999999-", Decimal(0), Decimal("1000.00")),
        (f"{stem}-20250801", "601500-CC01", Decimal(0), Decimal("250.00")),
        (f"{stem}-20250801", "999999-", Decimal("250.00"), Decimal(0)),
    ]
    assert [len(b) for b in batch_lines(usmf, settings.lines_per_batch)] == [2, 2]
    items = [
        (x.company, x.account, x.trans_date, x.amount)
        for j in plan.journals
        for x in j.lines()
        if not x.is_offset
    ]
    # The journal reconciles with the export rows (offset lines excluded).
    assert_reconciled(
        reconcile(
            [(r.company, r.account, r.period, r.amount) for r in rows],
            items,
            currency=currencies,
            left_name="export",
            right_name="journal",
        )
    )
    # A line read back from F&O with a different amount is caught.
    tampered = [(c, a, p, x + Decimal("0.01") if a == "401100" else x) for c, a, p, x in items]
    with pytest.raises(
        ReconciliationFailed, match=r"DEMF 401100 2025-07 in EUR: export 75\.25, journal 75\.26"
    ):
        assert_reconciled(
            reconcile(
                [(r.company, r.account, r.period, r.amount) for r in rows],
                tampered,
                currency=currencies,
                left_name="export",
                right_name="journal",
            )
        )
