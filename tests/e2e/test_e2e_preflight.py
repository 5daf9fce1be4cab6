"""Issue 12, item 4: ``check`` predicts the run. The Anaplan model differs from what the configuration says
(an actuals import without a Version column, its columns in another order, a misnamed import, a plan export
without a Version column); ``check`` fails on it, and the run fails on the same metadata with the same
message, in its first step that talks to Anaplan, before any F&O data is read or any export is run."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from e2e_support import assert_failed_cleanly, ledger, manual

from devkit.commands.check import FAIL, PASS, Report, check_anaplan
from devkit.engine import LocalEngine
from devkit.stack import Stack

pytestmark = pytest.mark.integration

ACTUALS = "Load GL Actuals"
BUDGET = "Export Approved Budget"


@pytest.fixture
def engine(module_engine: LocalEngine) -> LocalEngine:
    """The file's engine; each test reshapes the model on purpose, so none compares with an earlier test's
    metadata fingerprint (drift detection is tested in test_e2e_drift.py)."""
    from e2e_support import forget_fingerprints

    module_engine.wrappers.clear()
    forget_fingerprints(module_engine)
    return module_engine


@pytest.fixture
def model(stack: Stack) -> Iterator[Any]:
    """The sandbox's model seed; import and export headers are restored after the test."""
    app = stack.anaplan.app
    saved = {i: list(x.header_names) for i, x in app.seed.imports.items()}
    saved_exp = {i: list(x.header_names) for i, x in app.seed.exports.items()}
    saved_names = {i: x.name for i, x in app.seed.imports.items()}
    yield app.seed
    with app._lock:
        for i, x in app.seed.imports.items():
            x.header_names, x.name = saved[i], saved_names[i]
        for i, e in app.seed.exports.items():
            e.header_names, e.time_in_columns = saved_exp[i], False


def _import(seed: Any, name: str) -> Any:
    return next(i for i in seed.imports.values() if i.name == name)


def _export(seed: Any, name: str) -> Any:
    return next(e for e in seed.exports.values() if e.name == name)


def _check(stack: Stack) -> dict[str, tuple[str, str, str]]:
    """check's Anaplan rows: name -> (status, detail, remedy)."""
    from d365_anaplan.config import parse_connection

    report = Report()
    check_anaplan(parse_connection(copy.deepcopy(stack.connection())), report)
    return {ch.name: (ch.status, ch.detail, ch.remedy) for ch in report.checks}


def _steps(engine: LocalEngine, run_id: str) -> list[str]:
    return [s.step for s in ledger(engine).steps(run_id)]


def test_check_passes_on_the_demo_model(stack: Stack, model: Any) -> None:
    rows = _check(stack)
    assert rows[f"import {ACTUALS!r} (actuals)"][0] == PASS, rows
    assert rows[f"export {BUDGET!r} (Budget plan)"][0] == PASS, rows
    assert not [n for n, r in rows.items() if r[0] == FAIL], rows


Edit = Callable[[Any], None]


def _no_version(seed: Any) -> None:
    imp = _import(seed, ACTUALS)
    imp.header_names = [h for h in imp.header_names if h != "Version"]


def _scenario(seed: Any) -> None:
    imp = _import(seed, ACTUALS)
    imp.header_names = [imp.header_names[1], imp.header_names[0], *imp.header_names[2:], "Scenario"]


def _renamed(seed: Any) -> None:
    _import(seed, ACTUALS).name = "Load GL Actuals (P&L)"


@pytest.mark.parametrize(
    ("edit", "row", "error", "needle"),
    [
        (
            _no_version,
            f"import {ACTUALS!r} (actuals)",
            "AnaplanHeaderMismatch",
            "unexpected columns ['Version']",
        ),
        (
            _scenario,
            f"import {ACTUALS!r} (actuals)",
            "AnaplanHeaderMismatch",
            "missing columns ['Scenario']",
        ),
        (_renamed, f"import {ACTUALS!r} (actuals)", "AnaplanNotFound", f"no import named {ACTUALS!r}"),
    ],
    ids=[
        "actuals-import-without-version",
        "actuals-import-reads-an-unwritten-column",
        "actuals-import-misnamed",
    ],
)
def test_check_fails_where_the_actuals_run_fails_before_reading_the_gl(
    engine: LocalEngine, stack: Stack, model: Any, edit: Edit, row: str, error: str, needle: str
) -> None:
    with stack.anaplan.app._lock:
        edit(model)
    status, detail, remedy = _check(stack)[row]
    assert status == FAIL and needle in detail, (status, detail)
    result = engine.run("ActualsFlow", manual(), timeout=180)
    text = assert_failed_cleanly(engine, stack, result, error, needle, detail, remedy)
    assert "metadata pre-check" in text
    steps = _steps(engine, result.name)
    assert not [s for s in steps if s.startswith(("ExtractGL", "ExtractMasterData", "PrepareActuals"))], steps
    assert "AcquireModelLease" not in result.states_entered()
    assert "ExtractGL" not in result.states_entered()


