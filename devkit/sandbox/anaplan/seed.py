"""Seed data of the Anaplan sandbox: a planning model for a mid-size manufacturer.

One function, :func:`build_seed`, takes the account and dimension code lists as parameters so that the demo
can seed the F&O sandbox and this one consistently. Amounts are ``Decimal``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

DEFAULT_ACCOUNTS: tuple[tuple[str, str], ...] = (
    ("110110", "Bank account - USD"),
    ("110180", "Petty cash"),
    ("130100", "Accounts receivable - domestic"),
    ("140200", "Finished goods inventory"),
    ("200110", "Accounts payable - domestic"),
    ("401100", "Sales - finished goods"),
    ("401200", "Sales - services"),
    ("403100", "Sales discounts"),
    ("501100", "Cost of goods sold - materials"),
    ("501200", "Cost of goods sold - labour"),
    ("601100", "Salaries and wages"),
    ("601500", "Employee benefits"),
    ("606100", "Rent"),
    ("606300", "Utilities"),
    ("607100", "Travel"),
    ("608100", "Depreciation expense"),
)
DEFAULT_BUSINESS_UNITS: tuple[tuple[str, str], ...] = (
    ("001", "Home"),
    ("002", "Industrial"),
    ("003", "Consumer"),
    ("004", "Services"),
)
DEFAULT_COST_CENTRES: tuple[tuple[str, str], ...] = (
    ("OU_3566", "Finance"),
    ("OU_3567", "Sales and marketing"),
    ("OU_3568", "Production"),
    ("OU_4803", "IT"),
)
DEFAULT_DEPARTMENTS: tuple[tuple[str, str], ...] = (
    ("022", "Accounting"),
    ("023", "Purchasing"),
    ("024", "Manufacturing"),
    ("025", "Customer service"),
)
DEFAULT_ENTITIES: tuple[tuple[str, str], ...] = (
    ("USMF", "Contoso Entertainment System USA"),
    ("DEMF", "Contoso Entertainment System Germany"),
)
VERSIONS: tuple[tuple[str, str], ...] = (("Actual", "Actual"), ("Budget", "Budget"), ("Forecast", "Forecast"))
PLAN_ACCOUNTS = ("401100", "401200", "501100", "501200", "601100", "606100", "606300", "607100")

ACTUALS_COLUMNS = (
    "Entity",
    "Account",
    "BusinessUnit",
    "CostCenter",
    "Department",
    "Period",
    "Version",
    "Amount",
)
PLAN_COLUMNS = ("Entity", "Account", "Period", "Version", "Amount", "Approval")


def period_labels(years: Sequence[int]) -> list[tuple[str, str]]:
    """Month members labelled like ``Jan 25`` (code = name)."""
    return [(f"{m} {y % 100:02d}", f"{m} {y % 100:02d}") for y in years for m in MONTHS]


@dataclass
class Member:
    code: str
    name: str
    id: str
    parent: str | None = None


@dataclass
class ListDef:
    id: str
    name: str
    members: dict[str, Member] = field(default_factory=dict)  # by code

    def find(self, value: str) -> Member | None:
        """A member by code, else by name."""
        found = self.members.get(value)
        if found is not None:
            return found
        return next((m for m in self.members.values() if m.name == value), None)


@dataclass
class ModuleDef:
    id: str
    name: str
    dimensions: list[tuple[str, str]]  # (file column, list name)
    line_items: list[str]  # e.g. ["Amount"] or ["Amount", "Approval"]
    cells: dict[tuple[str, ...], dict[str, object]] = field(default_factory=dict)


@dataclass
class ImportDef:
    id: str
    name: str
    file_id: str
    file_name: str
    import_type: str  # HIERARCHY_DATA | MODULE_DATA
    target: str  # list or module name
    header_names: list[str]


@dataclass
class ExportDef:
    id: str
    name: str
    module: str
    version: str
    header_names: list[str]
    time_in_columns: bool = (
        False  # Time on columns: header_names are the row labels (devkit/sandbox/anaplan/shapes.py)
    )


@dataclass
class ProcessDef:
    id: str
    name: str
    actions: list[str]  # import ids


@dataclass
class ModelSeed:
    workspace_id: str
    workspace_name: str
    model_id: str
    model_name: str
    lists: dict[str, ListDef]
    modules: dict[str, ModuleDef]
    imports: dict[str, ImportDef]
    exports: dict[str, ExportDef]
    processes: dict[str, ProcessDef]


class _Ids:
    def __init__(self) -> None:
        self.next: dict[str, int] = {}

    def __call__(self, prefix: str) -> str:
        n = self.next.get(prefix, 1)
        self.next[prefix] = n + 1
        return f"{prefix}{n:09d}"


def build_seed(
    *,
    accounts: Sequence[tuple[str, str]] = DEFAULT_ACCOUNTS,
    business_units: Sequence[tuple[str, str]] = DEFAULT_BUSINESS_UNITS,
    cost_centres: Sequence[tuple[str, str]] = DEFAULT_COST_CENTRES,
    departments: Sequence[tuple[str, str]] = DEFAULT_DEPARTMENTS,
    entities: Sequence[tuple[str, str]] = DEFAULT_ENTITIES,
    years: Sequence[int] = (2025, 2026),
    plan_accounts: Sequence[str] = PLAN_ACCOUNTS,
    plan_year: int = 2025,
    plan_basis: Mapping[tuple[str, str, int], Decimal] | None = None,
    draft_every: int = 17,
    seed: int = 20250101,
    workspace_id: str = "8a868cd985f53e7701860542f59e276e",
    model_id: str = "A0F1C2D3E4F5061728394A5B6C7D8E9F",
) -> ModelSeed:
    """The seeded model. ``accounts`` etc. are (code, name) pairs; plan values are deterministic per ``seed``.

    Lists: Accounts, Business Units, Cost Centres, Departments, Legal Entities, Periods, Versions.
    Modules: ``GL Actuals`` (empty; loaded by ``Load GL Actuals``) and ``Plan`` (approved budget and forecast
    for ``plan_accounts`` x entities x months of ``plan_year``; every ``draft_every``-th row is a Draft).
    """
    ids = _Ids()
    lists: dict[str, ListDef] = {}

    def make_list(name: str, members: Sequence[tuple[str, str]]) -> None:
        lst = ListDef(ids("101"), name)
        for code, label in members:
            lst.members[code] = Member(code, label, ids("2"))
        lists[name] = lst

    make_list("Accounts", accounts)
    make_list("Business Units", business_units)
    make_list("Cost Centres", cost_centres)
    make_list("Departments", departments)
    make_list("Legal Entities", entities)
    make_list("Periods", period_labels(years))
    make_list("Versions", VERSIONS)

    actuals = ModuleDef(
        ids("102"),
        "GL Actuals",
        [
            ("Entity", "Legal Entities"),
            ("Account", "Accounts"),
            ("BusinessUnit", "Business Units"),
            ("CostCenter", "Cost Centres"),
            ("Department", "Departments"),
            ("Period", "Periods"),
            ("Version", "Versions"),
        ],
        ["Amount"],
    )
    plan = ModuleDef(
        ids("102"),
        "Plan",
        [
            ("Entity", "Legal Entities"),
            ("Account", "Accounts"),
            ("Period", "Periods"),
            ("Version", "Versions"),
        ],
        ["Amount", "Approval"],
    )
    rng = random.Random(seed)
    known_accounts = [a for a in plan_accounts if a in lists["Accounts"].members]
    row = 0
    for version, factor in (("Budget", Decimal("1.00")), ("Forecast", Decimal("1.04"))):
        for entity, _ in entities:
            for account in known_accounts:
                base = Decimal(rng.randrange(200_000, 5_000_000)) / 100
                for month in MONTHS:
                    row += 1
                    noise = Decimal(rng.randrange(90, 111)) / 100
                    yearly = sum(((plan_basis or {}).get((entity, account, i), Decimal(0)) for i in range(12)),
                                 Decimal(0))  # fmt: skip
                    if yearly:  # planners spread last year's actual run-rate: in proportion at any volume
                        amount = (yearly / 12 * factor * noise).quantize(Decimal("0.01"))
                    else:
                        amount = (base * factor * noise).quantize(Decimal("0.01"))
                        if account.startswith("4"):
                            amount = -amount  # revenue is a credit
                    approval = "Draft" if draft_every and row % draft_every == 0 else "Approved"
                    key = (entity, account, f"{month} {plan_year % 100:02d}", version)
                    plan.cells[key] = {"Amount": amount, "Approval": approval}
    modules = {m.name: m for m in (actuals, plan)}

    imports: dict[str, ImportDef] = {}

    def make_import(name: str, file_name: str, kind: str, target: str, headers: Sequence[str]) -> None:
        imp = ImportDef(ids("112"), name, ids("113"), file_name, kind, target, list(headers))
        imports[imp.id] = imp

    make_import("Load Accounts", "accounts.csv", "HIERARCHY_DATA", "Accounts", ("Code", "Name"))
    make_import("Load Cost Centres", "cost_centres.csv", "HIERARCHY_DATA", "Cost Centres", ("Code", "Name"))
    make_import("Load Departments", "departments.csv", "HIERARCHY_DATA", "Departments", ("Code", "Name"))
    make_import(
        "Load Business Units", "business_units.csv", "HIERARCHY_DATA", "Business Units", ("Code", "Name")
    )
    make_import("Load GL Actuals", "gl_actuals.csv", "MODULE_DATA", "GL Actuals", ACTUALS_COLUMNS)

    exports: dict[str, ExportDef] = {}
    for name, version in (("Export Approved Budget", "Budget"), ("Export Approved Forecast", "Forecast")):
        exp = ExportDef(ids("116"), name, "Plan", version, list(PLAN_COLUMNS))
        exports[exp.id] = exp

    by_name = {i.name: i.id for i in imports.values()}
    proc = ProcessDef(
        ids("118"),
        "Load Master Data",
        [
            by_name[n]
            for n in ("Load Accounts", "Load Cost Centres", "Load Departments", "Load Business Units")
        ],
    )
    return ModelSeed(
        workspace_id=workspace_id,
        workspace_name="FP&A Manufacturing",
        model_id=model_id,
        model_name="Manufacturing Financial Plan",
        lists=lists,
        modules=modules,
        imports=imports,
        exports=exports,
        processes={proc.id: proc},
    )
