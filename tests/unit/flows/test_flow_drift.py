"""Metadata fingerprints and their diff (issue 12, item 6): ``flows/drift.py``."""

from __future__ import annotations

from typing import Any

from d365_anaplan.config import ConnectionConfig, parse_connection
from d365_anaplan.flows.drift import MAX_MEMBERS, columns_change, diff, digest, fingerprint, list_entry

ACTUALS = ["Company", "Account", "BusinessUnit", "CostCenter", "Period", "Version", "Amount"]


def _fp(imports: list[str] | None = None, exports: list[str] | None = None,
        members: list[str] | None = None) -> dict[str, object]:  # fmt: skip
    return fingerprint(
        {"Load GL Actuals": imports if imports is not None else ACTUALS},
        {
            "Export Approved Budget": exports
            if exports is not None
            else ["Entity", "Account", "Period", "Amount"]
        },
        {"Cost Centres": members if members is not None else ["CC100", "CC200", "CC900"]},
    )


def test_equal_metadata_has_no_diff_and_one_digest() -> None:
    assert diff(_fp(), _fp()) == []
    assert digest(_fp()) == digest(_fp())
    assert digest(_fp()) != digest(_fp(members=["CC100"]))


def test_import_columns_added_and_removed_are_named() -> None:
    changed = [c for c in ACTUALS if c != "Version"] + ["Currency"]
    assert diff(_fp(), _fp(imports=changed)) == [
        "import 'Load GL Actuals' columns: added 'Currency', removed 'Version'"
    ]


def test_reordered_columns_are_drift() -> None:
    reordered = ["Account", "Company", *ACTUALS[2:]]
    (line,) = diff(_fp(), _fp(imports=reordered))
    assert line.startswith("import 'Load GL Actuals' columns: order changed: ['Company', 'Account'")


def test_export_layout_change_is_named() -> None:
    (line,) = diff(_fp(), _fp(exports=["Entity", "Account", "Jan 25", "Feb 25"]))
    assert (
        line == "export 'Export Approved Budget' layout: added 'Jan 25', 'Feb 25', removed 'Period', 'Amount'"
    )


def test_list_members_added_and_removed_are_counted_and_named() -> None:
    now = ["CC100", "CC200", "CC901", "CC902", "CC903"]
    assert diff(_fp(), _fp(members=now)) == [
        "list 'Cost Centres': 3 members added: CC901, CC902, CC903, 1 removed: CC900"
    ]


def test_member_order_is_no_drift() -> None:
    assert diff(_fp(members=["CC900", "CC100", "CC200"]), _fp()) == []


def test_items_only_on_one_side_are_configuration_not_drift() -> None:
    before = _fp()
    now = fingerprint({"Load GL Actuals": ACTUALS, "Load Accounts": ["Code", "Name"]}, {}, {})
    assert diff(before, now) == []


def test_a_long_list_keeps_its_hash_and_count_only() -> None:
    many = [f"A{i:06d}" for i in range(MAX_MEMBERS + 1)]
    entry = list_entry(many)
    assert "members" not in entry and entry["count"] == MAX_MEMBERS + 1
    before = fingerprint({}, {}, {"Accounts": many})
    now = fingerprint({}, {}, {"Accounts": many[1:]})
    assert diff(before, now) == [
        f"list 'Accounts': members changed ({MAX_MEMBERS + 1} before, {MAX_MEMBERS} now)"
    ]


def test_many_changes_are_shortened() -> None:
    before = fingerprint({}, {}, {"L": []})
    now = fingerprint({}, {}, {"L": [f"M{i:02d}" for i in range(25)]})
    (line,) = diff(before, now)
    assert line.startswith("list 'L': 25 members added: M00, M01") and line.endswith("and 15 more")


def test_columns_change_is_empty_for_equal_columns() -> None:
    assert columns_change(["A", "B"], ["A", "B"]) == ""


# --- the verdict on a connection's lists (steps/drift.py): members the actuals flow loads itself ----------


def _cfg() -> ConnectionConfig:
    return parse_connection({
        "name": "contoso",
        "dynamics": {"environment_url": "https://contoso.operations.dynamics.com", "tenant_id": "t",
                     "client_id": "c", "client_secret": "s", "companies": ["USMF"]},
        "anaplan": {"workspace_id": "w", "model_id": "m",
                    "auth": {"mode": "basic", "username": "u@contoso.com", "password": "p"}},
        "mapping": {"accounts": {"import_action": "Load Accounts", "list_name": "Accounts"},
                    "dimensions": [{"name": "CostCenter", "column": "CostCenter", "list_import": "Load Cost Centres",
                                    "list_name": "Cost Centres"},
                                   {"name": "Department", "column": "Department", "list_name": "Departments"}]},
    })  # fmt: skip


def _lists(centres: list[str], departments: list[str]) -> dict[str, Any]:
    return fingerprint({}, {}, {"Cost Centres": centres, "Departments": departments})


def test_members_the_flow_loads_itself_are_no_drift_but_removed_ones_are() -> None:
    from d365_anaplan.steps.drift import verdict

    cfg = _cfg()
    stored = {"fingerprint": _lists(["CC100"], ["D1"]), "run_id": "run-1"}
    assert verdict(cfg, "actuals", stored, _lists(["CC100", "CC200"], ["D1"])) == []
    assert verdict(cfg, "actuals", stored, _lists(["CC200"], ["D1"])) == [
        "list 'Cost Centres': 1 member added: CC200, 1 removed: CC100"
    ]
    assert verdict(cfg, "actuals", stored, _lists(["CC100"], ["D1", "D2"])) == [
        "list 'Departments': 1 member added: D2"
    ], "a list the flow does not load: an added member is drift"
    assert verdict(cfg, "actuals", None, _lists([], [])) == [], "the first run compares nothing"
