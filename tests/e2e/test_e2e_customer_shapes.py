"""Issue 12, "Done when": four customer shapes end to end on the local engine, both sandboxes seeded that way
(``devkit.sandbox.customers``). For each, ``map propose`` yields a mapping that, after at most two hand edits
(counted), passes ``check`` and completes both flows to the cent; and one planted metadata defect makes
``check`` fail with the message the run fails with.

Expected figures come from the seeds: actuals from the F&O sandbox's GL generator through what the shape's
model means (its account list, entity codes, merged cost centres, sign), plans from the Anaplan sandbox's Plan
module back through the same meaning. Nothing is taken from the connector's files or transforms.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from e2e_support import PERIODS, assert_failed_cleanly, clear_journals, label, manual, window_labels
from e2e_support import expected_actuals as fo_actuals

from d365_anaplan.runtime import clear_caches
from devkit.commands.check import FAIL, Report, check_anaplan, check_dynamics, check_mappings
from devkit.engine import LocalEngine
from devkit.sandbox.customers import SHAPES, Shape, partial_connection, running
from devkit.stack import Stack

pytestmark = pytest.mark.integration

Edit = Callable[[dict[str, Any]], None]
Cell = frozenset[tuple[str, str]]


@pytest.fixture(params=SHAPES)
def customer(request: pytest.FixtureRequest) -> Iterator[tuple[Stack, Shape]]:
    with running(request.param) as found:
        yield found


@pytest.fixture
def engine() -> Iterator[LocalEngine]:
    with LocalEngine(wait_scale=0.0) as eng:
        yield eng
    clear_caches()


def _propose(stack: Stack) -> Any:
    from devkit.commands.map import propose_text

    _text, proposal = propose_text(partial_connection(stack))
    return proposal


def _check(cfg: dict[str, Any], tmp: Path) -> dict[str, tuple[str, str, str]]:
    """Every row of ``check`` (both systems and the mapping checks): name -> (status, detail, remedy)."""
    from d365_anaplan.config import parse_connection
    from d365_anaplan.steps.mapping import MapSource

    parsed = parse_connection(copy.deepcopy(cfg))
    report = Report()
    maps = MapSource(base_dir=tmp)
    check_anaplan(parsed, report, maps)
    check_dynamics(parsed, report)
    check_mappings(parsed, report, maps)
    return {ch.name: (ch.status, ch.detail, ch.remedy) for ch in report.checks}


def _failed(rows: dict[str, tuple[str, str, str]]) -> dict[str, tuple[str, str, str]]:
    return {n: r for n, r in rows.items() if r[0] == FAIL}


def _install(engine: LocalEngine, cfg: dict[str, Any]) -> None:
    engine.install_connection(cfg)
    clear_caches()  # the connection is cached per container


# --- what each shape's model means -----------------------------------------------------------------------


def _cells(stack: Stack, module: str) -> dict[Cell, dict[str, object]]:
    mod = stack.anaplan.app.seed.modules[module]
    columns = [c for c, _l in mod.dimensions]
    return {
        frozenset(zip(columns, key, strict=True)): values
        for key, values in stack.anaplan.app.module_cells(module).items()
    }


def expected_actuals(stack: Stack, shape: Shape) -> dict[Cell, Decimal]:
    """Posted GL of the window (``e2e_support.expected_actuals``: per F&O company, account, dimension values
    and month) through the model's meaning: accounts of its list, its entity codes, its cost-centre members,
    its sign; summed per Anaplan cell."""
    sums: dict[Cell, Decimal] = defaultdict(Decimal)
    for (company, account, bu, cc, dept, period, version), amount in fo_actuals(stack).items():
        if account not in shape.accounts:
            continue
        named = {"Entity": shape.company.get(company, company), "Account": account, "BusinessUnit": bu,
                 "CostCenter": shape.cost_centre.get(cc, cc), "Department": dept, "Period": period}  # fmt: skip
        if shape.version_column:
            named["Version"] = version
        sums[frozenset(named.items())] += amount * shape.sign(account)
    return {k: v for k, v in sums.items() if v != 0}


def anaplan_actuals(stack: Stack) -> dict[Cell, Decimal]:
    labels = window_labels()
    out = {}
    for key, values in _cells(stack, "GL Actuals").items():
        amount = values.get("Amount")
        assert isinstance(amount, Decimal)
        if dict(key)["Period"] in labels and amount != 0:
            out[key] = amount
    return out


PlanKey = tuple[str, str, str, str, str]  # version, company, account, cost centre, yyyy-mm


def expected_plans(stack: Stack, shape: Shape) -> dict[PlanKey, Decimal]:
    """The approved cells of the Plan module in the window, back in F&O terms and ledger sign."""
    labels = {label(int(p[:4]), int(p[5:])): p for p in PERIODS}
    companies = {entity: company for company, entity in shape.company.items()}
    out: dict[PlanKey, Decimal] = defaultdict(Decimal)
    for key, values in _cells(stack, "Plan").items():
        named = dict(key)
        amount = values["Amount"]
        assert isinstance(amount, Decimal)
        if named["Period"] not in labels or values.get("Approval") != "Approved" or amount == 0:
            continue
        member = named.get("CostCenter", "")
        k = (named["Version"], companies.get(named["Entity"], named["Entity"]), named["Account"],
             shape.cost_centre_reverse.get(member, member), labels[named["Period"]])  # fmt: skip
        out[k] += amount * shape.sign(named["Account"])
    return {k: v for k, v in out.items() if v != 0}


def fo_plans(stack: Stack) -> dict[PlanKey, Decimal]:
    """F&O's budget register per version (by budget model), company, account, cost centre and month."""
    from devkit.sandbox.dynamics import seed as fo_seed
    from devkit.sandbox.dynamics.budget import stored_amount

    segments = ["MainAccount", *reversed(fo_seed.DIMENSIONS)]  # the sandbox's budget format
    at = segments.index("CostCenter")
    fo = stack.dynamics.app
    sums: dict[PlanKey, Decimal] = defaultdict(Decimal)
    with fo.lock:
        for key, header in fo.budget_headers.items():
            version = {"FY": "Budget", "FC": "Forecast"}[str(header["BudgetModelId"])[:2]]
            for line in fo.budget_lines.get(key, []):
                parts = str(line["DimensionDisplayValue"]).split("-")
                cc = parts[at] if len(parts) > at else ""
                sums[(version, key[0], parts[0], cc, str(line["EntryDate"])[:7])] += stored_amount(line)
    return {k: v for k, v in sums.items() if v != 0}


