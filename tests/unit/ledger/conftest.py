"""Fixtures of the ledger tests: moto DynamoDB/KMS, the ledger and idempotency tables, a settable clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.responses import BaseResponse

LEDGER_TABLE = "LedgerTable"
IDEMPOTENCY_TABLE = "IdempotencyTable"


class FakeClock:
    """A clock the test moves by hand (timezone-aware UTC)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def create_ledger_table(client: Any, name: str = LEDGER_TABLE) -> None:
    """The same key schema as ``LedgerTable`` in template.yaml."""
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "gsi1pk", "gsi1sk")
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-connection",
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    client.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
    )


def create_idempotency_table(client: Any, name: str = IDEMPOTENCY_TABLE) -> None:
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    client.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"}
    )


@pytest.fixture(autouse=True)
def _fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def dynamodb(aws: None) -> Any:
    return boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def table(dynamodb: Any) -> str:
    create_ledger_table(dynamodb)
    return LEDGER_TABLE


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2025, 4, 3, 6, 0, 0, tzinfo=UTC))


@pytest.fixture
def atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make each moto API call atomic, as each DynamoDB request is atomic in AWS.

    moto's in-memory backend checks a condition and then writes without a lock, so threads racing inside
    one moto call can both pass a condition that DynamoDB would let only one pass. Serialising whole calls
    restores DynamoDB's per-request atomicity; everything between two calls (our read-then-conditional-write
    sequences) still interleaves freely across threads, which is what the race tests exercise.
    """
    lock = threading.RLock()
    original = BaseResponse.call_action

    def call_action(self: BaseResponse) -> Any:
        with lock:
            return original(self)

    monkeypatch.setattr(BaseResponse, "call_action", call_action)
