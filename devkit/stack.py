"""Both sandboxes, seeded consistently, and the connection configuration that reaches them.

The F&O sandbox is the source of truth for the chart of accounts and the dimension values; the Anaplan
sandbox's model is seeded with the same lists (a model builder would have built them), its plan module with
approved budget and forecast values for some of those accounts, plus an export of the actuals module that
the actuals flow reads back to reconcile. Used by the end-to-end tests, ``make demo`` and the CLI.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from devkit.sandbox.anaplan import harness as anaplan_harness
from devkit.sandbox.anaplan.app import AnaplanSandbox
from devkit.sandbox.anaplan.seed import ACTUALS_COLUMNS, ExportDef, build_seed
from devkit.sandbox.dynamics import cli as dynamics_cli
from devkit.sandbox.dynamics import seed as fo_seed
from devkit.sandbox.dynamics.app import SandboxConfig

CONNECTION = "demo"
READBACK_EXPORT = "Export GL Actuals"
BLANK = "NONE"  # the Anaplan member for lines without a value in a dimension


def _offset_account() -> str:
    """A balance-sheet account of the F&O chart used to balance plan vouchers."""
    for a in fo_seed.MAIN_ACCOUNTS:
        if a.is_balance_sheet and a.account not in fo_seed.SUSPENDED_ACCOUNTS and a.account.startswith("2"):
            return a.account
    raise RuntimeError("the F&O seed has no liability account to use as the plan offset")


def plan_accounts(count: int = 8) -> list[str]:
    """Profit-and-loss accounts of the F&O chart that the Anaplan plan module holds values for."""
    pl = [
        a.account
        for a in fo_seed.MAIN_ACCOUNTS
        if not a.is_balance_sheet and a.account not in fo_seed.SUSPENDED_ACCOUNTS
    ]
    step = max(1, len(pl) // count)
    return pl[::step][:count]


def plan_basis(gl: Any, plan_year: int = 2025) -> dict[tuple[str, str, int], Decimal]:
    """Net posted amount per (company, plan account, month of ``plan_year``) of the F&O generator: what the
    demo's planners start from, so plans stay in proportion to actuals at every ``--gl-lines``."""
    wanted = set(plan_accounts())
    cents: dict[tuple[str, str, int], int] = {}
    for v in range(gl.voucher_count):
        head = gl.voucher(v)
        if head.accounting_date.year != plan_year:
            continue
        for line in gl.voucher_lines(v):
            if line.account.account in wanted:
                key = (head.company, line.account.account, head.accounting_date.month - 1)
                cents[key] = cents.get(key, 0) + line.cents
    return {k: Decimal(c) / 100 for k, c in cents.items()}


def anaplan_app(*, plan_year: int = 2025, basis: dict[tuple[str, str, int], Decimal] | None = None,
                lists: dict[str, Any] | None = None, **kwargs: Any) -> AnaplanSandbox:  # fmt: skip
    """The model, its lists taken from the F&O seed; ``lists`` replaces some (``build_seed`` arguments such as
    ``entities`` or ``cost_centres``: a model whose members are not F&O's codes)."""
    seed = build_seed(**{
        "accounts": [(a.account, a.name) for a in fo_seed.MAIN_ACCOUNTS],
        "business_units": [*fo_seed.dimension_values("BusinessUnit"), (BLANK, "No business unit")],
        "cost_centres": [*fo_seed.dimension_values("CostCenter"), (BLANK, "No cost centre")],
        "departments": [*fo_seed.dimension_values("Department"), (BLANK, "No department")],
        "entities": [(c, fo_seed.COMPANY_NAMES[c]) for c in fo_seed.COMPANIES],
        "plan_accounts": plan_accounts(),
        "plan_year": plan_year,
        "plan_basis": basis,
        **(lists or {}),
    })  # fmt: skip
    module = seed.modules["GL Actuals"]
    export = ExportDef(
        f"116{len(seed.exports) + 90:09d}", READBACK_EXPORT, module.name, "Actual", list(ACTUALS_COLUMNS)
    )
    seed.exports[export.id] = export
    return AnaplanSandbox(seed, **kwargs)


