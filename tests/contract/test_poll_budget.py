"""Poll loops stay far inside Step Functions' execution-history quota (25,000 events per execution).

The worst case is a task that runs until the poll budget (MAX_POLL_SECONDS) ends: count the polls the
growing interval allows, multiply by the events one Wait -> Task -> Choice turn writes, and add every
other state of the flow once per Map item we expect at most.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from d365_anaplan.anaplan.limits import next_poll_wait
from d365_anaplan.steps.anaplan_tasks import MAX_POLL_SECONDS

ROOT = Path(__file__).resolve().parents[2]
QUOTA = 25_000
EVENTS = {"Wait": 2, "Task": 5, "Choice": 2, "Pass": 2, "Map": 4, "Succeed": 2, "Fail": 1}


def polls_within_budget() -> int:
    elapsed, polls = 0, 0
    while elapsed <= MAX_POLL_SECONDS:
        wait = next_poll_wait(elapsed)
        assert wait >= 5, "Anaplan asks for at most one poll every 5 s"
        elapsed += wait
        polls += 1
    return polls


def loops(states: dict[str, dict]) -> list[list[str]]:
    """Wait -> Task -> Choice cycles (each Wait whose Task leads to a Choice that can go back to it)."""
    found = []
    for name, st in states.items():
        if st["Type"] == "Wait":
            task = st["Next"]
            choice = states[task].get("Next", "")
            if (
                choice in states
                and states[choice]["Type"] == "Choice"
                and states[choice].get("Default") == name
            ):
                found.append([name, task, choice])
    return found


def all_states(definition: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name, st in definition["States"].items():
        out[name] = st
        if st["Type"] == "Map":
            out.update(all_states(st["ItemProcessor"]))
    return out


@pytest.mark.parametrize("flow", ["actuals", "plans"])
def test_one_task_polled_for_the_whole_budget_stays_under_a_quarter_of_the_quota(flow: str) -> None:
    definition = json.loads((ROOT / "statemachine" / f"{flow}.asl.json").read_text(encoding="utf-8"))
    states = all_states(definition)
    cycles = loops(states)
    assert cycles, f"{flow}: no Wait/Check/Choice poll loop found"
    per_turn = max(sum(EVENTS[states[s]["Type"]] for s in cycle) for cycle in cycles)
    everything_else = sum(EVENTS.get(st["Type"], 5) for st in states.values()) * 20  # generous: 20 Map items
    worst = polls_within_budget() * per_turn + everything_else
    assert worst < QUOTA / 4, f"{flow}: worst case {worst} history events"


def test_the_interval_grows() -> None:
    waits = [next_poll_wait(t) for t in (0, 120, 600, 3600)]
    assert waits == sorted(waits)
    assert waits[0] < waits[-1]
