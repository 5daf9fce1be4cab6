"""``map propose``'s decisions from metadata (devkit/mapping/propose.py): pure, on hand-built metadata."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest
import yaml

from d365_anaplan.config import parse_connection
from devkit.mapping.metadata import AnaplanMeta, ExportMeta, FoMeta, ImportMeta
from devkit.mapping.propose import (
    account_runs,
    period_format_of,
    propose,
    render,
    role_of,
    similarity,
)

ALL = {"scopes", "value_maps", "actuals_sign"}

PARTIAL: dict[str, Any] = {
    "name": "acme",
    "dynamics": {
        "environment_url": "https://acme.operations.dynamics.com",
        "tenant_id": "t",
        "client_id": "c",
        "client_secret": "s",
        "companies": ["USMF", "DEMF"],
        "journal": {"target": "budget_register"},
    },
    "anaplan": {
        "workspace_id": "w",
        "model_id": "m",
        "auth": {"mode": "basic", "username": "u", "password": "p"},
    },
}


def _fo() -> FoMeta:
    accounts = {
        "110100": ("Bank", "Asset"),
        "200100": ("Payables", "Liability"),
        "401100": ("Sales", "Revenue"),
        "401200": ("Services", "Revenue"),
        "601100": ("Salaries", "Expense"),
        "606100": ("Rent", "Expense"),
        "801100": ("Interest", "Expense"),
    }
    return FoMeta(
        companies=["USMF", "DEMF"],
        legal_entities={"USMF": "Contoso Manufacturing USA", "DEMF": "Contoso Manufacturing Germany"},
        ledger_segments=["MainAccount", "CostCenter", "Department"],
        budget_segments=["MainAccount", "CostCenter"],
        dimension_names={"CostCenter": "Cost center", "Department": "Department"},
        dimension_values={
            "CostCenter": [("OU_1", "Finance"), ("OU_2", "Sales"), ("OU_3", "Marketing")],
            "Department": [("022", "Accounting"), ("023", "Operations")],
        },
        accounts=accounts,
        budget_models={"FY2025": "Budget 2025", "FY2026": "Budget 2026", "FC2025": "Rolling forecast 2025"},
        budget_codes={
            "Original": ("OriginalBudget", "Original budget"),
            "Revision": ("Amendment", "Budget revision"),
            "FcOrig": ("OriginalBudget", "Forecast, first load"),
            "FcRev": ("Amendment", "Forecast revision"),
        },
    )


def _ana(**changes: Any) -> AnaplanMeta:
    meta = AnaplanMeta(
        imports=[
            ImportMeta("Load Accounts", "HIERARCHY_DATA", ["Code", "Name"]),
            ImportMeta("Load Cost Centres", "HIERARCHY_DATA", ["Code", "Name"]),
            ImportMeta("Load Departments", "HIERARCHY_DATA", ["Code", "Name"]),
            ImportMeta(
                "Load GL Actuals",
                "MODULE_DATA",
                ["Time", "Value", "Legal entity", "Account", "Cost Centre", "Department"],
            ),
        ],
        exports=[
            ExportMeta(
                "Export Approved Budget",
                ["Entity", "Account", "Jan 25", "Feb 25", "FY25"],
                [
                    ["US-OPS", "401100", "100.00", "120.50", "220.50"],
                    ["US-OPS", "601100", "80.00", "", "80.00"],
                ],
            ),
        ],
        lists={
            "Accounts": [
                ("401100", "Sales"),
                ("401200", "Services"),
                ("601100", "Salaries"),
                ("606100", "Rent"),
                ("801100", "Interest"),
            ],
            "Cost Centres": [
                ("CC-FIN", "Finance"),
                ("CC-COM", "Sales and marketing"),
                ("NONE", "No cost centre"),
            ],
            "Departments": [("022", "Accounting"), ("023", "Operations"), ("NONE", "No department")],
            "Legal Entities": [("US-OPS", "Contoso USA"), ("DE-OPS", "Contoso Germany")],
            "Time": [("Jan 25", "Jan 25"), ("Feb 25", "Feb 25")],
            "Versions": [("Actual", "Actual"), ("Budget", "Budget")],
        },
        fiscal_year_start=date(2024, 7, 1),
    )
    for k, v in changes.items():
        setattr(meta, k, v)
    return meta


def test_names_and_roles() -> None:
    assert similarity("Cost Centres", "CostCenter") == 1.0
    assert similarity("Load Cost Centres", "Load CostCenter") == 1.0
    assert similarity("Contoso Manufacturing USA", "Contoso USA") > similarity(
        "Contoso Manufacturing USA", "Contoso Germany"
    )
    assert role_of("Legal entity")[0] == "company"
    assert role_of("Value")[0] == "amount"
    assert role_of("Time")[0] == "period"
    assert role_of("Scenario")[0] == "version"
    assert role_of("Cost Centre")[0] is None


def test_period_formats_are_read_by_the_runs_parser() -> None:
    assert period_format_of(["Jan 25", "Dec 26"]) == "{Mon} {yy}"
    assert period_format_of(["2025-01", "2025-12"]) == "{yyyy}-{mm}"
    assert period_format_of(["Jan 2025"]) == "{Mon} {yyyy}"
    assert period_format_of(["FY25"]) is None
    assert period_format_of(["Jan 25", "2025-01"]) is None  # one format must read every label


def test_account_runs() -> None:
    chart = ["110100", "401100", "401200", "601100", "801100"]
    assert account_runs(chart, {"401100", "401200", "601100"}) == [("401100", "601100")]
    assert account_runs(chart, {"110100", "601100"}) == [("110100", "110100"), ("601100", "601100")]


def _proposal(ana: AnaplanMeta | None = None, features: set[str] | None = None) -> Any:
    got = propose(
        copy.deepcopy(PARTIAL), ana or _ana(), _fo(), features=ALL if features is None else features
    )
    parse_connection(copy.deepcopy(got.config))  # always a valid configuration
    return got


def test_a_customer_model_is_read_into_a_complete_mapping() -> None:
    got = _proposal()
    m = got.config["mapping"]
    a = m["actuals"]
    assert (a["company_column"], a["period_column"], a["amount_column"]) == ("Legal entity", "Time", "Value")
    assert a["version_column"] is None and got.choice("mapping.actuals.version_column").confidence == "high"
    assert [(d["name"], d["column"]) for d in m["dimensions"]] == [
        ("CostCenter", "Cost Centre"),
        ("Department", "Department"),
    ]
    cc = next(d for d in m["dimensions"] if d["name"] == "CostCenter")
    assert cc["blank_member"] == "NONE" and "list_import" not in cc  # a value-mapped list is not loaded
    assert m["value_maps"]["company"]["values"] == {"USMF": "US-OPS", "DEMF": "DE-OPS"}
    assert m["value_maps"]["CostCenter"]["values"] == {"OU_1": "CC-FIN", "OU_2": "CC-COM", "OU_3": "CC-COM"}
    assert "merged" in got.choice("mapping.value_maps.CostCenter").reason
    assert "Department" not in m.get("value_maps", {})  # F&O's codes are the members
    assert got.config["close_calendar"]["fiscal_year_start_month"] == 7
    p = m["plans"]
    assert p["layout"] == "time_in_columns" and p["version_column"] is None and p["approval_column"] is None
    assert p["sign"] == "natural" and a["sign"] == "natural"
    assert p["exports"] == [{"export_action": "Export Approved Budget", "version": "Budget", "budget_model": "FY2025",
                             "budget_code": "Original", "revision_budget_code": "Revision"}]  # fmt: skip
    assert m["scopes"] == {"actuals": {"types": ["Expense", "Revenue"]}}


def test_an_account_list_that_is_part_of_a_type_becomes_a_range() -> None:
    ana = _ana()
    ana.lists["Accounts"] = [(c, c) for c in ("401100", "401200", "601100", "606100")]  # no 801100
    got = _proposal(ana)
    assert got.config["mapping"]["scopes"] == {"actuals": {"include": ["401100..606100"]}}


def test_without_the_settings_the_gaps_are_listed_not_guessed() -> None:
    got = _proposal(features=set())
    m = got.config["mapping"]
    assert "scopes" not in m and "value_maps" not in m and "sign" not in m["actuals"]
    text = " ".join(got.undecided)
    assert "no mapping.scopes" in text and "no mapping.value_maps" in text


def test_a_column_without_a_role_is_left_for_a_person() -> None:
    ana = _ana()
    ana.imports[-1] = ImportMeta(
        "Load GL Actuals", "MODULE_DATA", ["Entity", "Account", "Period", "Amount", "Channel"]
    )
    got = _proposal(ana)
    assert any("'Channel'" in u and "constant_columns" in u for u in got.undecided), got.undecided


def test_what_the_partial_configuration_says_is_kept() -> None:
    partial = copy.deepcopy(PARTIAL)
    partial["mapping"] = {"actuals": {"version_column": "Scenario"}}
    got = propose(partial, _ana(), _fo(), features=ALL)
    assert got.config["mapping"]["actuals"]["version_column"] == "Scenario"
    assert got.choice("mapping.actuals.version_column").reason.startswith("set in the partial")


@pytest.mark.parametrize("revenue", ["-100.00", "100.00"])
def test_sign_follows_the_sample_rows_of_revenue_accounts(revenue: str) -> None:
    ana = _ana()
    ana.exports[0] = ExportMeta("Export Approved Budget", ["Entity", "Account", "Jan 25", "Feb 25"],
                                [["US-OPS", "401100", revenue, revenue]])  # fmt: skip
    got = _proposal(ana)
    assert got.config["mapping"]["plans"].get("sign", "ledger") == (
        "natural" if revenue[0] != "-" else "ledger"
    )


def test_render_writes_a_reason_per_choice_above_valid_yaml() -> None:
    got = _proposal()
    text = render(got)
    comments = [line for line in text.splitlines() if line.startswith("#   mapping.")]
    assert len(comments) >= len([c for c in got.choices if c.setting.startswith("mapping.")])
    assert all(any(f"[{c}]" in line for c in ("high", "medium", "low")) for line in comments)
    assert yaml.safe_load(text) == got.config


@pytest.mark.parametrize(
    ("months", "expected"),
    [
        (["Jul 25", "Aug 25"], {"budget_model": "FY2026"}),  # July fiscal year: FY2026 starts in July 2025
        (["Jun 25", "Jul 25"], {"budget_model": "FY2026", "budget_models": {2025: "FY2025", 2026: "FY2026"}}),
    ],
)
def test_the_budget_model_follows_the_plans_fiscal_years(months: list[str], expected: dict[str, Any]) -> None:
    ana = _ana()
    ana.exports[0] = ExportMeta("Export Approved Budget", ["Entity", "Account", *months],
                                [["US-OPS", "601100", "1.00", "2.00"]])  # fmt: skip
    export = _proposal(ana).config["mapping"]["plans"]["exports"][0]
    assert {k: export[k] for k in expected} == expected