# --- the hand edits of each shape (at most two) ------------------------------------------------------------


def _reverse_merged_cost_centres(cfg: dict[str, Any]) -> None:
    """Which F&O cost centre plans write to where the model merged several: a planner's decision."""
    from devkit.sandbox.customers import MERGED_CENTRES

    vm = cfg["mapping"]["value_maps"]["CostCenter"]
    vm["reverse"] = {member: rev for member, (_n, fos, rev) in MERGED_CENTRES.items() if len(fos) > 1}


EDITS: dict[str, list[Edit]] = {
    "pl_only": [],
    "natural_july": [],
    "merged_cost_centres": [_reverse_merged_cost_centres],
    "demo": [],
}


def test_propose_then_at_most_two_edits_passes_check_and_runs_both_flows_to_the_cent(
    customer: tuple[Stack, Shape], engine: LocalEngine, tmp_path: Path
) -> None:
    stack, shape = customer
    proposal = _propose(stack)
    cfg = proposal.config
    edits = EDITS[shape.name]
    assert len(edits) <= 2, "the proposal needs at most two hand edits"

    if shape.cost_centre_reverse:  # plans are refused while the reverse map is ambiguous: check says so first
        rows = _failed(_check(cfg, tmp_path))
        assert rows and all("reverse" in r[1] or "reverse" in r[2] for r in rows.values()), rows
        _install(engine, cfg)
        refused = engine.run("PlansFlow", manual(), timeout=300)
        detail, remedy = next(iter(rows.values()))[1:]
        assert_failed_cleanly(engine, stack, refused, "BadInputData", detail, remedy)
        assert not stack.dynamics.app.budget_headers, "nothing may be written"
    for edit in edits:
        edit(cfg)

    failed = _failed(_check(cfg, tmp_path))
    assert not failed, failed

    _install(engine, cfg)
    result = engine.run("ActualsFlow", manual(), timeout=300)
    assert result.status == "SUCCEEDED", (result.error, result.task_failures())
    expected = expected_actuals(stack, shape)
    assert expected, "no GL in the window: the test would prove nothing"
    held = anaplan_actuals(stack)
    assert held == expected, (
        f"{len(set(held.items()) ^ set(expected.items()))} cells differ, e.g. "
        f"{sorted(set(expected.items()) - set(held.items()), key=str)[:2]} vs "
        f"{sorted(set(held.items()) - set(expected.items()), key=str)[:2]}"
    )

    clear_journals(stack)
    result = engine.run("PlansFlow", manual(), timeout=300)
    assert result.status == "SUCCEEDED", (result.error, result.task_failures())
    planned = expected_plans(stack, shape)
    assert planned, "no approved plan in the window: the test would prove nothing"
    assert fo_plans(stack) == planned
    _explained_as_run(stack, shape, cfg, held, fo_plans(stack), tmp_path)


