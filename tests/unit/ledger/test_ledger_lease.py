"""Per-model lease: serialisation, re-acquire, takeover of expired leases, release, cleanup, races."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from ledger_support import FakeClock

from d365_anaplan.errors import LeaseLost, ModelLeaseHeld, Transient
from d365_anaplan.ledger import ModelLease, model_key

A = "arn:aws:states:us-east-1:123456789012:execution:actuals:exec-a"
B = "arn:aws:states:us-east-1:123456789012:execution:actuals:exec-b"
C = "arn:aws:states:us-east-1:123456789012:execution:plans:exec-c"
MODEL = "8a81b09d5e8c6f27015ece3402487d33/75A40874E6B64FA3AE0743278996850F"


@pytest.fixture
def leases(dynamodb: Any, table: str, clock: FakeClock) -> ModelLease:
    return ModelLease(table, client=dynamodb, clock=clock)


def pointers(dynamodb: Any, table: str, owner: str) -> list[str]:
    page = dynamodb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"OWNER#{owner}"}},
    )
    return [i["model_key"]["S"] for i in page["Items"]]


def test_model_key() -> None:
    assert model_key("ws1", "m1") == "ws1/m1"
    with pytest.raises(ValueError, match="without '/'"):
        model_key("ws/1", "m1")


def test_two_owners_are_strictly_serialised(leases: ModelLease, clock: FakeClock) -> None:
    lease = leases.acquire(MODEL, A, 600)
    assert (lease.owner, lease.expires_at, lease.version) == (A, clock() + timedelta(seconds=600), 1)
    with pytest.raises(ModelLeaseHeld) as held:
        leases.acquire(MODEL, B, 600)
    assert isinstance(held.value, Transient)  # the ASL retries it
    assert A in str(held.value)
    assert "until 2025-04-03T06:10:00.000000Z" in str(held.value)
    assert B in str(held.value)

    clock.advance(599)
    with pytest.raises(ModelLeaseHeld):
        leases.acquire(MODEL, B, 600)
    assert leases.release(MODEL, A) is True
    taken = leases.acquire(MODEL, B, 600)
    assert (taken.owner, taken.displaced_owner) == (B, None)
    with pytest.raises(ModelLeaseHeld, match=r"held by .*exec-b"):
        leases.acquire(MODEL, A, 600)


def test_same_owner_reacquire_is_idempotent_and_extends(leases: ModelLease, clock: FakeClock) -> None:
    first = leases.acquire(MODEL, A, 60)
    clock.advance(45)
    again = leases.acquire(MODEL, A, 60)
    assert again.owner == A
    assert again.acquired_at == first.acquired_at
    assert again.expires_at == clock() + timedelta(seconds=60)
    assert again.version == 2
    stored = leases.get(MODEL)
    assert stored == again
    clock.advance(30)  # past the first expiry, within the extended one
    with pytest.raises(ModelLeaseHeld):
        leases.acquire(MODEL, B, 60)


def test_expired_lease_is_taken_over(leases: ModelLease, clock: FakeClock, dynamodb: Any, table: str) -> None:
    leases.acquire(MODEL, A, 60)
    clock.advance(60)  # at the expiry instant it is still held
    with pytest.raises(ModelLeaseHeld):
        leases.acquire(MODEL, B, 60)
    clock.advance(0.001)
    taken = leases.acquire(MODEL, B, 60)
    assert taken.owner == B
    assert taken.displaced_owner == A
    assert taken.displaced_expired_at == clock() - timedelta(milliseconds=1)  # when A expired
    assert pointers(dynamodb, table, A) == []  # removed in the takeover transaction
    assert pointers(dynamodb, table, B) == [MODEL]
    # the displaced owner can neither release nor renew it any more
    assert leases.release(MODEL, A) is False
    with pytest.raises(LeaseLost, match=r"held by .*exec-b"):
        leases.renew(MODEL, A, 60)
    assert leases.release_owned_by(A) == []
    current = leases.get(MODEL)
    assert current is not None
    assert current.owner == B
    # B re-acquiring keeps the record of whom it displaced
    assert leases.acquire(MODEL, B, 60).displaced_owner == A


def test_release_only_by_owner_and_idempotent(leases: ModelLease, dynamodb: Any, table: str) -> None:
    leases.acquire(MODEL, A, 60)
    assert leases.release(MODEL, B) is False
    current = leases.get(MODEL)
    assert current is not None
    assert current.owner == A
    assert leases.release(MODEL, A) is True
    assert leases.release(MODEL, A) is False
    assert leases.get(MODEL) is None
    assert pointers(dynamodb, table, A) == []
    assert leases.release("never/held", C) is False


def test_renew(leases: ModelLease, clock: FakeClock) -> None:
    leases.acquire(MODEL, A, 60)
    clock.advance(50)
    renewed = leases.renew(MODEL, A, 120)
    assert renewed.expires_at == clock() + timedelta(seconds=120)
    assert renewed.version == 2
    with pytest.raises(LeaseLost, match="exec-b cannot renew"):
        leases.renew(MODEL, B, 60)
    leases.release(MODEL, A)
    with pytest.raises(LeaseLost, match="held by nobody"):
        leases.renew(MODEL, A, 60)


def test_release_owned_by(leases: ModelLease, dynamodb: Any, table: str) -> None:
    leases.acquire("ws/m1", A, 60)
    leases.acquire("ws/m2", A, 60)
    leases.acquire("ws/m3", B, 60)
    assert sorted(leases.release_owned_by(A)) == ["ws/m1", "ws/m2"]
    assert leases.get("ws/m1") is None
    assert leases.get("ws/m2") is None
    m3 = leases.get("ws/m3")
    assert m3 is not None
    assert m3.owner == B
    assert leases.release_owned_by(A) == []
    assert pointers(dynamodb, table, A) == []
    leases.acquire("ws/m1", C, 60)  # free again


def test_ttl_attributes(leases: ModelLease, dynamodb: Any, table: str, clock: FakeClock) -> None:
    leases.acquire(MODEL, A, 60)
    item = dynamodb.get_item(TableName=table, Key={"pk": {"S": f"LEASE#{MODEL}"}, "sk": {"S": "LEASE"}})[
        "Item"
    ]
    now = int(clock().timestamp())
    assert Decimal(item["expires_at"]["N"]) == now + 60
    assert item["ttl"] == {"N": str(now + 60 + 86400)}
    assert item["expires_at_iso"] == {"S": "2025-04-03T06:01:00.000000Z"}


def test_bad_arguments(leases: ModelLease) -> None:
    with pytest.raises(ValueError, match="positive int"):
        leases.acquire(MODEL, A, 0)
    with pytest.raises(ValueError, match="non-empty"):
        leases.acquire(MODEL, "", 10)


# --- races ------------------------------------------------------------------------------------------------


def _race(leases: ModelLease, key: str, owners: list[str], ttl: int) -> tuple[list[str], list[BaseException]]:
    barrier = threading.Barrier(len(owners))
    winners: list[str] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def contend(owner: str) -> None:
        barrier.wait()
        try:
            leases.acquire(key, owner, ttl)
        except BaseException as exc:
            with guard:
                errors.append(exc)
        else:
            with guard:
                winners.append(owner)

    threads = [threading.Thread(target=contend, args=(o,)) for o in owners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    return winners, errors


@pytest.mark.usefixtures("atomic_moto")
def test_racing_acquires_exactly_one_wins(dynamodb: Any, table: str) -> None:
    leases = ModelLease(table, client=dynamodb)
    owners = [f"arn:aws:states:us-east-1:123456789012:execution:sm:exec-{i}" for i in range(8)]
    for round_ in range(6):
        key = f"ws/race-{round_}"
        winners, errors = _race(leases, key, owners, 600)
        assert len(winners) == 1, (winners, errors)
        assert len(errors) == len(owners) - 1
        assert all(isinstance(e, ModelLeaseHeld) for e in errors), errors
        current = leases.get(key)
        assert current is not None
        assert current.owner == winners[0]


@pytest.mark.usefixtures("atomic_moto")
def test_racing_takeover_of_expired_lease(dynamodb: Any, table: str, clock: FakeClock) -> None:
    leases = ModelLease(table, client=dynamodb, clock=clock)
    owners = [f"exec-{i}" for i in range(6)]
    for round_ in range(4):
        key = f"ws/expired-{round_}"
        leases.acquire(key, "exec-dead", 30)
        clock.advance(31)
        winners, errors = _race(leases, key, owners, 600)
        assert len(winners) == 1, (winners, errors)
        assert all(isinstance(e, ModelLeaseHeld) for e in errors), errors
        current = leases.get(key)
        assert current is not None
        assert (current.owner, current.displaced_owner) == (winners[0], "exec-dead")


@pytest.mark.usefixtures("atomic_moto")
def test_critical_sections_never_overlap(dynamodb: Any, table: str) -> None:
    """Workers loop acquire -> work -> release; at most one is ever inside, and every worker gets in."""
    leases = ModelLease(table, client=dynamodb)
    inside = 0
    max_inside = 0
    entries: dict[str, int] = {}
    problems: list[str] = []
    guard = threading.Lock()

    def worker(owner: str) -> None:
        nonlocal inside, max_inside
        done = 0
        for _ in range(400):
            if done == 3:
                return
            try:
                leases.acquire("ws/shared", owner, 600)
            except ModelLeaseHeld:
                continue
            with guard:
                inside += 1
                max_inside = max(max_inside, inside)
            current = leases.get("ws/shared")  # work while holding it: nobody else may own it now
            if current is None or current.owner != owner:
                problems.append(f"{owner} inside but the lease says {current}")
            with guard:
                inside -= 1
                entries[owner] = entries.get(owner, 0) + 1
            done += 1
            if not leases.release("ws/shared", owner):
                problems.append(f"{owner} could not release")

    threads = [threading.Thread(target=worker, args=(f"exec-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=25)
    assert problems == []
    assert max_inside == 1
    assert entries == {f"exec-{i}": 3 for i in range(4)}
