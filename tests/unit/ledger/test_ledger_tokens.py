"""DynamoDB token cache: KMS-encrypted at rest, bound to its connection, expiring, with a refresh lock."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from ledger_support import FakeClock

from d365_anaplan.anaplan.tokens import CachedToken, TokenCache, cache_key
from d365_anaplan.errors import ConfigError
from d365_anaplan.ledger.tokens import DynamoDBTokenCache, connection_of, encryption_context

SECRET_VALUE = "c2VjcmV0LWFuYXBsYW4tdG9rZW4tdmFsdWU="


@pytest.fixture
def key_id(kms: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    key: str = kms.create_key(Description="connector key")["KeyMetadata"]["KeyId"]
    monkeypatch.setenv("KMS_KEY_ID", key)
    return key


@pytest.fixture
def cache(dynamodb: Any, table: str, kms: Any, key_id: str, clock: FakeClock) -> DynamoDBTokenCache:
    return DynamoDBTokenCache(table, client=dynamodb, kms_client=kms, clock=clock)


def token(value: str = SECRET_VALUE) -> CachedToken:
    return CachedToken(
        value=value, expires_at=1_743_663_600_000, refresh_token_id="rt-1", minted_at=1_743_660_000_000
    )


KEY = cache_key("acme", "https://auth.anaplan.com", "integration@acme.example")


def test_conforms_to_the_protocol(cache: DynamoDBTokenCache) -> None:
    assert isinstance(cache, TokenCache)


def test_round_trip_encrypted_at_rest(cache: DynamoDBTokenCache, dynamodb: Any, table: str, kms: Any) -> None:
    assert cache.get(KEY) is None
    cache.put(KEY, token(), 1800)
    assert cache.get(KEY) == token()

    item = dynamodb.get_item(TableName=table, Key={"pk": {"S": f"TOKEN#{KEY}"}, "sk": {"S": "TOKEN"}})["Item"]
    ciphertext = item["ciphertext"]["B"]
    assert SECRET_VALUE.encode() not in ciphertext
    assert SECRET_VALUE not in repr(item)
    assert "rt-1" not in repr(item)
    assert item["connection"] == {"S": "acme"}
    assert item["expires_at"] == {"N": "1743663600000"}
    # the ciphertext only decrypts with the encryption context naming the connection
    plain = kms.decrypt(CiphertextBlob=ciphertext, EncryptionContext=encryption_context(KEY))["Plaintext"]
    assert SECRET_VALUE.encode() in plain
    with pytest.raises(ClientError, match="InvalidCiphertext"):
        kms.decrypt(
            CiphertextBlob=ciphertext, EncryptionContext={**encryption_context(KEY), "connection": "other"}
        )


def test_ciphertext_moved_to_another_connection_is_a_miss(
    cache: DynamoDBTokenCache, dynamodb: Any, table: str
) -> None:
    cache.put(KEY, token(), 1800)
    other = cache_key("other", "https://auth.anaplan.com", "integration@acme.example")
    item = dynamodb.get_item(TableName=table, Key={"pk": {"S": f"TOKEN#{KEY}"}, "sk": {"S": "TOKEN"}})["Item"]
    dynamodb.put_item(TableName=table, Item={**item, "pk": {"S": f"TOKEN#{other}"}})
    assert cache.get(other) is None
    assert cache.get(KEY) == token()


def test_entries_expire_and_are_replaced(
    cache: DynamoDBTokenCache, clock: FakeClock, dynamodb: Any, table: str
) -> None:
    cache.put(KEY, token(), 60)
    item = dynamodb.get_item(TableName=table, Key={"pk": {"S": f"TOKEN#{KEY}"}, "sk": {"S": "TOKEN"}})["Item"]
    assert int(item["ttl"]["N"]) == int(clock().timestamp()) + 61
    clock.advance(59)
    assert cache.get(KEY) is not None
    clock.advance(1)
    assert cache.get(KEY) is None  # TTL deletion is lazy: the cache checks the time itself
    cache.put(KEY, token("bmV3LXRva2Vu"), 60)
    fresh = cache.get(KEY)
    assert fresh is not None
    assert fresh.value == "bmV3LXRva2Vu"


def test_refresh_lock(cache: DynamoDBTokenCache, clock: FakeClock) -> None:
    assert cache.try_lock(KEY, "lambda-a", 30) is True
    assert cache.try_lock(KEY, "lambda-b", 30) is False
    assert cache.try_lock(KEY, "lambda-a", 30) is True  # same owner: held (and extended)
    cache.unlock(KEY, "lambda-b")  # not the owner: no effect, no error
    assert cache.try_lock(KEY, "lambda-b", 30) is False
    cache.unlock(KEY, "lambda-a")
    assert cache.try_lock(KEY, "lambda-b", 30) is True
    clock.advance(31)  # lambda-b died holding it: the lock expires
    assert cache.try_lock(KEY, "lambda-c", 30) is True
    assert cache.try_lock(KEY, "lambda-b", 30) is False
    cache.unlock("never-locked", "x")  # no error
    assert cache.get(KEY) is None  # the lock item is not a token


def test_needs_a_kms_key(dynamodb: Any, table: str, kms: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KMS_KEY_ID", raising=False)
    cache = DynamoDBTokenCache(table, client=dynamodb, kms_client=kms)
    with pytest.raises(ConfigError, match="KMS_KEY_ID"):
        cache.put(KEY, token(), 60)


def test_connection_of() -> None:
    assert connection_of(KEY) == "acme"
    assert connection_of("anaplan-token#with-dash#abc") == "with-dash"
    assert connection_of("plain-key") == "plain-key"
