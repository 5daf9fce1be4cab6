from __future__ import annotations

import io
import json
from datetime import date
from decimal import Decimal

import pytest

from d365_anaplan.config import ActualsMapping, DimensionMapping, Mappings
from d365_anaplan.errors import AlignmentFailed, BadInputData, ConfigError
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
from d365_anaplan.flows.records import GLLine, PlanRow


def gl(account: str, amount: str, cc: str = "CC01", dept: str = "D1", month: int = 1) -> GLLine:
    return GLLine(
        company="USMF",
        account=account,
        dimensions={"CostCenter": cc, "Department": dept},
        accounting_date=date(2025, month, 10),
        amount=Decimal(amount),
    )


LINES = [
    gl("601500", "100"),
    gl("601500", "50", cc="CC99"),  # unknown cost centre
    gl("777777", "-20"),  # unknown account
    gl("777777", "-5", month=2),
    gl("888888", "1000", cc="CC98"),  # unknown account and cost centre
    gl("110110", "3", dept="DX"),  # unknown department
]
MEMBERS = {
    ACCOUNT: {"601500", "110110", "999999"},
    "CostCenter": {"CC01", "CC02", "CC_UNMAPPED"},
    "Department": {"D1", "DEPT_UNMAPPED"},
}


def report_for(dims: list[DimensionMapping], members: dict[str, set[str]] = MEMBERS, **kw: object):  # type: ignore[no-untyped-def]
    rows = aggregate_actuals(LINES, dimensions=dims).rows()
    return rows, check_alignment(collect_references(rows, dims), members, target="anaplan", **kw)  # type: ignore[arg-type]


def test_report_lists_each_unmatched_value_with_rows_and_amounts(dims: list[DimensionMapping]) -> None:
    _, report = report_for(dims)
    got = [(u.dimension, u.value, u.rows, u.amount) for u in report.unmatched]
    assert got == [
        ("MainAccount", "777777", 2, Decimal("-25")),
        ("MainAccount", "888888", 1, Decimal("1000")),
        ("CostCenter", "CC98", 1, Decimal("1000")),
        ("CostCenter", "CC99", 1, Decimal("50")),
        ("Department", "DX", 1, Decimal("3")),
    ]
    assert not report.ok
    assert report.checked == {"MainAccount": 4, "CostCenter": 3, "Department": 2}
    assert [(u.dimension, u.value) for u in report.top(2)] == [
        ("MainAccount", "888888"),
        ("CostCenter", "CC98"),
    ]


def test_fail_policy_raises_readable_summary(dims: list[DimensionMapping]) -> None:
    _, report = report_for(dims)
    with pytest.raises(AlignmentFailed) as err:
        resolve_alignment(report, policy="fail", unmapped={}, top=2)
    msg = str(err.value)
    assert "5 referenced value(s) do not exist" in msg
    assert "MainAccount: 2, CostCenter: 2, Department: 1" in msg
    assert "MainAccount '888888': 1 row(s), amount 1000" in msg
    assert "... and 3 more" in msg
    assert "777777" not in msg  # only the top 2 are listed


def test_json_report_is_small_and_serialisable(dims: list[DimensionMapping]) -> None:
    _, report = report_for(dims, partial={"Department"})
    data = json.loads(json.dumps(report.to_json(max_values=3)))
    assert data["unmatched_count"] == 5
    assert data["unmatched_rows"] == 6
    assert len(data["unmatched"]) == 3
    assert data["truncated"] == 2
    assert data["unmatched"][0] == {
        "dimension": "MainAccount",
        "value": "888888",
        "rows": 1,
        "amount": "1000",
    }
    assert len(data["caveats"]) == 1
    assert data["caveats"][0].startswith("Department: member set read from FinancialDimensionValues")
    assert "caveat for Department" in report.to_text()


def test_map_policy_remaps_and_keeps_totals(dims: list[DimensionMapping]) -> None:
    rows, report = report_for(dims)
    mappings = Mappings(
        dimensions=dims, actuals=ActualsMapping(unmapped_policy="map", unmapped_account="999999")
    )
    remap = resolve_actuals_alignment(report, mappings, MEMBERS)
    assert remap.to_json() == {
        "MainAccount": {"777777": "999999", "888888": "999999"},
        "CostCenter": {"CC98": "CC_UNMAPPED", "CC99": "CC_UNMAPPED"},
        "Department": {"DX": "DEPT_UNMAPPED"},
    }
    buf = io.StringIO()
    totals = write_actuals_csv(rows, buf, mapping=mappings.actuals, dimensions=dims, remap=remap)
    hand_total = sum(Decimal(line.amount) for line in LINES)
    assert totals.total == hand_total == Decimal("1128")
    assert totals.line_count == len(LINES)
    lines = buf.getvalue().splitlines()
    assert lines[1:] == [
        "USMF,110110,CC01,DEPT_UNMAPPED,Jan 25,Actual,3.00",
        "USMF,601500,CC01,D1,Jan 25,Actual,100.00",
        "USMF,601500,CC_UNMAPPED,D1,Jan 25,Actual,50.00",
        "USMF,999999,CC01,D1,Jan 25,Actual,-20.00",
        "USMF,999999,CC01,D1,Feb 25,Actual,-5.00",
        "USMF,999999,CC_UNMAPPED,D1,Jan 25,Actual,1000.00",
    ]
    # After the remap every value is a member.
    remapped = [remap.apply_row(r, dims) for r in rows]
    assert check_alignment(collect_references(remapped, dims), MEMBERS, target="anaplan").ok


