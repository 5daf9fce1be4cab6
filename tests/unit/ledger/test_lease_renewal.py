"""Lease renewal and ownership checks with a fake clock: what the acting steps rely on before they send
anything to Anaplan, and how the TTL follows the state machine's execution timeout."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ledger_support import FakeClock

from d365_anaplan.errors import LeaseLost, ModelLeaseHeld
from d365_anaplan.ledger import ModelLease
from d365_anaplan.ledger.lease import MAX_EXECUTION_SECONDS, lease_ttl_seconds
from d365_anaplan.steps.lease import LeaseRef, hold_lease

ROOT = Path(__file__).resolve().parents[3]
A = "arn:aws:states:us-east-1:123456789012:execution:actuals:exec-a"
B = "arn:aws:states:us-east-1:123456789012:execution:actuals:exec-b"
WS, MODEL_ID = "8a81b09d5e8c6f27015ece3402487d33", "75A40874E6B64FA3AE0743278996850F"
MODEL = f"{WS}/{MODEL_ID}"
TTL = 3600


@pytest.fixture
def leases(dynamodb: Any, table: str, clock: FakeClock) -> ModelLease:
    return ModelLease(table, client=dynamodb, clock=clock)


def test_renewal_extends_the_lease_past_its_original_expiry(leases: ModelLease, clock: FakeClock) -> None:
    first = leases.acquire(MODEL, A, TTL)
    for _ in range(5):  # a long poll: renewed before each check, three quarters of a TTL apart
        clock.advance(TTL * 3 // 4)
        renewed = leases.renew(MODEL, A, TTL)
        assert renewed.expires_at == clock.now + timedelta(seconds=TTL)
        with pytest.raises(ModelLeaseHeld, match=A):
            leases.acquire(MODEL, B, TTL)
    assert clock.now > first.expires_at + timedelta(seconds=TTL)
    assert leases.get(MODEL).owner == A  # type: ignore[union-attr]


def test_without_renewal_the_lease_is_taken_over_and_the_old_owner_cannot_renew(
    leases: ModelLease, clock: FakeClock
) -> None:
    leases.acquire(MODEL, A, TTL)
    clock.advance(TTL + 1)
    taken = leases.acquire(MODEL, B, TTL)
    assert taken.displaced_owner == A
    with pytest.raises(LeaseLost, match=f"{A} cannot renew the lease, held by {B}"):
        leases.renew(MODEL, A, TTL)
    assert leases.get(MODEL).owner == B  # type: ignore[union-attr]
    assert leases.release_owned_by(A) == [], "the displaced owner's failure path releases nothing of B's"
    assert leases.release(MODEL, A) is False
    assert leases.get(MODEL).owner == B  # type: ignore[union-attr]


def test_renew_of_a_released_or_never_taken_lease_is_lost(leases: ModelLease) -> None:
    with pytest.raises(LeaseLost, match="held by nobody"):
        leases.renew(MODEL, A, TTL)
    leases.acquire(MODEL, A, TTL)
    assert leases.release(MODEL, A)
    with pytest.raises(LeaseLost, match="held by nobody"):
        leases.renew(MODEL, A, TTL)


def test_renewing_an_expired_lease_nobody_took_beats_a_racing_takeover(
    dynamodb: Any, table: str, clock: FakeClock
) -> None:
    """B reads A's expired lease; A renews before B writes; B's conditional write (pinned to the version it
    read) fails, B reads again and finds a valid lease."""
    owner_a = ModelLease(table, client=dynamodb, clock=clock)
    owner_a.acquire(MODEL, A, TTL)
    clock.advance(TTL + 1)

    class RenewFirst:
        def __init__(self) -> None:
            self.renewed = False

        def __getattr__(self, name: str) -> Any:
            return getattr(dynamodb, name)

        def transact_write_items(self, **kwargs: Any) -> Any:
            if not self.renewed:
                self.renewed = True
                owner_a.renew(MODEL, A, TTL)
            return dynamodb.transact_write_items(**kwargs)

    racer = ModelLease(table, client=RenewFirst(), clock=clock)
    with pytest.raises(ModelLeaseHeld, match=A):
        racer.acquire(MODEL, B, TTL)
    assert owner_a.get(MODEL).owner == A  # type: ignore[union-attr]


def test_ttl_is_the_execution_timeout() -> None:
    assert lease_ttl_seconds(86400) == 86400
    assert lease_ttl_seconds(MAX_EXECUTION_SECONDS) == MAX_EXECUTION_SECONDS
    for bad in (0, 59, MAX_EXECUTION_SECONDS + 1, True, 3600.0):
        with pytest.raises(ValueError, match="execution timeout"):
            lease_ttl_seconds(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("flow", ["actuals", "plans"])
def test_the_lease_of_each_flow_lasts_as_long_as_its_execution_can(flow: str) -> None:
    definition = json.loads((ROOT / "statemachine" / f"{flow}.asl.json").read_text(encoding="utf-8"))
    payload = definition["States"]["AcquireModelLease"]["Parameters"]["Payload"]
    assert lease_ttl_seconds(payload["execution_timeout_seconds"]) == definition["TimeoutSeconds"]


def _ctx(leases: ModelLease, execution: str = A) -> Any:
    cfg = SimpleNamespace(anaplan=SimpleNamespace(workspace_id=WS, model_id=MODEL_ID))
    return SimpleNamespace(cfg=cfg, leases=leases, execution=execution)


def test_hold_lease_renews_the_owners_lease(leases: ModelLease, clock: FakeClock) -> None:
    leases.acquire(MODEL, A, TTL)
    clock.advance(TTL - 1)
    hold_lease(_ctx(leases), LeaseRef(model_key=MODEL, ttl_seconds=TTL), "StartActualsImport: poll")
    assert leases.get(MODEL).expires_at == clock.now + timedelta(seconds=TTL)  # type: ignore[union-attr]
    clock.advance(TTL - 1)
    with pytest.raises(ModelLeaseHeld):
        leases.acquire(MODEL, B, TTL)


def test_hold_lease_refuses_when_another_execution_owns_the_model(
    leases: ModelLease, clock: FakeClock
) -> None:
    leases.acquire(MODEL, A, TTL)
    clock.advance(TTL + 1)
    leases.acquire(MODEL, B, TTL)
    with pytest.raises(
        LeaseLost, match=rf"StartActualsImport: poll: .*held by {B}.*nothing was sent to Anaplan"
    ):
        hold_lease(_ctx(leases), LeaseRef(model_key=MODEL, ttl_seconds=TTL), "StartActualsImport: poll")


def test_hold_lease_refuses_a_lease_of_another_model(leases: ModelLease) -> None:
    leases.acquire("other-ws/other-model", A, TTL)
    with pytest.raises(LeaseLost, match=r"other-ws/other-model.*names model"):
        hold_lease(_ctx(leases), LeaseRef(model_key="other-ws/other-model", ttl_seconds=TTL), "UploadActuals")
    assert leases.get(MODEL) is None
