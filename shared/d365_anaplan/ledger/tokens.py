"""A shared, KMS-encrypted Anaplan token cache in the ledger table.

Implements :class:`d365_anaplan.anaplan.tokens.TokenCache` so every Lambda of a run (and of concurrent runs
of the same connection) reuses one Anaplan auth token instead of authenticating per invocation.

Items (ledger table):

* token ``pk = TOKEN#<key>``, ``sk = TOKEN``: ``ciphertext`` (Binary: the whole :class:`CachedToken` as
  JSON, encrypted with ``kms.encrypt`` under env ``KMS_KEY_ID``), ``expires_at`` (the token's own expiry,
  epoch ms, plain: not secret), ``valid_until`` (epoch seconds: the cache entry's end), ``ttl``.
* refresh lock ``pk = TOKEN#<key>``, ``sk = LOCK``: ``owner``, ``expires_at`` (epoch seconds), ``ttl``;
  taken with a conditional put ``attribute_not_exists(pk) OR expires_at < :now OR owner = :me``.

The KMS encryption context is ``{"purpose": "anaplan-token", "connection": <connection>, "cache_key": <key>}``
(the connection is read from keys made by :func:`d365_anaplan.anaplan.tokens.cache_key`), so a ciphertext
copied to another item or another connection does not decrypt, and CloudTrail shows which connection's
token was decrypted. The token value never appears in logs, errors or ``repr``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from d365_anaplan.anaplan.tokens import CachedToken, TokenCache
from d365_anaplan.errors import ConfigError
from d365_anaplan.ledger._dynamo import (
    Clock,
    LazyClient,
    LedgerTable,
    epoch,
    epoch_seconds,
    error_code,
    iso,
    ledger_table_from_env,
    to_attr,
)
from d365_anaplan.ledger._expr import Update

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient

KMS_KEY_ENV = "KMS_KEY_ID"
TOKEN_PREFIX = "anaplan-token#"  # noqa: S105  (a key prefix, not a secret)
_UNREADABLE = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})


def connection_of(key: str) -> str:
    """The connection named in a cache key ``anaplan-token#<connection>#<digest>`` (else the key itself)."""
    if key.startswith(TOKEN_PREFIX):
        rest = key[len(TOKEN_PREFIX) :]
        connection, sep, _digest = rest.rpartition("#")
        if sep and connection:
            return connection
    return key


def encryption_context(key: str) -> dict[str, str]:
    return {"purpose": "anaplan-token", "connection": connection_of(key), "cache_key": key}


class DynamoDBTokenCache(LedgerTable):
    """:class:`TokenCache` on DynamoDB; values encrypted directly with KMS (tokens are far below its 4 KiB limit)."""

    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient | None = None,
        kms_client: KMSClient | None = None,
        kms_key_id: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(table_name, client=client, clock=clock)
        self._kms = LazyClient["KMSClient"]("kms", kms_client)
        self._kms_key_id = kms_key_id

    @classmethod
    def from_env(
        cls,
        *,
        client: DynamoDBClient | None = None,
        kms_client: KMSClient | None = None,
        clock: Clock | None = None,
    ) -> DynamoDBTokenCache:
        """On the table named by env ``LEDGER_TABLE``, encrypting under env ``KMS_KEY_ID``."""
        return cls(ledger_table_from_env(), client=client, kms_client=kms_client, clock=clock)

    @property
    def kms_key_id(self) -> str:
        key_id = self._kms_key_id or os.environ.get(KMS_KEY_ENV, "")
        if not key_id:
            raise ConfigError([f"{KMS_KEY_ENV}: environment variable is not set"], "token cache")
        return key_id

    @staticmethod
    def _key(key: str, sk: str) -> dict[str, Any]:
        if not key:
            raise ValueError("token cache: key must be non-empty")
        return {"pk": {"S": f"TOKEN#{key}"}, "sk": {"S": sk}}

    # --- tokens ---------------------------------------------------------------------------------------------

    def get(self, key: str) -> CachedToken | None:
        response = self.client.get_item(
            TableName=self.table_name, Key=self._key(key, "TOKEN"), ConsistentRead=True
        )
        item = response.get("Item")
        if not item:
            return None
        if epoch(self._clock()) >= epoch_value(item.get("valid_until")):
            return None  # DynamoDB TTL deletes lazily; the entry is over already
        try:
            plaintext = self._kms.get().decrypt(
                CiphertextBlob=item["ciphertext"]["B"],
                EncryptionContext=encryption_context(key),
                KeyId=self.kms_key_id,
            )["Plaintext"]
        except ClientError as exc:
            if error_code(exc) in _UNREADABLE:
                return None  # unreadable entry (other key/context): treat as a miss, it will be overwritten
            raise
        return CachedToken.model_validate_json(plaintext)

    def put(self, key: str, token: CachedToken, ttl_seconds: int) -> None:
        now = self._clock()
        until = now + timedelta(seconds=max(ttl_seconds, 0))
        ciphertext = self._kms.get().encrypt(
            KeyId=self.kms_key_id,
            Plaintext=token.model_dump_json().encode("utf-8"),
            EncryptionContext=encryption_context(key),
        )["CiphertextBlob"]
        self.client.put_item(
            TableName=self.table_name,
            Item={
                **self._key(key, "TOKEN"),
                "type": {"S": "TOKEN"},
                "connection": {"S": connection_of(key)},
                "ciphertext": {"B": ciphertext},
                "expires_at": to_attr(token.expires_at),
                "valid_until": to_attr(epoch(until)),
                "updated_at": {"S": iso(now)},
                "ttl": to_attr(epoch_seconds(until) + 1),
            },
        )

    # --- refresh lock ---------------------------------------------------------------------------------------

    def try_lock(self, key: str, owner: str, ttl_seconds: int) -> bool:
        if not owner:
            raise ValueError("token cache: lock owner must be non-empty")
        now = self._clock()
        until = now + timedelta(seconds=max(ttl_seconds, 0))
        free = Update()
        expires, held_by = free.name("expires_at"), free.name("owner")
        free.where(
            f"attribute_not_exists({free.name('pk')}) OR {expires} < {free.value(epoch(now))} "
            f"OR {held_by} = {free.value(owner)}"
        )
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={
                    **self._key(key, "LOCK"),
                    "type": {"S": "TOKEN_LOCK"},
                    "owner": {"S": owner},
                    "expires_at": to_attr(epoch(until)),
                    "updated_at": {"S": iso(now)},
                    "ttl": to_attr(epoch_seconds(until) + 3600),
                },
                **free.condition_args(),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def unlock(self, key: str, owner: str) -> None:
        mine = Update()
        mine.where(f"{mine.name('owner')} = {mine.value(owner)}")
        try:
            self.client.delete_item(
                TableName=self.table_name, Key=self._key(key, "LOCK"), **mine.condition_args()
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise


def epoch_value(attr: Any) -> Decimal:
    """The Decimal of a wire-format Number attribute (0 when absent)."""
    if not attr or "N" not in attr:
        return Decimal(0)
    return Decimal(attr["N"])


def _conforms(cache: DynamoDBTokenCache) -> TokenCache:
    return cache  # mypy checks structural conformance to the Protocol here