def test_map_policy_merges_rows_that_collide_after_remap(dims: list[DimensionMapping]) -> None:
    lines = [gl("777777", "1.10"), gl("888888", "2.20"), gl("999999", "3.30")]
    rows = aggregate_actuals(lines, dimensions=dims).rows()
    report = check_alignment(collect_references(rows, dims), MEMBERS, target="anaplan")
    remap = resolve_alignment(report, policy="map", unmapped={ACCOUNT: "999999"}, members=MEMBERS)
    buf = io.StringIO()
    totals = write_actuals_csv(rows, buf, mapping=ActualsMapping(), dimensions=dims, remap=remap)
    assert buf.getvalue().splitlines()[1:] == ["USMF,999999,CC01,D1,Jan 25,Actual,6.60"]
    assert totals.row_count == 1
    assert totals.line_count == 3


def test_map_policy_without_configured_member_is_config_error(dims: list[DimensionMapping]) -> None:
    _, report = report_for(dims)
    mappings = Mappings(
        dimensions=[
            DimensionMapping(name="CostCenter", column="CC"),
            DimensionMapping(name="Department", column="D"),
        ],
        actuals=ActualsMapping(unmapped_policy="map", unmapped_account="999999"),
    )
    with pytest.raises(ConfigError) as err:
        resolve_actuals_alignment(report, mappings, MEMBERS)
    problems = err.value.problems
    assert any(p.startswith("mapping.dimensions[0].unmapped_member (CostCenter): not set") for p in problems)
    assert any(p.startswith("mapping.dimensions[1].unmapped_member (Department): not set") for p in problems)


def test_map_policy_with_member_missing_on_target(dims: list[DimensionMapping]) -> None:
    _, report = report_for(dims)
    mappings = Mappings(
        dimensions=dims, actuals=ActualsMapping(unmapped_policy="map", unmapped_account="000000")
    )
    with pytest.raises(ConfigError, match=r"mapping.actuals.unmapped_account: '000000' is not a member"):
        resolve_actuals_alignment(report, mappings, MEMBERS)


def test_aligned_report(dims: list[DimensionMapping]) -> None:
    rows = aggregate_actuals([gl("601500", "1")], dimensions=dims).rows()
    report = check_alignment(collect_references(rows, dims), MEMBERS, target="anaplan")
    assert report.ok
    assert not resolve_alignment(report, policy="fail", unmapped={})
    assert "every referenced value exists" in report.to_text()


def test_missing_member_list_is_refused(dims: list[DimensionMapping]) -> None:
    rows = aggregate_actuals([gl("601500", "1")], dimensions=dims).rows()
    with pytest.raises(BadInputData, match=r"no member list for dimension.*Department"):
        check_alignment(
            collect_references(rows, dims), {ACCOUNT: {"601500"}, "CostCenter": {"CC01"}}, target="anaplan"
        )


def test_plans_direction_case_insensitive_and_blank() -> None:
    rows = [
        PlanRow(
            line_number=2,
            company="USMF",
            account="601500",
            dimensions={"CostCenter": "cc01"},
            period=date(2025, 1, 1),
            version="Budget",
            amount=Decimal("5"),
        ),
        PlanRow(
            line_number=3,
            company="USMF",
            account="601500",
            dimensions={"CostCenter": ""},
            period=date(2025, 1, 1),
            version="Budget",
            amount=Decimal("7"),
        ),
    ]
    refs = references_from_plans(rows)
    members = {ACCOUNT: {"601500"}, "CostCenter": {"CC01"}}
    strict = check_alignment(refs, members, target="dynamics")
    assert [(u.value, u.amount) for u in strict.unmatched] == [("", Decimal("7")), ("cc01", Decimal("5"))]
    assert "CostCenter (blank): 1 row(s), amount 7" in strict.to_text()
    loose = check_alignment(refs, members, target="dynamics", casefold=True, partial={"CostCenter"})
    assert [u.value for u in loose.unmatched] == [""]
    assert loose.partial == ["CostCenter"]
