"""A stopped run (console Stop, Ctrl-C in the CLI) is recorded as ABORTED, and a redrive reopens it like a
failed one (Step Functions redrives FAILED, TIMED_OUT and ABORTED executions)."""

from __future__ import annotations

from typing import Any

import pytest
from ledger_support import FakeClock

from d365_anaplan.ledger import RunLedger


@pytest.fixture
def ledger(dynamodb: Any, table: str, clock: FakeClock) -> RunLedger:
    return RunLedger(table, client=dynamodb, clock=clock)


def test_aborted_is_final_and_redrivable(ledger: RunLedger, clock: FakeClock) -> None:
    ledger.start_run("exec-1", "acme", "actuals", "manual", {})
    clock.advance(1)
    aborted = ledger.finish_run("exec-1", "ABORTED", cause={"Error": "Interrupted", "Cause": "Ctrl-C"})
    assert aborted.status == "ABORTED" and aborted.finished_at == clock()
    clock.advance(1)
    reopened = ledger.start_run("exec-1", "acme", "actuals", "manual", {})
    assert reopened.status == "RUNNING" and reopened.redriven == 1 and reopened.cause is None
