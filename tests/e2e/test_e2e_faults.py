"""Faults on the F&O side during real flow runs (GL reads and journal writes). Each run must end SUCCEEDED with the sandboxes holding exactly
what the source of truth holds, or FAILED with a clear cause recorded in the ledger and the model lease
released."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import (
    assert_actuals_match,
    assert_failed_cleanly,
    assert_plans_match,
    clear_actuals,
    clear_journals,
    journal_counts,
    ledger,
    run_flow,
    succeeded,
)

from devkit.engine import LocalEngine
from devkit.stack import Stack

pytestmark = pytest.mark.integration


def test_fo_429_storm_during_gl_extraction(engine: LocalEngine, stack: Stack) -> None:
    clear_actuals(stack)
    fo = stack.dynamics.app
    fault = fo.inject("status", status=429, retry_after="1", times=6, path_contains="/data/GeneralJournal")
    result = run_flow(engine, "ActualsFlow")
    assert fault.times == 0, "the storm was served"
    succeeded(result)
    assert_actuals_match(stack)


def test_fo_429_storm_while_writing_journals(engine: LocalEngine, stack: Stack) -> None:
    clear_journals(stack)
    fo = stack.dynamics.app
    fault = fo.inject(
        "status", status=429, retry_after="1", times=3, path_contains="/data/$batch", method="POST"
    )
    result = run_flow(engine, "PlansFlow")
    assert fault.times == 0
    succeeded(result)
    assert_plans_match(stack)


def test_fo_token_expires_mid_extraction(engine: LocalEngine, stack: Stack) -> None:
    clear_actuals(stack)
    fo = stack.dynamics.app
    before = fo.counters["401"]
    fo.inject("expire_token", path_contains="/data/GeneralJournalAccountEntry")
    result = run_flow(engine, "ActualsFlow")
    succeeded(result)
    assert fo.counters["401"] > before, "the expired token was refused once, then renewed"
    assert_actuals_match(stack)


def test_fo_token_expires_between_journal_batches(engine: LocalEngine, stack: Stack) -> None:
    clear_journals(stack)
    fo = stack.dynamics.app
    calls: list[int] = []

    def expire_before_second(handler: Any) -> Any:
        def wrapped(event: dict[str, Any], ctx: Any) -> Any:
            calls.append(1)
            if len(calls) == 2:
                fo.expire_tokens()
            return handler(event, ctx)

        return wrapped

    engine.wrappers["WriteJournalFunction"] = expire_before_second
    before = fo.counters["401"]
    result = run_flow(engine, "PlansFlow")
    succeeded(result)
    assert fo.counters["401"] > before
    assert_plans_match(stack)


def test_crash_between_two_journal_writes_then_rerun_completes_once(
    engine: LocalEngine, stack: Stack
) -> None:
    """With small batches a journal is written by several invocations; the handler dies after the first
    batch of the run is in F&O (not retried: an unknown error). The run fails cleanly; the next run resumes
    the same journals and the end state holds every line exactly once."""
    clear_journals(stack)
    engine.install_connection(stack.connection(dynamics={**stack.connection()["dynamics"],
                                                        "journal": {**stack.connection()["dynamics"]["journal"],
                                                                    "lines_per_batch": 12}}))  # fmt: skip
    calls: list[int] = []

    def crash_after_first(handler: Any) -> Any:
        def wrapped(event: dict[str, Any], ctx: Any) -> Any:
            out = handler(event, ctx)
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("simulated crash: the Lambda died after its first batch was written")
            return out

        return wrapped

    engine.wrappers["WriteJournalFunction"] = crash_after_first
    failed = run_flow(engine, "PlansFlow")
    assert_failed_cleanly(engine, stack, failed, "RuntimeError", "simulated crash")
    partial = journal_counts(stack)
    assert partial[1] > 0, "the first batch is in F&O"
    result = run_flow(engine, "PlansFlow")
    succeeded(result)
    rerun_lines = sum(w["written"] for w in result.output["written"])
    assert rerun_lines == journal_counts(stack)[1] - partial[1], "the rerun wrote only what F&O lacked"
    assert result.output["plan"]["differences"]["cells"] == rerun_lines
    assert_plans_match(stack)


def test_journal_batch_applied_but_answer_lost(
    engine: LocalEngine, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """F&O commits the first $batch of lines, then the connection drops before the answer arrives: the
    writer must find the lines already there instead of sending them a second time."""
    from devkit.sandbox.server import Response

    clear_journals(stack)
    fo = stack.dynamics.app
    original = fo._batch
    dropped: list[int] = []

    def batch_then_drop(req: Any) -> Any:
        resp = original(req)
        if not dropped:
            dropped.append(resp.status)
            return Response(0, drop_connection=True)
        return resp

    monkeypatch.setattr(fo, "_batch", batch_then_drop)
    result = run_flow(engine, "PlansFlow")
    assert dropped, "the fault was served"
    if result.status == "FAILED":
        assert_failed_cleanly(engine, stack, result, ledger(engine).get_run(result.name).cause["Error"])
        monkeypatch.setattr(fo, "_batch", original)
        result = run_flow(engine, "PlansFlow")
    succeeded(result)
    assert_plans_match(stack)