@dataclass
class Stack:
    dynamics: dynamics_cli.RunningSandbox
    anaplan: anaplan_harness.RunningSandbox

    def connection(self, **overrides: Any) -> dict[str, Any]:
        """A complete connection configuration for both sandboxes (``overrides`` merged at the top level)."""
        fo = self.dynamics.connection_settings()
        ana = self.anaplan.connection_fragment("basic")
        fo["dynamics"]["journal"]["currency_codes"] = dict(fo_seed.ACCOUNTING_CURRENCY)
        cfg: dict[str, Any] = {
            "name": CONNECTION,
            "dynamics": fo["dynamics"],
            "anaplan": ana["anaplan"],
            "tls": {"ca_bundle": self.anaplan.ca_bundle},
            "security": {"allowed_hosts": sorted({*fo["security"]["allowed_hosts"], *ana["security"]["allowed_hosts"]})},
            "ledger": fo["ledger"],  # how the F&O sandbox orders display values (its account structures)
            "mapping": {
                "accounts": {"import_action": "Load Accounts", "list_name": "Accounts"},
                "dimensions": [
                    {"name": "BusinessUnit", "column": "BusinessUnit", "list_import": "Load Business Units",
                     "list_name": "Business Units", "blank_member": BLANK},
                    {"name": "CostCenter", "column": "CostCenter", "list_import": "Load Cost Centres",
                     "list_name": "Cost Centres", "blank_member": BLANK},
                    {"name": "Department", "column": "Department", "list_import": "Load Departments",
                     "list_name": "Departments", "blank_member": BLANK},
                ],
                "actuals": {"import_action": "Load GL Actuals", "verify_export": READBACK_EXPORT},
                "plans": {
                    "exports": [
                        # budget register: budget and forecast each under their own model and codes
                        {"export_action": "Export Approved Budget", "version": "Budget", "budget_model": "FY2025",
                         "budget_code": "Original", "revision_budget_code": "Revision", "journal_name": "Budget"},
                        {"export_action": "Export Approved Forecast", "version": "Forecast", "budget_model": "FC2025",
                         "budget_code": "FcOrig", "revision_budget_code": "FcRev", "journal_name": "Anaplan"},
                    ],
                    "approval_column": "Approval",
                    "dimensions": [],  # the seeded plan module is per company, account and month
                },
            },
            "close_calendar": {"timezone": "Europe/London", "business_day": 3, "first_period": "2025-01"},
        }  # fmt: skip
        cfg.update(overrides)
        return cfg

    def ledger_journal_connection(self) -> dict[str, Any]:
        """The connection with the ``ledger_journal`` opt-in: a custom posting layer, a balancing account."""
        cfg = self.connection()
        cfg["dynamics"]["journal"] = {**cfg["dynamics"]["journal"], "target": "ledger_journal",
                                      "posting_layer": "CustomLayer1", "offset_account": _offset_account()}  # fmt: skip
        return cfg

    def stop(self) -> None:
        self.anaplan.stop()
        self.dynamics.stop()


def start(*, gl_lines: int = 3_000, months: int = 12, start_month: date = date(2025, 1, 1),
          anaplan_kwargs: dict[str, Any] | None = None, dynamics_kwargs: dict[str, Any] | None = None) -> Stack:  # fmt: skip
    """Start both sandboxes on free loopback ports with one throwaway CA."""
    fo = dynamics_cli.start(
        SandboxConfig(gl_lines=gl_lines, months=months, start=start_month, **(dynamics_kwargs or {}))
    )
    try:
        kwargs = {"task_start_delay_s": 0.01, "task_run_delay_s": 0.02, **(anaplan_kwargs or {})}
        ana = anaplan_harness.start(app=anaplan_app(basis=plan_basis(fo.app.gl), **kwargs))
    except BaseException:
        fo.stop()
        raise
    return Stack(fo, ana)


@contextmanager
def running(**kwargs: Any) -> Iterator[Stack]:
    stack = start(**kwargs)
    try:
        yield stack
    finally:
        stack.stop()
