"""The F&O environment's shared throttle record (ledger/throttle.py): one 429 holds every worker."""

from __future__ import annotations

from typing import Any

from ledger_support import LEDGER_TABLE

from d365_anaplan.ledger.throttle import SharedThrottle, throttle_pk


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_429_reported_by_one_worker_makes_the_others_wait(dynamodb: Any, table: str) -> None:
    clock = Clock()
    a = SharedThrottle(LEDGER_TABLE, "Contoso.Operations.Dynamics.com", client=dynamodb, clock=clock)
    b = SharedThrottle(LEDGER_TABLE, "contoso.operations.dynamics.com", client=dynamodb, clock=clock)
    assert b.pause_seconds() == 0.0
    a.throttled(30)
    assert b.pause_seconds() == 30.0
    clock.now += 12.5
    assert b.pause_seconds() == 17.5
    clock.now += 20
    assert b.pause_seconds() == 0.0


def test_a_shorter_wait_never_shortens_a_longer_one(dynamodb: Any, table: str) -> None:
    clock = Clock()
    t = SharedThrottle(LEDGER_TABLE, "env.example", client=dynamodb, clock=clock)
    t.throttled(60)
    t.throttled(5)
    assert t.pause_seconds() == 60.0
    t.throttled(90)
    assert t.pause_seconds() == 90.0
    item = dynamodb.get_item(
        TableName=LEDGER_TABLE, Key={"pk": {"S": throttle_pk("env.example")}, "sk": {"S": "THROTTLE"}}
    )["Item"]
    assert item["hits"]["N"] == "2", "the reports that moved the wait"
    assert int(item["ttl"]["N"]) > clock.now + 90


def test_environments_are_throttled_apart(dynamodb: Any, table: str) -> None:
    clock = Clock()
    SharedThrottle(LEDGER_TABLE, "one.example", client=dynamodb, clock=clock).throttled(30)
    assert SharedThrottle(LEDGER_TABLE, "two.example", client=dynamodb, clock=clock).pause_seconds() == 0.0
