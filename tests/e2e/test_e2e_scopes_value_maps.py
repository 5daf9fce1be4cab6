"""Issue 12, items 1, 2 and 4: a customer whose F&O and Anaplan codes differ, on the local engine.

F&O (sandbox seeded as another customer): companies ``1000``/``2000``, a four-digit chart with its own
account types, cost centres ``CC100``..``CC310``. Anaplan: a P&L planning model whose entities are
``US-OPS``/``DE-OPS`` and whose cost centre list (kept by the model builder, not loaded by the connector)
merges the F&O cost centres into three members. The connection scopes actuals to revenue and expense
accounts 4000..7999, maps companies inline and cost centres through a CSV in the config bucket.

Expected values come from the sandboxes' own data (the F&O GL generator, the Anaplan Plan module) and the
maps as the test states them, never from the connector's staged files.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    PERIODS,
    anaplan_actuals,
    assert_failed_cleanly,
    clear_actuals,
    clear_journals,
    expected_actuals,
    expected_plan_cells,
    fo_plan_cells,
    journal_counts,
    manual,
)

from devkit.commands.check import FAIL, Report, check_anaplan, check_dynamics, check_mappings
from devkit.engine import LocalEngine
from devkit.sandbox.anaplan import harness as anaplan_harness
from devkit.sandbox.dynamics import cli as dynamics_cli
from devkit.sandbox.dynamics import seed as fo_seed
from devkit.sandbox.dynamics.app import SandboxConfig
from devkit.sandbox.dynamics.customers import NORTHWIND, seeded
from devkit.stack import BLANK, Stack, anaplan_app, plan_accounts

pytestmark = pytest.mark.integration

ENTITY = {"1000": "US-OPS", "2000": "DE-OPS"}
COST_CENTRE = {"CC100": "CC-ADMIN", "CC110": "CC-ADMIN", "CC200": "CC-SALES", "CC210": "CC-SALES",
               "CC300": "CC-OPS", "CC310": "CC-OPS"}  # fmt: skip
CSV_KEY = "connections/maps/cost_centres.csv"  # under the prefix only config writers may change
BUDGET = "Export Approved Budget"


def _in_scope(account: fo_seed.MainAccountSeed) -> bool:
    """The scope the connection states: revenue and expense accounts 4000..7999."""
    return account.account_type in ("Revenue", "Expense") and 4000 <= int(account.account) <= 7999


def _csv(mapping: dict[str, str]) -> bytes:
    return ("fo,anaplan\n" + "".join(f"{k},{v}\n" for k, v in mapping.items())).encode("utf-8")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with seeded(NORTHWIND):
        fo = dynamics_cli.start(SandboxConfig(gl_lines=400, months=3, start=date(2025, 1, 1),
                                              default_company=NORTHWIND.companies[0]))  # fmt: skip
        try:
            planned = [a for a in fo_seed.MAIN_ACCOUNTS if a.account in plan_accounts() and _in_scope(a)]
            lists = {
                # a P&L model holding the planned accounts; the account list load adds the others in scope
                "accounts": [(a.account, a.name) for a in planned],
                "entities": [(ENTITY[c], NORTHWIND.company_names[c]) for c in NORTHWIND.companies],
                "cost_centres": [
                    *((m, m.title()) for m in sorted(set(COST_CENTRE.values()))),
                    (BLANK, "None"),
                ],
                "plan_accounts": [a.account for a in planned],
            }
            ana = anaplan_harness.start(app=anaplan_app(lists=lists, task_start_delay_s=0.01,
                                                        task_run_delay_s=0.02))  # fmt: skip
        except BaseException:
            fo.stop()
            raise
        st = Stack(fo, ana)
        try:
            yield st
        finally:
            st.stop()


def _connection(stack: Stack) -> dict[str, Any]:
    cfg = copy.deepcopy(stack.connection())
    m = cfg["mapping"]
    for d in m["dimensions"]:
        if d["name"] == "CostCenter":
            d.pop("list_import")  # the model builder keeps this list
    m["scopes"] = {"actuals": {"types": ["Revenue", "Expense"], "include": ["4000..7999"]}}
    m["value_maps"] = {"company": {"values": dict(ENTITY), "unmapped": "fail"},
                       "CostCenter": {"csv": CSV_KEY}}  # fmt: skip
    return cfg


@pytest.fixture
def engine(stack: Stack) -> Iterator[LocalEngine]:
    with LocalEngine(wait_scale=0.0) as eng:
        yield eng


def _install(engine: LocalEngine, cfg: dict[str, Any], cost_centres: dict[str, str]) -> None:
    import boto3

    from d365_anaplan.runtime import clear_caches

    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket=engine.environment["CONFIG_BUCKET"], Key=CSV_KEY, Body=_csv(cost_centres)
    )
    engine.install_connection(cfg)
    clear_caches()


def _check(cfg: dict[str, Any], tmp_path: Path, cost_centres: dict[str, str]) -> dict[str, Any]:
    """check, as an operator runs it on the YAML file (the CSV map beside it): name -> row."""
    from d365_anaplan.config import parse_connection
    from d365_anaplan.steps.mapping import MapSource

    (tmp_path / CSV_KEY).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / CSV_KEY).write_bytes(_csv(cost_centres))
    conn = parse_connection(copy.deepcopy(cfg))
    maps = MapSource(base_dir=tmp_path)
    report = Report()
    check_anaplan(conn, report, maps)
    check_dynamics(conn, report)
    check_mappings(conn, report, maps)
    return {ch.name: ch for ch in report.checks}


def _expected_actuals(stack: Stack) -> dict[tuple[str, ...], Decimal]:
    """Posted GL of the window in scope, per Anaplan cell: companies and cost centres through the maps the
    test states (merged cost centres summed); from the F&O generator's own lines (``expected_actuals``)."""
    sums: dict[tuple[str, ...], Decimal] = defaultdict(Decimal)
    for (company, account, bu, cc, dep, period, version), amount in expected_actuals(stack).items():
        seeded_account = fo_seed.main_account(account)
        if seeded_account is not None and _in_scope(seeded_account):
            sums[(ENTITY[company], account, bu, COST_CENTRE.get(cc, cc), dep, period, version)] += amount
    return {k: v for k, v in sums.items() if v != 0}


