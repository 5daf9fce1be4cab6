"""Issue 13 item 5: the periods a run covers are recorded in the ledger (the plan horizon as well as a
requested range), and a replay of a dry run stays a dry run unless the request says ``dry_run: false``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from e2e_support import CONNECTION, clear_journals, journal_counts, ledger, manual

from d365_anaplan.config import CloseCalendar
from d365_anaplan.steps.gate import plans_window
from devkit.engine import LocalEngine
from devkit.stack import Stack

pytestmark = pytest.mark.integration


def _window(engine: LocalEngine, run_id: str) -> dict[str, Any]:
    steps = [s for s in ledger(engine).steps(run_id) if s.step == "PeriodWindow"]
    assert len(steps) == 1, [s.step for s in ledger(engine).steps(run_id)]
    return dict(steps[0].detail)


def test_requested_and_horizon_windows_are_recorded(module_engine: LocalEngine, stack: Stack) -> None:
    done = module_engine.run("PlansFlow", {**manual(), "dry_run": True}, timeout=180)
    assert done.status == "SUCCEEDED", done.task_failures()
    assert _window(module_engine, done.name) == {"from": "2025-01", "to": "2025-03", "reason": "requested",
                                                 "months": 3, "dry_run": True}  # fmt: skip

    # no periods: the plan horizon (current and next fiscal year) is what the run covers - and recorded
    cal = CloseCalendar.model_validate(stack.connection().get("close_calendar") or {})
    months = plans_window(cal, datetime.now(UTC))
    horizon = module_engine.run("PlansFlow", {"connection": CONNECTION, "trigger": "manual", "dry_run": True},
                                timeout=180)  # fmt: skip
    window = _window(module_engine, horizon.name)
    assert window == {"from": months[0].strftime("%Y-%m"), "to": months[-1].strftime("%Y-%m"),
                      "reason": "plan horizon", "months": 24, "dry_run": True}  # fmt: skip


def test_replay_of_a_dry_run_stays_a_dry_run(module_engine: LocalEngine, stack: Stack) -> None:
    clear_journals(stack)
    dry = module_engine.run("PlansFlow", {**manual(), "dry_run": True}, timeout=180)
    assert dry.status == "SUCCEEDED", dry.task_failures()
    empty = journal_counts(stack)

    replay = module_engine.run("PlansFlow", {"connection": CONNECTION, "trigger": "replay", "replay_of": dry.name},
                               timeout=180)  # fmt: skip
    assert replay.status == "SUCCEEDED", replay.task_failures()
    assert ledger(module_engine).get_run(replay.name).detail["request"].get("dry_run") is None
    assert _window(module_engine, replay.name)["dry_run"] is True
    assert journal_counts(stack) == empty, "a replay of a dry run wrote to F&O"

    real = module_engine.run("PlansFlow", {"connection": CONNECTION, "trigger": "replay", "replay_of": dry.name,
                                           "dry_run": False}, timeout=180)  # fmt: skip
    assert real.status == "SUCCEEDED", real.task_failures()
    assert journal_counts(stack) != empty  # asked for explicitly: written
