"""Powertools idempotency through our factory, on a moto idempotency table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import idempotent, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyKeyError
from ledger_support import IDEMPOTENCY_TABLE, create_idempotency_table

from d365_anaplan.errors import ConfigError
from d365_anaplan.ledger.idempotency import (
    DEFAULT_EXPIRY_SECONDS,
    idempotency_config,
    idempotency_key,
    persistence_layer,
)

EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:actuals:exec-1"


@dataclass
class FakeContext:
    function_name: str = "d365-anaplan-start-import"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:d365-anaplan-start-import"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture
def store(dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    create_idempotency_table(dynamodb)
    monkeypatch.setenv("IDEMPOTENCY_TABLE", IDEMPOTENCY_TABLE)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "d365-anaplan-start-import")
    return persistence_layer(client=dynamodb)


def event(state: str = "StartImport", item: int | None = None, **extra: Any) -> dict[str, Any]:
    return {"idempotency": idempotency_key(EXECUTION, state, item), "connection": "acme", **extra}


def test_second_invocation_with_same_key_reuses_the_result(store: Any, dynamodb: Any) -> None:
    calls: list[str] = []

    @idempotent(config=idempotency_config("idempotency"), persistence_store=store)
    def handler(evt: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(evt["connection"])
        return {"task_id": f"T-{len(calls)}"}

    first = handler(event(), FakeContext())
    # a Step Functions Retry / redrive sends the same input again (other fields may differ, the key does not)
    again = handler(event(attempt=2), FakeContext())
    assert first == again == {"task_id": "T-1"}
    assert calls == ["acme"]

    # another state, or another Map item, is another key
    assert handler(event("StartExport"), FakeContext()) == {"task_id": "T-2"}
    assert handler(event("StartImport", item=0), FakeContext()) == {"task_id": "T-3"}
    assert handler(event("StartImport", item=1), FakeContext()) == {"task_id": "T-4"}
    assert handler(event("StartImport", item=1), FakeContext()) == {"task_id": "T-4"}
    assert len(calls) == 4

    items = dynamodb.scan(TableName=IDEMPOTENCY_TABLE)["Items"]
    assert len(items) == 4
    assert {i["status"]["S"] for i in items} == {"COMPLETED"}
    now = int(datetime.now(UTC).timestamp())
    assert all(abs(int(i["expiration"]["N"]) - (now + DEFAULT_EXPIRY_SECONDS)) < 60 for i in items)


def test_a_raising_invocation_can_be_retried(store: Any) -> None:
    attempts: list[int] = []

    @idempotent(config=idempotency_config(), persistence_store=store)
    def handler(evt: dict[str, Any], context: Any) -> dict[str, Any]:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("Anaplan busy")
        return {"ok": True, "attempts": len(attempts)}

    with pytest.raises(RuntimeError, match="Anaplan busy"):
        handler(event(), FakeContext())
    assert handler(event(), FakeContext()) == {"ok": True, "attempts": 2}
    assert handler(event(), FakeContext()) == {"ok": True, "attempts": 2}
    assert len(attempts) == 2


def test_idempotent_function_with_registered_context(store: Any) -> None:
    config = idempotency_config("idempotency", expires_after_seconds=3600)
    runs: list[str] = []

    @idempotent_function(data_keyword_argument="payload", config=config, persistence_store=store)
    def post_journal(payload: dict[str, Any]) -> dict[str, str]:
        runs.append("posted")
        return {"batch": "00042"}

    config.register_lambda_context(FakeContext())
    assert post_journal(payload=event("PostJournal")) == {"batch": "00042"}
    assert post_journal(payload=event("PostJournal")) == {"batch": "00042"}
    assert runs == ["posted"]


def test_missing_key_is_an_error(store: Any) -> None:
    @idempotent(config=idempotency_config(), persistence_store=store)
    def handler(evt: dict[str, Any], context: Any) -> str:
        return "ran"

    with pytest.raises(IdempotencyKeyError):
        handler({"connection": "acme"}, FakeContext())


def test_factory_settings(monkeypatch: pytest.MonkeyPatch, dynamodb: Any) -> None:
    monkeypatch.delenv("IDEMPOTENCY_TABLE", raising=False)
    with pytest.raises(ConfigError, match="IDEMPOTENCY_TABLE"):
        persistence_layer(client=dynamodb)
    assert persistence_layer("Explicit", client=dynamodb).table_name == "Explicit"
    monkeypatch.setenv("IDEMPOTENCY_TABLE", "FromEnv")
    layer = persistence_layer(client=dynamodb)
    assert (layer.table_name, layer.key_attr, layer.expiry_attr) == ("FromEnv", "id", "expiration")
    config = idempotency_config("[execution, state]", expires_after_seconds=7 * 24 * 3600)
    assert config.event_key_jmespath == "[execution, state]"
    assert config.expires_after_seconds == 7 * 24 * 3600
    assert config.raise_on_no_idempotency_key is True
    assert idempotency_key("e", "s") == {"execution": "e", "state": "s"}
    assert idempotency_key("e", "s", 0) == {"execution": "e", "state": "s", "item": 0}
    with pytest.raises(ValueError, match="positive"):
        idempotency_config(expires_after_seconds=0)