def _explained_as_run(stack: Stack, shape: Shape, cfg: dict[str, Any], held: dict[Cell, Decimal],
                      fo: dict[PlanKey, Decimal], tmp: Path) -> None:  # fmt: skip
    """``map explain`` names the cell a GL line went to (with the amount the run loaded there) and the F&O
    lines an export row became (with the amounts the run wrote)."""
    from d365_anaplan.anaplan.client import AnaplanClient
    from d365_anaplan.config import parse_connection
    from d365_anaplan.dynamics.client import connect
    from d365_anaplan.secrets import SecretResolver
    from d365_anaplan.steps.mapping import MapSource
    from devkit.mapping.explain import explain_actuals, explain_plan_row

    parsed = parse_connection(copy.deepcopy(cfg))
    resolver = SecretResolver(allow_local=True)
    conn = connect(parsed, resolver, sleep=lambda _s: None, reuse_tokens=False)
    client = AnaplanClient.from_config(parsed, resolver=resolver, sleep=lambda _s: None)
    gl = stack.dynamics.app.gl
    voucher = next(gl.voucher(v) for v in range(gl.voucher_count)
                   if any(line.account.account in shape.accounts for line in gl.voucher_lines(v)))  # fmt: skip
    found = explain_actuals(
        parsed, conn, client, voucher.voucher, voucher.accounting_date, MapSource(base_dir=tmp)
    )
    loaded = [e for e in found if not e.left_out]
    assert loaded, [e.left_out for e in found]
    for e in loaded:
        assert held.get(frozenset(e.cell.items())) == e.cell_amount, (e.cell, e.cell_amount)
    assert all(e.line.account not in shape.accounts for e in found if e.left_out)

    labels = {label(int(p[:4]), int(p[5:])): p for p in PERIODS}
    checked = 0
    for row in range(1, 60):
        if checked >= 3:
            break
        plan = explain_plan_row(parsed, conn, client, "Export Approved Budget", row, MapSource(base_dir=tmp))
        for line in plan.lines:
            month = line["trans_date"][:7]
            if month not in labels.values():
                continue
            cc = line["dimensions"].get("CostCenter", "")
            assert fo[("Budget", line["company"], line["account"], cc, month)] == line["amount"], line
            checked += 1
    assert checked, "no explained plan line in the window: the test would prove nothing"


# --- check fails exactly where the run would -----------------------------------------------------------------


def _rename_actuals_import(stack: Stack) -> tuple[str, str, str]:
    imp = next(i for i in stack.anaplan.app.seed.imports.values() if i.name == "Load GL Actuals")
    imp.name = "Load GL Actuals (P&L)"
    return "import 'Load GL Actuals' (actuals)", "ActualsFlow", "AnaplanNotFound"


def _budget_export_without_entity(stack: Stack) -> tuple[str, str, str]:
    exp = next(e for e in stack.anaplan.app.seed.exports.values() if e.name == "Export Approved Budget")
    exp.header_names = [h for h in exp.header_names if h != "Entity"]
    return "export 'Export Approved Budget' (Budget plan)", "PlansFlow", "BadInputData"


def _cost_centre_member_removed(stack: Stack) -> tuple[str, str, str]:
    stack.anaplan.app.seed.lists["Cost Centres"].members.pop("CC-SUP")
    return "value map 'CostCenter' (members)", "ActualsFlow", "BadInputData"


def _actuals_import_without_version(stack: Stack) -> tuple[str, str, str]:
    imp = next(i for i in stack.anaplan.app.seed.imports.values() if i.name == "Load GL Actuals")
    imp.header_names = [h for h in imp.header_names if h != "Version"]
    return "import 'Load GL Actuals' (actuals)", "ActualsFlow", "AnaplanHeaderMismatch"


DEFECTS: dict[str, Callable[[Stack], tuple[str, str, str]]] = {
    "pl_only": _rename_actuals_import,
    "natural_july": _budget_export_without_entity,
    "merged_cost_centres": _cost_centre_member_removed,
    "demo": _actuals_import_without_version,
}


def test_a_planted_metadata_defect_fails_check_with_the_runs_message(
    customer: tuple[Stack, Shape], engine: LocalEngine, tmp_path: Path
) -> None:
    stack, shape = customer
    cfg = _propose(stack).config
    for edit in EDITS[shape.name]:
        edit(cfg)
    assert not _failed(_check(cfg, tmp_path)), "the proposal passes check before the defect"
    with stack.anaplan.app._lock:
        row, flow, error = DEFECTS[shape.name](stack)
    status, detail, remedy = _check(cfg, tmp_path)[row]
    assert status == FAIL, (row, status, detail)
    _install(engine, cfg)
    result = engine.run(flow, manual(), timeout=300)
    assert_failed_cleanly(engine, stack, result, error, detail, remedy)
