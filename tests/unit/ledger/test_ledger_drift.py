"""Metadata fingerprints in the ledger (drift detection): staged per run, made current by a successful close,
never current before; a repeated close changes nothing; flows and connections are separate."""

from __future__ import annotations

from typing import Any

import pytest
from ledger_support import FakeClock

from d365_anaplan.flows.drift import digest, fingerprint
from d365_anaplan.ledger.drift import Fingerprints

FP1 = fingerprint(
    {"Load GL Actuals": ["Entity", "Account", "Amount"]}, {}, {"Cost Centres": ["CC100", "CC900"]}
)
FP2 = fingerprint({"Load GL Actuals": ["Account", "Entity", "Amount"]}, {}, {"Cost Centres": ["CC100"]})


@pytest.fixture
def store(dynamodb: Any, table: str, clock: FakeClock) -> Fingerprints:
    return Fingerprints(table, client=dynamodb, clock=clock)


def test_a_staged_fingerprint_is_current_only_after_promotion(store: Fingerprints) -> None:
    assert store.current("acme", "actuals") is None
    assert store.stage("acme", "actuals", "run-1", FP1, accepted=[]) == digest(FP1)
    assert store.current("acme", "actuals") is None, "a run that has not closed SUCCEEDED records nothing"
    assert store.promote("acme", "actuals", "run-1") is True
    got = store.current("acme", "actuals")
    assert (
        got is not None
        and got["run_id"] == "run-1"
        and got["fingerprint"]["lists"]["Cost Centres"]["members"] == ["CC100", "CC900"]
    )
    assert got.get("previous_run_id") is None


def test_promotion_keeps_the_previous_run_and_the_accepted_drift(store: Fingerprints) -> None:
    store.stage("acme", "actuals", "run-1", FP1, accepted=[])
    store.promote("acme", "actuals", "run-1")
    store.stage("acme", "actuals", "run-2", FP2, accepted=["list 'Cost Centres': 1 removed: CC900"])
    store.promote("acme", "actuals", "run-2")
    store.promote("acme", "actuals", "run-2")  # a repeated close (retry) changes nothing
    got = store.current("acme", "actuals")
    assert got is not None
    assert (got["run_id"], got["previous_run_id"], got["digest"]) == ("run-2", "run-1", digest(FP2))
    assert got["accepted"] == ["list 'Cost Centres': 1 removed: CC900"]


def test_a_run_without_a_staged_fingerprint_promotes_nothing(store: Fingerprints) -> None:
    store.stage("acme", "actuals", "run-1", FP1, accepted=[])
    store.promote("acme", "actuals", "run-1")
    assert store.promote("acme", "actuals", "replay-9") is False
    assert store.current("acme", "actuals")["run_id"] == "run-1"  # type: ignore[index]


def test_flows_and_connections_are_separate(store: Fingerprints) -> None:
    store.stage("acme", "actuals", "run-1", FP1, accepted=[])
    store.promote("acme", "actuals", "run-1")
    assert store.current("acme", "plans") is None
    assert store.current("other", "actuals") is None
    with pytest.raises(ValueError, match="non-empty"):
        store.current("", "actuals")
