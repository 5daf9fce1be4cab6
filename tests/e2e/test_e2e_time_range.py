"""Issue 12, item 4 (period labels against the model's time range): with ``mapping.actuals.time_source`` naming
the actuals line item, ``check`` reads the model's Time dimension (``GET …/lineItems/{id}/dimensions/{dimId}/
items``; the sandbox model's time range is Jan 25..Dec 26) and compares the periods the run would write, the
close gate's window computed as the run computes it. A window before the model's time range is refused by
``check`` and by the run's metadata pre-check with the same message and remedy, before any GL is read or
anything is imported; a window inside it passes both."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from e2e_support import PERIODS, assert_failed_cleanly, manual

from devkit.commands.check import FAIL, PASS, Report, check_anaplan, run_windows
from devkit.engine import LocalEngine
from devkit.stack import Stack

pytestmark = pytest.mark.integration

ROW = "model time range (actuals)"
OUTSIDE = ("2024-10", "2024-12")


def _config(stack: Stack) -> dict[str, Any]:
    cfg = stack.connection()
    cfg["mapping"]["actuals"]["time_source"] = "GL Actuals.Amount"
    cfg["close_calendar"]["first_period"] = "2024-01"  # the ledger's calendar starts before the model's time
    return cfg


def _check(cfg: dict[str, Any], first: str, last: str, tmp_path: Path) -> tuple[str, str, str]:
    from d365_anaplan.config import parse_connection

    conn = parse_connection(copy.deepcopy(cfg))
    report = Report()
    check_anaplan(conn, report, periods=run_windows(conn, tmp_path / "no-state", first, last))
    (row,) = [(ch.status, ch.detail, ch.remedy) for ch in report.checks if ch.name == ROW]
    return row


def _reads(stack: Stack) -> tuple[int, int]:
    """F&O GL requests and Anaplan tasks (imports, exports) so far."""
    return stack.dynamics.app.count("GET /data/GeneralJournal"), stack.anaplan.app.counters["tasks_started"]


def test_a_window_before_the_model_time_range_is_refused_by_check_and_run_alike(
    engine: LocalEngine, stack: Stack, tmp_path: Path
) -> None:
    cfg = _config(stack)
    status, detail, remedy = _check(cfg, *OUTSIDE, tmp_path)
    assert status == FAIL, (status, detail)
    assert detail == (
        "mapping.actuals.period_format '{Mon} {yy}': periods 2024-10..2024-12 (['Oct 24', 'Nov 24', 'Dec 24']) "
        "are before the model's time range 'Jan 25'..'Dec 26' (2025-01..2026-12)"
    ), detail
    engine.install_connection(cfg)
    before = _reads(stack)
    result = engine.run("ActualsFlow", manual(*OUTSIDE), timeout=180)
    assert_failed_cleanly(engine, stack, result, "BadInputData", detail, remedy)
    assert "ExtractGL" not in result.states_entered()
    assert _reads(stack) == before, "nothing read from F&O's GL, nothing imported into Anaplan"


def test_a_window_inside_the_model_time_range_passes_check_and_runs(
    engine: LocalEngine, stack: Stack, tmp_path: Path
) -> None:
    cfg = _config(stack)
    status, detail, _ = _check(cfg, PERIODS[0], PERIODS[-1], tmp_path)
    assert (status, detail) == (PASS, "periods 2025-01..2025-03 in the Time dimension of 'GL Actuals.Amount'")
    engine.install_connection(cfg)
    result = engine.run("ActualsFlow", manual(), timeout=300)
    assert result.status == "SUCCEEDED", (result.error, result.cause, result.task_failures())