def test_check_passes_and_actuals_load_in_scope_merged_to_the_cent(
    engine: LocalEngine, stack: Stack, tmp_path: Path
) -> None:
    cfg = _connection(stack)
    rows = _check(cfg, tmp_path, COST_CENTRE)
    assert rows["value maps"].status == "PASS", rows["value maps"]
    assert rows["account scope (actuals)"].status == "PASS", rows["account scope (actuals)"]
    assert rows["value-map coverage (F&O codes)"].status == "PASS", rows["value-map coverage (F&O codes)"]
    assert not [(n, r.detail) for n, r in rows.items() if r.status == FAIL]

    clear_actuals(stack)
    _install(engine, cfg, COST_CENTRE)
    result = engine.run("ActualsFlow", manual(), timeout=300)
    assert result.status == "SUCCEEDED", (result.error, result.task_failures())

    expected = _expected_actuals(stack)
    held = anaplan_actuals(stack)
    assert expected and len({k[3] for k in expected}) > 1, "the window must hold merged cost centres"
    assert held == expected
    members = stack.anaplan.app.seed.lists
    accounts = set(members["Accounts"].members)
    assert accounts == {a.account for a in fo_seed.MAIN_ACCOUNTS if _in_scope(a)}, (
        "the list load follows the scope"
    )


def test_plans_land_in_the_fo_companies_the_entities_reverse_to(engine: LocalEngine, stack: Stack) -> None:
    clear_journals(stack)
    _install(engine, _connection(stack), COST_CENTRE)
    result = engine.run("PlansFlow", manual(), timeout=300)
    assert result.status == "SUCCEEDED", (result.error, result.task_failures())
    company_of = {v: k for k, v in ENTITY.items()}
    expected = {(ver, company_of[e], a, p): v for (ver, e, a, p), v in expected_plan_cells(stack).items()}
    assert expected and {k[1] for k in expected} == set(NORTHWIND.companies)
    assert fo_plan_cells(stack, PERIODS) == expected