def test_check_fails_where_the_plans_run_fails_before_running_the_export(
    engine: LocalEngine, stack: Stack, model: Any
) -> None:
    with stack.anaplan.app._lock:
        exp = _export(model, BUDGET)
        exp.header_names = [h for h in exp.header_names if h != "Version"]
    status, detail, remedy = _check(stack)[f"export {BUDGET!r} (Budget plan)"]
    assert status == FAIL and "missing column(s) 'Version'" in detail, (status, detail)
    result = engine.run("PlansFlow", manual(), timeout=180)
    assert_failed_cleanly(engine, stack, result, "BadInputData", detail, remedy)
    assert "RunExports" not in result.states_entered(), "no export may run"
    assert "PlanJournals" not in result.states_entered()


# --- a model without a Version column, import columns in another order (issue 12, item 3) ----------------


@pytest.fixture
def versionless(stack: Stack, model: Any) -> Iterator[dict[str, Any]]:
    """The GL Actuals module has no Versions dimension and its import reads the columns in another order
    without Version; the plan exports carry no Version column. Returns the connection configured for it."""
    app = stack.anaplan.app
    actuals = app.seed.modules["GL Actuals"]
    saved_dims, saved_cells = list(actuals.dimensions), dict(actuals.cells)
    with app._lock:
        actuals.dimensions = [(c, n) for c, n in actuals.dimensions if c != "Version"]
        actuals.cells.clear()
        imp = _import(model, ACTUALS)
        imp.header_names = ["Period", "Amount", *[h for h in imp.header_names if h not in ("Period", "Amount",
                                                                                           "Version")]]  # fmt: skip
        for exp in model.exports.values():
            exp.header_names = [h for h in exp.header_names if h != "Version"]
    cfg = copy.deepcopy(stack.connection())
    cfg["mapping"]["actuals"]["version_column"] = None
    cfg["mapping"]["actuals"]["verify_export"] = None
    cfg["mapping"]["plans"]["version_column"] = None
    yield cfg
    with app._lock:
        actuals.dimensions = saved_dims
        actuals.cells.clear()
        actuals.cells.update(saved_cells)


@pytest.mark.parametrize("layout", ["long", "time_in_columns"])
def test_a_model_without_version_and_other_column_order_passes_check_and_runs_to_the_cent(
    engine: LocalEngine, stack: Stack, model: Any, versionless: dict[str, Any], layout: str
) -> None:
    """Actuals into a module without Versions (import columns in another order); plans from exports without
    Version or Approval columns, long or with time in columns (month columns, year totals ignored)."""
    from e2e_support import assert_plans_match, clear_journals, expected_actuals, window_labels

    from d365_anaplan.config import parse_connection

    if layout == "time_in_columns":
        with stack.anaplan.app._lock:
            for exp in model.exports.values():
                if exp.module == "Plan":
                    exp.header_names, exp.time_in_columns = ["Entity", "Account"], True
        versionless["mapping"]["plans"].update(layout=layout, approval_column=None)

    report = Report()
    check_anaplan(parse_connection(copy.deepcopy(versionless)), report)
    assert not [ch for ch in report.checks if ch.status == FAIL], [(c.name, c.detail) for c in report.checks]
    from d365_anaplan.runtime import clear_caches

    engine.install_connection(versionless)
    clear_caches()  # the connection is cached for a minute per container
    try:
        result = engine.run("ActualsFlow", manual(), timeout=300)
        assert result.status == "SUCCEEDED", result.output
        labels = window_labels()
        held = {k: v["Amount"] for k, v in stack.anaplan.app.module_cells("GL Actuals").items()
                if k[-1] in labels and v["Amount"] != 0}  # fmt: skip
        assert held == {k[:-1]: v for k, v in expected_actuals(stack).items()}
        clear_journals(stack)
        result = engine.run("PlansFlow", manual(), timeout=300)
        assert result.status == "SUCCEEDED", result.output
        assert_plans_match(stack)
    finally:
        engine.install_connection(stack.connection())
        clear_caches()


