"""Fixtures of the ledger tests: moto DynamoDB/KMS, the ledger table, a settable clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from ledger_support import LEDGER_TABLE, FakeClock, create_ledger_table
from moto import mock_aws
from moto.core.responses import BaseResponse


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


def _client(service: str) -> Any:
    return boto3.client(
        service, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


@pytest.fixture(scope="session")
def _dynamodb_client() -> Any:
    """Creating a client costs ~0.3 s; one per session is reused by every test's fresh ``mock_aws``."""
    return _client("dynamodb")


@pytest.fixture(scope="session")
def _kms_client() -> Any:
    return _client("kms")


@pytest.fixture
def dynamodb(aws: None, _dynamodb_client: Any) -> Any:
    return _dynamodb_client


@pytest.fixture
def kms(aws: None, _kms_client: Any) -> Any:
    return _kms_client


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
