"""The model lease on the local engine: every step that acts on the Anaplan model renews the lease and proves
it still owns it first.

* A second execution takes over the first one's lease (expired, as seen from the second execution's clock)
  while the first polls its actuals import: the first's next poll raises ``LeaseLost``, sends nothing more to
  Anaplan (requests counted at the sandbox's servers), and its ``RecordFailure`` leaves the second's lease.
* Renewal keeps a long run's lease alive: with the lease clock jumping most of a TTL before every poll, the
  run ends well past its original expiry and a competitor is refused at every poll.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    anaplan_requests,
    before_first,
    cause_of,
    clear_actuals,
    error_message,
    leases,
    manual,
    model_key,
)

from d365_anaplan.errors import ModelLeaseHeld
from d365_anaplan.ledger.lease import ModelLease
from devkit.engine import LocalEngine
from devkit.stack import Stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECOND = "arn:aws:states:us-east-1:123456789012:execution:ActualsFlow:the-second-execution"


def execution_timeout() -> int:
    definition = json.loads((ROOT / "statemachine" / "actuals.asl.json").read_text(encoding="utf-8"))
    return int(definition["TimeoutSeconds"])


@pytest.fixture
def lease_engine(engine: LocalEngine, stack: Stack) -> Iterator[LocalEngine]:
    clear_actuals(stack)
    yield engine
    leases(engine).release(model_key(stack), SECOND)


def test_execution_whose_lease_was_taken_over_sends_nothing_more(
    lease_engine: LocalEngine, stack: Stack
) -> None:
    engine = lease_engine
    key = model_key(stack)
    ttl = execution_timeout()
    at_takeover: dict[str, Any] = {}

    def take_over() -> None:
        later = datetime.now(UTC) + timedelta(seconds=ttl + 60)  # the first execution's lease has run out
        taken = ModelLease(engine.environment["LEDGER_TABLE"], clock=lambda: later).acquire(key, SECOND, ttl)
        at_takeover["displaced"] = taken.displaced_owner
        at_takeover["requests"] = anaplan_requests(stack)

    wrap, done = before_first(lambda e: e.get("task", {}).get("step") == "StartActualsImport", take_over)
    engine.wrappers["AnaplanCheckFunction"] = wrap
    result = engine.run("ActualsFlow", manual(), timeout=180)
    assert done, "the actuals import was never polled"
    assert at_takeover["displaced"] == result.arn
    assert result.status == "FAILED", result.output
    cause = cause_of(engine, result.name)
    assert cause["Error"] == "LeaseLost", cause
    text = error_message(cause)
    assert SECOND in text and "nothing was sent to Anaplan" in text, text
    assert anaplan_requests(stack) == at_takeover["requests"], (
        "the first execution reached Anaplan after losing"
    )
    entered = result.states_entered()
    assert entered[-3:] == ["CheckActualsImport", "RecordFailure", "Failed"], entered[-5:]
    holder = leases(engine).get(key)
    assert holder is not None and holder.owner == SECOND, "RecordFailure released the new holder's lease"


def test_renewal_keeps_a_long_run_alive_past_its_original_ttl(
    lease_engine: LocalEngine, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = lease_engine
    key = model_key(stack)
    ttl = execution_timeout()
    offset = [timedelta(0)]
    monkeypatch.setattr("d365_anaplan.ledger.lease.utc_now", lambda: datetime.now(UTC) + offset[0])
    refused: list[str] = []
    polls: list[int] = []

    def competitor_at_every_poll(handler: Any) -> Any:
        def wrapped(event: dict[str, Any], ctx: Any) -> Any:
            offset[0] += timedelta(seconds=ttl * 3 // 4)  # most of a TTL passes while the task runs
            out = handler(event, ctx)
            polls.append(1)
            try:
                ModelLease(engine.environment["LEDGER_TABLE"]).acquire(key, SECOND, ttl)
            except ModelLeaseHeld as exc:
                refused.append(str(exc))
            return out

        return wrapped

    engine.wrappers["AnaplanCheckFunction"] = competitor_at_every_poll
    result = engine.run("ActualsFlow", manual(), timeout=180)
    assert result.status == "SUCCEEDED", (result.error, result.task_failures())
    assert len(polls) >= 3, "the run must be polled past its original TTL"
    assert offset[0] > timedelta(seconds=2 * ttl)
    assert len(refused) == len(polls), "a competitor took the model over while the run still acted on it"
    assert leases(engine).get(key) is None, "the run released its lease"
