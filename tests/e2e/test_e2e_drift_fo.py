"""Issue 12, item 6, the F&O part of drift detection: a successful run records the active integration format
and the financial dimension names it relied on; when the F&O setup changes (the format's segments, a new
financial dimension), the next run stops in its first F&O step with ``MetadataDrift`` and the diff, before
anything is written to Anaplan (actuals: no list or actuals load) or to F&O (plans: no journal); ``check``
shows the same diff as a WARN; a run with ``accept_drift`` continues and records the new F&O part."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import assert_failed_cleanly, clear_journals, current_fingerprint, fo_entries, manual

from devkit.commands.check import PASS, WARN, Report, check_dynamics
from devkit.engine import LocalEngine
from devkit.sandbox.dynamics import seed as fo_seed
from devkit.stack import Stack

pytestmark = pytest.mark.integration

LEDGER = "DataEntityLedgerDimensionFormat"
BUDGET = "DataEntityBudgetDimensionFormat"


@pytest.fixture
def fo(stack: Stack) -> Iterator[Any]:
    """The F&O sandbox; its formats and dimension attributes are restored after the test."""
    app = stack.dynamics.app
    saved = {t: copy.deepcopy(app.static[t]) for t in ("DimensionIntegrationFormats", "DimensionAttributes")}
    yield app
    with app.lock:
        app.static.update(saved)


def _check(stack: Stack, engine: LocalEngine) -> dict[str, tuple[str, str, str]]:
    """check's F&O rows with the drift rows against the engine's ledger: name -> (status, detail, remedy)."""
    from d365_anaplan.config import parse_connection

    report = Report()
    check_dynamics(
        parse_connection(copy.deepcopy(stack.connection())),
        report,
        fingerprints=lambda f: current_fingerprint(engine, f),
    )
    return {ch.name: (ch.status, ch.detail, ch.remedy) for ch in report.checks}


def _active(app: Any, kind: str) -> dict[str, Any]:
    return next(
        r
        for r in app.static["DimensionIntegrationFormats"]
        if r["DimensionFormatType"] == kind and r["IsActive"] == "Yes"
    )


def _add_dimension(app: Any, name: str) -> None:
    with app.lock:
        app.static["DimensionAttributes"] = [*app.static["DimensionAttributes"],
                                             {**app.static["DimensionAttributes"][-1], "DimensionName": name,
                                              "ReportColumnName": name}]  # fmt: skip


def _anaplan_state(stack: Stack) -> tuple[Any, Any]:
    app = stack.anaplan.app
    cells = {k: dict(v) for k, v in app.module_cells("GL Actuals").items()}
    lists = {n: sorted(lst.members) for n, lst in app.seed.lists.items()}
    return cells, lists


def test_actuals_stop_on_a_changed_ledger_format_before_writing_to_anaplan_and_accept_continues(
    engine: LocalEngine, stack: Stack, fo: Any
) -> None:
    first = engine.run("ActualsFlow", manual(), timeout=300)
    assert first.status == "SUCCEEDED", first.output
    recorded = current_fingerprint(engine, "actuals")
    assert recorded is not None
    assert recorded["fingerprint"]["fo"]["formats"]["ledger"] == {
        "name": fo_seed.LEDGER_FORMAT_NAME,
        "segments": list(fo_seed.LEDGER_FORMAT),
    }
    assert _check(stack, engine)["F&O metadata drift (actuals)"] == (
        PASS,
        f"unchanged since run {first.name}",
        "",
    )

    # the F&O administrator drops BusinessUnit from the ledger integration format
    with fo.lock:
        row = _active(fo, LEDGER)
        row["FinancialDimensionFormat"] = "MainAccount-CostCenter-Department"
    expected = (
        f"F&O ledger dimension format {fo_seed.LEDGER_FORMAT_NAME!r}: segments "
        f"{list(fo_seed.LEDGER_FORMAT)} -> ['MainAccount', 'CostCenter', 'Department']"
    )
    status, detail, remedy = _check(stack, engine)["F&O metadata drift (actuals)"]
    assert (status, detail) == (WARN, expected)
    assert "--accept-drift" in remedy

    before = _anaplan_state(stack)
    stopped = engine.run("ActualsFlow", manual(), timeout=300)
    text = assert_failed_cleanly(engine, stack, stopped, "MetadataDrift", expected, "--accept-drift")
    assert f"since run {first.name}" in text
    entered = stopped.states_entered()
    assert not [
        s for s in entered if s.startswith(("LoadLists", "UploadList", "PrepareActuals", "Upload"))
    ], entered
    assert _anaplan_state(stack) == before, "nothing written to Anaplan"
    assert current_fingerprint(engine, "actuals")["run_id"] == first.name, "a stopped run records nothing"  # type: ignore[index]

    # the format is put back and a new financial dimension is added: accepted, the run completes
    with fo.lock:
        _active(fo, LEDGER)["FinancialDimensionFormat"] = "-".join(fo_seed.LEDGER_FORMAT)
    _add_dimension(fo, "Project")
    status, detail, _ = _check(stack, engine)["F&O metadata drift (actuals)"]
    assert (status, detail) == (WARN, "F&O financial dimensions: added 'Project'")
    again = engine.run("ActualsFlow", manual(), timeout=300)
    assert_failed_cleanly(engine, stack, again, "MetadataDrift", "F&O financial dimensions: added 'Project'")
    accepted = engine.run("ActualsFlow", {**manual(), "accept_drift": True}, timeout=300)
    assert accepted.status == "SUCCEEDED", accepted.output
    now = current_fingerprint(engine, "actuals")
    assert now is not None and now["run_id"] == accepted.name
    assert "Project" in now["fingerprint"]["fo"]["dimensions"]
    assert "F&O financial dimensions: added 'Project'" in now["accepted"]
    assert now["fingerprint"]["imports"] == recorded["fingerprint"]["imports"], "the Anaplan part is kept"
    assert _check(stack, engine)["F&O metadata drift (actuals)"][0] == PASS


def test_plans_stop_on_a_changed_journal_format_before_writing_to_f_and_o(
    engine: LocalEngine, stack: Stack, fo: Any
) -> None:
    clear_journals(stack)
    first = engine.run("PlansFlow", manual(), timeout=300)
    assert first.status == "SUCCEEDED", first.output
    recorded = current_fingerprint(engine, "plans")
    assert recorded is not None and "fo" in recorded["fingerprint"]
    (kind,) = recorded["fingerprint"]["fo"]["formats"]
    fmt_type = BUDGET if kind == "budget" else LEDGER
    segments = recorded["fingerprint"]["fo"]["formats"][kind]["segments"]
    swapped = [segments[0], segments[2], segments[1], *segments[3:]]
    with fo.lock:  # two segments of the journal target's format in another order
        _active(fo, fmt_type)["FinancialDimensionFormat"] = "-".join(swapped)
    name = recorded["fingerprint"]["fo"]["formats"][kind]["name"]
    expected = f"F&O {kind} dimension format {name!r}: segments {segments} -> {swapped}"
    assert _check(stack, engine)["F&O metadata drift (plans)"][:2] == (WARN, expected)

    held = fo_entries(stack)
    stopped = engine.run("PlansFlow", manual(), timeout=300)
    assert_failed_cleanly(engine, stack, stopped, "MetadataDrift", expected)
    assert "WriteJournals" not in stopped.states_entered(), "no journal may be written"
    assert fo_entries(stack) == held, "nothing written to F&O"
    assert current_fingerprint(engine, "plans")["run_id"] == first.name  # type: ignore[index]

    with fo.lock:
        _active(fo, fmt_type)["FinancialDimensionFormat"] = "-".join(segments)
    _add_dimension(fo, "Project")
    clear_journals(stack)
    accepted = engine.run("PlansFlow", {**manual(), "accept_drift": True}, timeout=300)
    assert accepted.status == "SUCCEEDED", accepted.output
    now = current_fingerprint(engine, "plans")
    assert (
        now is not None
        and now["run_id"] == accepted.name
        and "Project" in now["fingerprint"]["fo"]["dimensions"]
    )
    assert _check(stack, engine)["F&O metadata drift (plans)"][0] == PASS