def test_plans_refused_where_the_reverse_is_ambiguous_and_check_says_so_first(
    engine: LocalEngine, stack: Stack, tmp_path: Path
) -> None:
    cfg = _connection(stack)
    shared = [a for a in plan_accounts() if a.startswith("6")][:1] + [
        a.account for a in fo_seed.MAIN_ACCOUNTS if a.account_type == "Expense" and a.account.startswith("6")
    ][-1:]
    cfg["mapping"]["value_maps"]["account"] = {"values": dict.fromkeys(shared, "PERSONNEL")}
    row = _check(cfg, tmp_path, COST_CENTRE)["value maps reversed for plans"]
    assert row.status == FAIL
    assert (
        f"mapping.value_maps.account: the reverse of Anaplan member 'PERSONNEL' is ambiguous: F&O codes {sorted(shared)}"
        in row.detail
    )
    assert "add mapping.value_maps.account.reverse" in row.detail

    clear_journals(stack)
    _install(engine, cfg, COST_CENTRE)
    result = engine.run("PlansFlow", manual(), timeout=300)
    assert_failed_cleanly(engine, stack, result, "BadInputData", row.detail, row.remedy)
    assert "RunExports" not in result.states_entered(), "refused before any export ran"
    assert journal_counts(stack) == (0, 0)

    cfg["mapping"]["value_maps"]["account"]["reverse"] = {"PERSONNEL": shared[0]}
    assert _check(cfg, tmp_path, COST_CENTRE)["value maps reversed for plans"].status == "PASS"


def test_a_cost_centre_neither_mapped_nor_in_the_list_fails_check_and_the_run_alike(
    engine: LocalEngine, stack: Stack, tmp_path: Path
) -> None:
    partial = {k: v for k, v in COST_CENTRE.items() if k != "CC310"}  # CC310 passes through unmapped
    cfg = _connection(stack)
    row = _check(cfg, tmp_path, partial)["value-map coverage (F&O codes)"]
    assert row.status == FAIL
    assert "F&O value(s) ['CC310'] are not in the map (unmapped: passthrough) and not members of the Anaplan " \
           "list 'Cost Centres'" in row.detail  # fmt: skip

    clear_actuals(stack)
    _install(engine, cfg, partial)
    result = engine.run("ActualsFlow", manual(), timeout=300)
    problem = row.detail.removeprefix("BadInputData: ")
    assert_failed_cleanly(engine, stack, result, "BadInputData", problem, row.remedy)
    assert "StartActualsImport" not in result.states_entered()
    assert anaplan_actuals(stack) == {}


def test_a_plan_row_outside_the_plans_scope_is_refused_with_one_line(
    engine: LocalEngine, stack: Stack
) -> None:
    cfg = _connection(stack)
    cfg["mapping"]["scopes"]["plans"] = {"types": ["Expense"]}
    clear_journals(stack)
    _install(engine, cfg, COST_CENTRE)
    result = engine.run("PlansFlow", manual(), timeout=300)
    text = assert_failed_cleanly(engine, stack, result, "BadInputData", "is outside mapping.scopes.plans",
                                 "(its type Revenue is not one of types ['Expense'])")  # fmt: skip
    assert "nothing was written to F&O" in text and "\n" not in text
    assert journal_counts(stack) == (0, 0)


def test_actuals_in_natural_sign_revenue_positive_to_the_cent(engine: LocalEngine, stack: Stack) -> None:
    cfg = _connection(stack)
    cfg["mapping"]["actuals"]["sign"] = "natural"
    clear_actuals(stack)
    _install(engine, cfg, COST_CENTRE)
    result = engine.run("ActualsFlow", manual(), timeout=300)
    assert result.status == "SUCCEEDED", (result.error, result.task_failures())
    revenue = {a.account for a in fo_seed.MAIN_ACCOUNTS if a.account_type == "Revenue"}
    expected = {k: -v if k[1] in revenue else v for k, v in _expected_actuals(stack).items()}
    assert any(k[1] in revenue for k in expected) and anaplan_actuals(stack) == expected
