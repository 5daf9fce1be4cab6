"""GL extraction fanned out per company and month (statemachine/actuals.asl.json: PrepareExtract, ExtractGL,
ExtractGLDistributed) on the local engine against both sandboxes.

The sandboxes keep their own books: the F&O sandbox the peak of /data requests served at once and the 429s
its environment-wide resource pressure answered (devkit/sandbox/dynamics/load.py), the Anaplan sandbox the
most actions of the model unfinished at once. Anaplan must end up holding the posted GL to the cent.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import assert_actuals_match, clear_actuals, manual

from devkit.engine import LocalEngine
from devkit.stack import Stack

pytestmark = pytest.mark.integration


def run_flow(stack: Stack, **dynamics: Any) -> tuple[Any, LocalEngine]:
    clear_actuals(stack)
    stack.dynamics.app.in_flight.reset()
    stack.dynamics.app.in_flight.latency = 0.03  # F&O is slow: parallel requests overlap at the server
    stack.anaplan.app.counters["max_actions_in_flight"] = 0
    with LocalEngine(wait_scale=0.0) as engine:
        cfg = stack.connection()
        cfg["dynamics"] = {**cfg["dynamics"], "page_size": 15, **dynamics}
        engine.install_connection(cfg)
        try:
            result = engine.run("ActualsFlow", manual(), timeout=300)
        finally:
            stack.dynamics.app.in_flight.latency = 0.0
        assert result.status == "SUCCEEDED", (result.error, result.cause, result.task_failures())
        return result, engine


def items(result: Any) -> int:
    return int(result.output["extract"]["count"])


def test_inline_fanout_stays_within_the_configured_concurrency_and_serialises_anaplan(stack: Stack) -> None:
    result, engine = run_flow(stack, max_concurrency=2)
    entered = result.states_entered()
    assert "ExtractGL" in entered and "ExtractGLDistributed" not in entered
    assert items(result) == 2 * 3, "one item per company and month"
    assert engine.invocations["ExtractGLFunction"] >= items(result)
    assert stack.dynamics.app.in_flight.peak == 2, "two workers read at once, never more"
    assert stack.anaplan.app.counters["max_actions_in_flight"] == 1, "one Anaplan action at a time"
    assert_actuals_match(stack)


def test_distributed_map_reads_the_manifest_and_stays_within_the_concurrency(stack: Stack) -> None:
    result, _engine = run_flow(stack, max_concurrency=3, distributed_map_items=4)
    entered = result.states_entered()
    assert "ExtractGLDistributed" in entered and "ExtractGL" not in entered
    manifest = result.output["extract"]["manifest"]
    assert manifest.endswith("/extract/items.json") and result.output["extract"]["items"] == []
    assert 2 <= stack.dynamics.app.in_flight.peak <= 3, stack.dynamics.app.in_flight.peak
    assert stack.anaplan.app.counters["max_actions_in_flight"] == 1
    assert_actuals_match(stack)


def test_a_429_seen_by_one_worker_holds_the_others(stack: Stack) -> None:
    """Three workers read while F&O comes under resource pressure: the first 429 is written to the shared
    throttle record and every worker waits it out before its next request, so the environment answers at
    most one 429 per worker (those already on their way) instead of a 429 to each request of each worker
    that keeps asking while the pressure lasts (which prolongs it)."""
    workers = 3
    pressure = stack.dynamics.app.press(after=workers * 2, seconds=1.0, path_contains="/data/GeneralJournal")
    try:
        run_flow(stack, max_concurrency=workers)
    finally:
        stack.dynamics.app.pressure = None
    assert pressure.until is not None, "the environment came under pressure during the extraction"
    assert 1 <= pressure.served <= workers, f"{pressure.served} 429s served to {workers} workers"
    assert stack.dynamics.app.in_flight.peak <= workers
    assert_actuals_match(stack)