def test_spread_values_with_more_decimals_are_rounded_and_tie_to_the_cent(
    engine: LocalEngine, stack: Stack
) -> None:
    """The budget export carries doubles (``1234.5000000000001``): refused by default, rounded by
    ``mapping.plans.rounding: largest_remainder`` so that F&O holds the approved plan to the cent."""
    import csv
    import io

    from e2e_support import assert_plans_match, clear_journals, s3_put, s3_text

    from d365_anaplan.runtime import clear_caches

    def wrap(handler: Any) -> Any:
        def wrapped(event: dict[str, Any], ctx: Any) -> Any:
            out = handler(event, ctx)
            if out.get("file_key") and out.get("action") == BUDGET:
                rows = list(csv.reader(io.StringIO(s3_text(engine, out["file_key"]).decode("utf-8"))))
                at = rows[0].index("Amount")
                for r in rows[1:]:
                    r[at] = f"{Decimal(r[at]) + Decimal('0.00000000001')}"
                buf = io.StringIO()
                csv.writer(buf, lineterminator="\n").writerows(rows)
                s3_put(engine, out["file_key"], buf.getvalue().encode("utf-8"))
            return out

        return wrapped

    engine.wrappers["AnaplanCheckFunction"] = wrap
    clear_journals(stack)
    refused = engine.run("PlansFlow", manual(), timeout=300)
    assert_failed_cleanly(engine, stack, refused, "BadInputData", "more than 2 decimal places")
    cfg = copy.deepcopy(stack.connection())
    cfg["mapping"]["plans"]["rounding"] = "largest_remainder"
    engine.install_connection(cfg)
    clear_caches()
    try:
        result = engine.run("PlansFlow", manual(), timeout=300)
        assert result.status == "SUCCEEDED", result.output
        assert_plans_match(stack)
    finally:
        engine.install_connection(stack.connection())
        clear_caches()


def test_natural_sign_plans_are_written_in_ledger_sign(engine: LocalEngine, stack: Stack) -> None:
    """Exports in natural sign (revenue positive): with ``mapping.plans.sign: natural`` the revenue lines are
    turned into ledger sign by the F&O main account type, and F&O holds the approved plan to the cent."""
    import csv
    import io

    from e2e_support import assert_plans_match, clear_journals, s3_put, s3_text

    from d365_anaplan.runtime import clear_caches
    from devkit.sandbox.dynamics.seed import MAIN_ACCOUNTS

    revenue = {a.account for a in MAIN_ACCOUNTS if a.account_type == "Revenue"}
    assert revenue & {"401100", "401200"}, "the plan must hold revenue accounts: the test would prove nothing"

    def wrap(handler: Any) -> Any:
        def wrapped(event: dict[str, Any], ctx: Any) -> Any:
            out = handler(event, ctx)
            if out.get("file_key") and out.get("action") in (BUDGET, "Export Approved Forecast"):
                rows = list(csv.reader(io.StringIO(s3_text(engine, out["file_key"]).decode("utf-8"))))
                at, acc = rows[0].index("Amount"), rows[0].index("Account")
                for r in rows[1:]:
                    if r[acc] in revenue:
                        r[at] = f"{-Decimal(r[at])}"
                buf = io.StringIO()
                csv.writer(buf, lineterminator="\n").writerows(rows)
                s3_put(engine, out["file_key"], buf.getvalue().encode("utf-8"))
            return out

        return wrapped

    engine.wrappers["AnaplanCheckFunction"] = wrap
    clear_journals(stack)
    cfg = copy.deepcopy(stack.connection())
    cfg["mapping"]["plans"]["sign"] = "natural"
    engine.install_connection(cfg)
    clear_caches()
    try:
        result = engine.run("PlansFlow", manual(), timeout=300)
        assert result.status == "SUCCEEDED", result.output
        assert_plans_match(stack)
    finally:
        engine.install_connection(stack.connection())
        clear_caches()


def test_an_export_with_its_own_period_labels(engine: LocalEngine, stack: Stack) -> None:
    """The budget export labels months ``2025-01`` (the forecast keeps ``Jan 25``): ``period_format`` per
    export reads each in its own format."""
    import csv
    import io

    from e2e_support import MONTHS, assert_plans_match, clear_journals, s3_put, s3_text

    from d365_anaplan.runtime import clear_caches

    def wrap(handler: Any) -> Any:
        def wrapped(event: dict[str, Any], ctx: Any) -> Any:
            out = handler(event, ctx)
            if out.get("file_key") and out.get("action") == BUDGET:
                rows = list(csv.reader(io.StringIO(s3_text(engine, out["file_key"]).decode("utf-8"))))
                at = rows[0].index("Period")
                for r in rows[1:]:
                    mon, yy = r[at].split(" ")
                    r[at] = f"20{yy}-{MONTHS.index(mon) + 1:02d}"
                buf = io.StringIO()
                csv.writer(buf, lineterminator="\n").writerows(rows)
                s3_put(engine, out["file_key"], buf.getvalue().encode("utf-8"))
            return out

        return wrapped

    engine.wrappers["AnaplanCheckFunction"] = wrap
    clear_journals(stack)
    refused = engine.run("PlansFlow", manual(), timeout=300)
    assert_failed_cleanly(
        engine, stack, refused, "BadInputData", "does not match the period format '{Mon} {yy}'"
    )
    cfg = copy.deepcopy(stack.connection())
    cfg["mapping"]["plans"]["exports"][0]["period_format"] = "{yyyy}-{mm}"
    engine.install_connection(cfg)
    clear_caches()
    try:
        result = engine.run("PlansFlow", manual(), timeout=300)
        assert result.status == "SUCCEEDED", result.output
        assert_plans_match(stack)
    finally:
        engine.install_connection(stack.connection())
        clear_caches()
