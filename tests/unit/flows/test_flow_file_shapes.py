"""Issue 12, item 3: file shapes of other models. The actuals file follows the import's ``headerNames`` by
name, the version column is optional and constant columns are written; plan exports without a version
column take the export's configured version."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal

from d365_anaplan.config import ActualsMapping, CloseCalendar, DimensionMapping, PlanExport, PlansMapping
from d365_anaplan.flows.actuals import aggregate_actuals
from d365_anaplan.flows.actuals_file import actuals_header, write_actuals_csv
from d365_anaplan.flows.plans import parse_plan_export, round_largest_remainder, to_ledger_sign
from d365_anaplan.flows.records import GLLine, PlanRow

DIMS = [DimensionMapping(name="CostCenter", column="Cost Centre")]


def _write(mapping: ActualsMapping, order: list[str] | None = None) -> str:
    lines = [
        GLLine(company="USMF", account="601500", dimensions={"CostCenter": "CC01"},
               accounting_date=date(2025, 1, 15), amount=Decimal("100.10")),
        GLLine(company="USMF", account="401100", dimensions={"CostCenter": "CC02"},
               accounting_date=date(2025, 2, 3), amount=Decimal("-7.5")),
    ]  # fmt: skip
    buf = io.StringIO()
    rows = aggregate_actuals(lines, dimensions=DIMS).rows()
    write_actuals_csv(rows, buf, mapping=mapping, dimensions=DIMS, order=order)
    return buf.getvalue()


def test_the_file_follows_the_imports_column_order_by_name() -> None:
    order = ["Period", "Amount", "Account", "Version", "Cost Centre", "Entity"]
    assert _write(ActualsMapping(), order) == (
        "Period,Amount,Account,Version,Cost Centre,Entity\n"
        "Feb 25,-7.50,401100,Actual,CC02,USMF\n"
        "Jan 25,100.10,601500,Actual,CC01,USMF\n"
    )


def test_an_import_naming_other_columns_leaves_the_configured_order_for_the_upload_to_refuse() -> None:
    order = ["Period", "Amount", "Account", "Cost Centre", "Entity"]  # no Version: the file still has one
    assert actuals_header(ActualsMapping(), DIMS, order=order) == [
        "Entity", "Account", "Cost Centre", "Period", "Version", "Amount"
    ]  # fmt: skip


def test_no_version_column_and_constant_columns() -> None:
    mapping = ActualsMapping(version_column=None, constant_columns={"Scenario": "Actual", "Source": "D365"})
    assert _write(mapping) == (
        "Entity,Account,Cost Centre,Period,Amount,Scenario,Source\n"
        "USMF,401100,CC02,Feb 25,-7.50,Actual,D365\n"
        "USMF,601500,CC01,Jan 25,100.10,Actual,D365\n"
    )


def test_a_plan_export_without_a_version_column_is_the_exports_version() -> None:
    export = PlanExport(export_action="Budget export", version="Budget")
    text = "Account,Entity,Period,Amount\n601500,USMF,Jan 25,12.50\n401100,USMF,Feb 25,-3\n"
    rows = list(
        parse_plan_export([text.encode()], export=export,
                          plans=PlansMapping(exports=[export], version_column=None, approval_column=None),
                          dimensions=[], companies=["USMF"], calendar=CloseCalendar(), period_format="{Mon} {yy}")
    )  # fmt: skip
    assert [(r.account, r.period, r.version, r.amount) for r in rows] == [
        ("601500", date(2025, 1, 1), "Budget", Decimal("12.50")),
        ("401100", date(2025, 2, 1), "Budget", Decimal("-3")),
    ]


def _wide(text: str, **kw: object) -> list[tuple[str, date, Decimal]]:
    export = PlanExport(export_action="Budget by month", version="Budget")
    plans = PlansMapping(
        exports=[export], version_column=None, approval_column=None, layout="time_in_columns"
    )
    calendar = CloseCalendar(fiscal_year_start_month=7, first_period="2024-07")
    reader = parse_plan_export([text.encode()], export=export, plans=plans, dimensions=[], companies=["USMF"],
                               calendar=calendar, period_format="{Mon} {yy}", latest=date(2026, 6, 1), **kw)  # type: ignore[arg-type]  # fmt: skip
    return [(r.account, r.period, r.amount) for r in reader]


def test_a_time_in_columns_export_gives_one_cell_per_month_and_ignores_totals() -> None:
    text = (
        "Entity,Account,Jul 24,Aug 24,Sep 24,Q1 FY25,FY25\n"
        "USMF,601500,10.00,,-2.5,7.50,7.50\n"
        "USMF,401100,0,3,4,7,7\n"
    )
    assert _wide(text) == [
        ("601500", date(2024, 7, 1), Decimal("10.00")),
        ("601500", date(2024, 9, 1), Decimal("-2.5")),
        ("401100", date(2024, 7, 1), Decimal("0")),
        ("401100", date(2024, 8, 1), Decimal("3")),
        ("401100", date(2024, 9, 1), Decimal("4")),
    ]


def test_a_time_in_columns_export_without_a_month_column_is_refused() -> None:
    import pytest

    from d365_anaplan.errors import BadInputData

    with pytest.raises(BadInputData, match="time_in_columns but no column is a period label"):
        _wide("Entity,Account,Q1 FY25,FY25\nUSMF,601500,1,1\n")


def _spread(amounts: list[str], account: str = "601500") -> list[PlanRow]:
    return [
        PlanRow(line_number=i + 1, company="USMF", account=account, period=date(2025, i + 1, 1), version="Budget",
                amount=Decimal(a))
        for i, a in enumerate(amounts)
    ]  # fmt: skip


def test_spread_values_round_so_the_total_ties_largest_remainder_first() -> None:
    # 100 / 3 spread by Anaplan as doubles: the cells round to cents and still add up to 100.00
    rows = _spread(["33.33333333333333", "33.33333333333334", "33.33333333333333"])
    got = [r.amount for r in round_largest_remainder(rows)]
    assert got == [Decimal("33.33"), Decimal("33.34"), Decimal("33.33")]
    assert sum(got) == Decimal("100.00")


def test_rounding_handles_negatives_ties_and_groups_separately() -> None:
    rows = [
        *_spread(["-10.005", "-10.005", "62.25000000000001"]),
        *_spread(["0.004", "0.004"], account="401100"),
    ]
    got = [(r.account, r.amount) for r in round_largest_remainder(rows)]
    # 601500: exact 42.24000000000001 -> 42.24; floors -10.01, -10.01, 62.25 = 42.23: one cent to the largest
    # remainder (the two -10.005 tie at 0.005, the earlier line wins); 401100: 0.008 -> 0.01 on the first line
    assert got == [("601500", Decimal("-10.00")), ("601500", Decimal("-10.01")), ("601500", Decimal("62.25")),
                   ("401100", Decimal("0.01")), ("401100", Decimal("0"))]  # fmt: skip
    assert sum(a for acc, a in got if acc == "601500") == Decimal("42.24")


def test_natural_sign_flips_credit_types_and_refuses_an_untyped_account() -> None:
    import pytest

    from d365_anaplan.errors import BadInputData

    rows = [*_spread(["100.00"], account="401100"), *_spread(["40.00"], account="601500")]
    types = {"401100": "Revenue", "601500": "Expense", "999000": "ProfitAndLoss"}
    got = [(r.account, r.amount) for r in to_ledger_sign(rows, types, source="export 'B'")]
    assert got == [("401100", Decimal("-100.00")), ("601500", Decimal("40.00"))]
    with pytest.raises(BadInputData, match="account '999000' has main account type 'ProfitAndLoss'"):
        to_ledger_sign(_spread(["1"], account="999000"), types, source="export 'B'")
