"""Customer model shapes both sandboxes can be seeded with (issue 12, "Done when"; item 7).

Each shape starts from the demo's F&O sandbox (its chart, dimensions, legal entities and posted GL) and an
Anaplan model a model builder of that customer would have built:

* ``pl_only`` — a P&L-only planning model: its account list holds revenue and expense accounts only, the
  actuals module has no Versions dimension and its import reads the columns in another order, the plan
  exports carry no Version column, and the entities are the model's own codes (``US-OPS``), named like
  F&O's legal entities.
* ``natural_july`` — a model in natural sign (revenue positive) whose fiscal year starts in July, with the
  approved budget and forecast exported time-in-columns (month columns, fiscal-year totals; no Version or
  Approval column).
* ``merged_cost_centres`` — a model whose account list is a range of the chart and whose cost-centre list
  merges F&O's cost centres into fewer members of its own; the plan module is per cost centre.
* ``demo`` — today's demo model (``devkit.stack``).

:class:`Shape` tells the tests what the model means (the maps its builder had in mind), so the expected
figures are computed from the seeds, never from the connector.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from devkit.sandbox.anaplan import harness as anaplan_harness
from devkit.sandbox.anaplan.app import AnaplanSandbox
from devkit.sandbox.anaplan.seed import MONTHS, ExportDef, ImportDef, ListDef, Member, ModelSeed, ModuleDef
from devkit.sandbox.dynamics import cli as dynamics_cli
from devkit.sandbox.dynamics import seed as fo_seed
from devkit.sandbox.dynamics.app import SandboxConfig

PL_TYPES = ("Revenue", "Expense")
NATURAL_FLIP = ("Revenue", "Liability", "Equity")  # natural sign: these are shown positive
# The merged cost centres: Anaplan member -> (name, the F&O cost centres it holds, the one plans write to).
MERGED_CENTRES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "CC-FIN": ("Finance", ("OU_3566",), "OU_3566"),
    "CC-OPS": ("Manufacturing and logistics", ("OU_3567", "OU_3571"), "OU_3567"),
    "CC-COM": ("Sales and marketing", ("OU_3568", "OU_3569"), "OU_3568"),
    "CC-RND": ("Research & development", ("OU_3570",), "OU_3570"),
    "CC-SUP": ("Quality and facilities", ("OU_3572", "OU_3573"), "OU_3572"),
}
ENTITY_CODES = {"USMF": ("US-OPS", "Contoso USA"), "DEMF": ("DE-OPS", "Contoso Germany")}
ACCOUNT_RANGE = ("401100", "606130")  # the merged-cost-centre model plans these accounts only


@dataclass
class Shape:
    """What a seeded model means: the maps and sign its builder had in mind (for expected figures)."""

    name: str
    company: dict[str, str] = field(default_factory=dict)  # F&O company -> Anaplan entity
    cost_centre: dict[str, str] = field(default_factory=dict)  # F&O cost centre -> Anaplan member
    cost_centre_reverse: dict[str, str] = field(default_factory=dict)  # member -> F&O code plans write to
    accounts: frozenset[str] = frozenset()  # the model's account list
    natural: bool = False  # revenue, liability and equity positive
    version_column: bool = True
    fiscal_year_start_month: int = 1
    plan_dimensions: tuple[str, ...] = ()  # F&O dimensions the plan module is per

    def account_type(self, account: str) -> str:
        found = fo_seed.main_account(account)
        return found.account_type if found else ""

    def sign(self, account: str) -> int:
        return -1 if self.natural and self.account_type(account) in NATURAL_FLIP else 1


def _pl_accounts() -> list[tuple[str, str]]:
    return [(a.account, a.name) for a in fo_seed.MAIN_ACCOUNTS if a.account_type in PL_TYPES]


def _range_accounts() -> list[tuple[str, str]]:
    lo, hi = ACCOUNT_RANGE
    return [(a.account, a.name) for a in fo_seed.MAIN_ACCOUNTS if lo <= a.account <= hi]


def _list(lists: dict[str, ListDef], list_id: str, name: str, members: list[tuple[str, str]]) -> None:
    lst = ListDef(list_id, name)
    for n, (code, label) in enumerate(members, start=1):
        lst.members[code] = Member(code, label, f"2{list_id[-3:]}{n:06d}")
    lists[name] = lst


def _plan_cells(shape: Shape, basis: dict[tuple[str, str, int], Decimal], plan_accounts: list[str],
                columns: list[str], seed: int = 20250101) -> dict[tuple[str, ...], dict[str, object]]:  # fmt: skip
    """Approved budget and forecast of ``plan_accounts`` per entity (x member of the plan dimensions) x
    month of 2025, spread from last year's run-rate (``basis``), in the model's sign; every 17th a Draft."""
    rng = random.Random(seed)
    cells: dict[tuple[str, ...], dict[str, object]] = {}
    members = [""]
    if "CostCenter" in shape.plan_dimensions:
        members = sorted(MERGED_CENTRES)
    row = 0
    for version, factor in (("Budget", Decimal("1.00")), ("Forecast", Decimal("1.04"))):
        for company in fo_seed.COMPANIES:
            entity = shape.company.get(company, company)
            for account in plan_accounts:
                yearly = sum((basis.get((company, account, i), Decimal(0)) for i in range(12)), Decimal(0))
                base = abs(yearly) / 12 if yearly else Decimal(rng.randrange(200_000, 5_000_000)) / 100
                if shape.account_type(account) == "Revenue":
                    base = -base  # planned revenue is a credit (ledger sign)
                for member in members:
                    share = Decimal(1) / len(members)
                    for month in range(12):
                        row += 1
                        noise = Decimal(rng.randrange(90, 111)) / 100
                        amount = (base * share * factor * noise).quantize(Decimal("0.01")) * shape.sign(
                            account
                        )
                        named = {"Entity": entity, "Account": account, "CostCenter": member,
                                 "Period": f"{MONTHS[month]} 25", "Version": version}  # fmt: skip
                        key = tuple(named[c] for c in columns)
                        approval = "Draft" if shape.version_column and row % 17 == 0 else "Approved"
                        cells[key] = {"Amount": amount, "Approval": approval}
    return cells


def build_model(shape: Shape, basis: dict[tuple[str, str, int], Decimal]) -> ModelSeed:
    """The Anaplan model of ``shape`` (the demo's lists, modules, imports and exports, reshaped)."""
    from devkit.stack import BLANK, READBACK_EXPORT, plan_accounts

    lists: dict[str, ListDef] = {}
    accounts = [(a.account, a.name) for a in fo_seed.MAIN_ACCOUNTS if a.account in shape.accounts]
    _list(lists, "101000000001", "Accounts", accounts)
    _list(
        lists,
        "101000000002",
        "Business Units",
        [*fo_seed.dimension_values("BusinessUnit"), (BLANK, "No business unit")],
    )
    if shape.cost_centre:
        centres = [(code, name) for code, (name, _fo, _rev) in MERGED_CENTRES.items()]
    else:
        centres = fo_seed.dimension_values("CostCenter")
    _list(lists, "101000000003", "Cost Centres", [*centres, (BLANK, "No cost centre")])
    _list(
        lists,
        "101000000004",
        "Departments",
        [*fo_seed.dimension_values("Department"), (BLANK, "No department")],
    )
    entities = [(shape.company.get(c, c), ENTITY_CODES[c][1] if shape.company else fo_seed.COMPANY_NAMES[c])
                for c in fo_seed.COMPANIES]  # fmt: skip
    _list(lists, "101000000005", "Legal Entities", entities)
    labels = [f"{m} {y % 100:02d}" for y in (2025, 2026) for m in MONTHS]
    _list(lists, "101000000006", "Periods", [(label, label) for label in labels])
    _list(
        lists,
        "101000000007",
        "Versions",
        [("Actual", "Actual"), ("Budget", "Budget"), ("Forecast", "Forecast")],
    )

    dims = [("Entity", "Legal Entities"), ("Account", "Accounts"), ("BusinessUnit", "Business Units"),
            ("CostCenter", "Cost Centres"), ("Department", "Departments"), ("Period", "Periods")]  # fmt: skip
    if shape.version_column:
        dims.append(("Version", "Versions"))
    actuals = ModuleDef("102000000001", "GL Actuals", dims, ["Amount"])
    plan_dims = [("Entity", "Legal Entities"), ("Account", "Accounts")]
    if "CostCenter" in shape.plan_dimensions:
        plan_dims.append(("CostCenter", "Cost Centres"))
    plan_dims += [("Period", "Periods"), ("Version", "Versions")]
    planned = [a for a in plan_accounts() if a in shape.accounts] if shape.accounts else plan_accounts()
    plan = ModuleDef("102000000002", "Plan", plan_dims, ["Amount", "Approval"],
                     _plan_cells(shape, basis, planned, [c for c, _l in plan_dims]))  # fmt: skip

    import_columns = [c for c, _l in dims] + ["Amount"]
    if shape.name == "pl_only":  # the model builder's own order: time first, then the amount
        import_columns = ["Period", "Amount", "Entity", "Account", "Department", "CostCenter", "BusinessUnit"]
    imports = {}
    for n, (name, file_name, kind, target, headers) in enumerate((
        ("Load Accounts", "accounts.csv", "HIERARCHY_DATA", "Accounts", ["Code", "Name"]),
        ("Load Cost Centres", "cost_centres.csv", "HIERARCHY_DATA", "Cost Centres", ["Code", "Name"]),
        ("Load Departments", "departments.csv", "HIERARCHY_DATA", "Departments", ["Code", "Name"]),
        ("Load Business Units", "business_units.csv", "HIERARCHY_DATA", "Business Units", ["Code", "Name"]),
        ("Load GL Actuals", "gl_actuals.csv", "MODULE_DATA", "GL Actuals", import_columns),
    ), start=1):  # fmt: skip
        imp = ImportDef(f"1120000000{n:02d}", name, f"1130000000{n:02d}", file_name, kind, target, headers)
        imports[imp.id] = imp
    plan_headers = [c for c, _l in plan_dims if c != "Version" or shape.version_column]
    plan_headers = [*plan_headers, "Amount"] + (["Approval"] if shape.version_column else [])
    exports = {}
    for n, (name, version) in enumerate((("Export Approved Budget", "Budget"),
                                          ("Export Approved Forecast", "Forecast")), start=1):  # fmt: skip
        tic = shape.name == "natural_july"
        headers = [c for c, _l in plan_dims if c not in ("Period", "Version")] if tic else plan_headers
        exp = ExportDef(f"1160000000{n:02d}", name, "Plan", version, headers, time_in_columns=tic)
        exports[exp.id] = exp
    readback = ExportDef("116000000090", READBACK_EXPORT, "GL Actuals", "Actual", import_columns[:])
    exports[readback.id] = readback
    return ModelSeed(
        workspace_id="8a868cd985f53e7701860542f59e276e", workspace_name=f"FP&A {shape.name}",
        model_id="A0F1C2D3E4F5061728394A5B6C7D8E9F", model_name=f"Financial plan ({shape.name})",
        lists=lists, modules={m.name: m for m in (actuals, plan)}, imports=imports, exports=exports,
        processes={},
    )  # fmt: skip


def shape(name: str) -> Shape:
    """The meaning of each seeded customer shape."""
    every = frozenset(a.account for a in fo_seed.MAIN_ACCOUNTS)
    if name == "pl_only":
        return Shape(name, company={c: code for c, (code, _n) in ENTITY_CODES.items()},
                     accounts=frozenset(a for a, _n in _pl_accounts()), version_column=False)  # fmt: skip
    if name == "natural_july":
        return Shape(name, accounts=every, natural=True, version_column=False, fiscal_year_start_month=7)
    if name == "merged_cost_centres":
        return Shape(name, cost_centre={fo: member for member, (_n, fos, _r) in MERGED_CENTRES.items() for fo in fos},
                     cost_centre_reverse={member: rev for member, (_n, _f, rev) in MERGED_CENTRES.items()},
                     accounts=frozenset(a for a, _n in _range_accounts()), plan_dimensions=("CostCenter",))  # fmt: skip
    if name == "demo":
        return Shape(name, accounts=every)
    raise ValueError(f"unknown customer shape {name!r}")


SHAPES = ("pl_only", "natural_july", "merged_cost_centres", "demo")


@contextmanager
def running(name: str, *, gl_lines: int = 400, months: int = 3,
            anaplan_kwargs: dict[str, Any] | None = None) -> Iterator[tuple[Any, Shape]]:  # fmt: skip
    """Both sandboxes seeded as customer ``name``: yields (a ``devkit.stack.Stack``, its :class:`Shape`)."""
    from devkit.stack import Stack, anaplan_app, plan_basis

    meaning = shape(name)
    fo = dynamics_cli.start(SandboxConfig(gl_lines=gl_lines, months=months, start=date(2025, 1, 1)))
    try:
        kwargs = {"task_start_delay_s": 0.01, "task_run_delay_s": 0.02, **(anaplan_kwargs or {})}
        basis = plan_basis(fo.app.gl)
        make: Callable[[], AnaplanSandbox] = (
            (lambda: anaplan_app(basis=basis, **kwargs)) if name == "demo"
            else (lambda: AnaplanSandbox(build_model(meaning, basis), **kwargs))
        )  # fmt: skip
        app = make()
        app.calendar.fiscal_start_month = meaning.fiscal_year_start_month  # the model calendar
        ana = anaplan_harness.start(app=app)
    except BaseException:
        fo.stop()
        raise
    stack = Stack(fo, ana)
    try:
        yield stack, meaning
    finally:
        stack.stop()


def partial_connection(stack: Any) -> dict[str, Any]:
    """What a new customer writes by hand: both systems, trust and the journal target; no mapping."""
    cfg = stack.connection()
    cfg.pop("mapping")
    for key in ("budget_model", "budget_code", "revision_budget_code"):
        cfg["dynamics"]["journal"].pop(key, None)
    return dict(cfg)
