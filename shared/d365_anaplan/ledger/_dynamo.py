"""Low-level helpers shared by the ledger modules: lazy clients, value conversion, time formatting.

Values go to DynamoDB through :class:`boto3.dynamodb.types.TypeSerializer`; numbers must be ``int`` or
``Decimal`` (a ``float`` is refused with the path of the offending field, never silently rounded), datetimes
become ISO-8601 UTC strings. Values read back are plain Python with numbers as ``Decimal``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from d365_anaplan.errors import ConfigError

Clock = Callable[[], datetime]
Item = dict[str, Any]  # DynamoDB wire format: {"attr": {"S": "..."}}

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

LEDGER_TABLE_ENV = "LEDGER_TABLE"


def ledger_table_from_env() -> str:
    """The ledger table name from env ``LEDGER_TABLE`` (ConfigError when unset)."""
    name = os.environ.get(LEDGER_TABLE_ENV, "")
    if not name:
        raise ConfigError([f"{LEDGER_TABLE_ENV}: environment variable is not set"], "ledger")
    return name


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Fixed-width ISO-8601 UTC (sorts lexicographically): ``2025-03-04T05:06:07.000008Z``."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: the ledger needs timezone-aware times")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def epoch(moment: datetime) -> Decimal:
    """Seconds since the epoch with microsecond precision, as a DynamoDB Number (exact, no float)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: the ledger needs timezone-aware times")
    micros = (moment - _EPOCH) // _MICRO
    return Decimal(micros).scaleb(-6)


def epoch_seconds(moment: datetime) -> int:
    """Whole seconds since the epoch (DynamoDB TTL attributes must be whole seconds)."""
    return int(epoch(moment))


def from_epoch(value: Decimal | int) -> datetime:
    micros = int(Decimal(value).scaleb(6))
    return _EPOCH + timedelta(microseconds=micros)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def plain(value: Any, path: str = "value") -> Any:
    """Convert a Python value into something :class:`TypeSerializer` accepts, refusing floats."""
    if value is None or isinstance(value, bool | str | bytes | bytearray | Decimal):
        if isinstance(value, Decimal) and not value.is_finite():
            raise TypeError(f"{path}: {value} is not a finite number; DynamoDB cannot store it")
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        raise TypeError(
            f"{path}: float {value!r} refused; pass decimal.Decimal (parse JSON with parse_float=Decimal)"
        )
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, set | frozenset):
        return [plain(v, f"{path}[]") for v in sorted(value, key=str)]
    raise TypeError(f"{path}: {type(value).__name__} cannot be stored in the ledger")


def to_attr(value: Any, path: str = "value") -> dict[str, Any]:
    result: dict[str, Any] = _serializer.serialize(plain(value, path))
    return result


def to_item(values: Mapping[str, Any]) -> Item:
    """A whole item in wire format; ``None`` values are left out."""
    return {k: to_attr(v, k) for k, v in values.items() if v is not None}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def cancellation_codes(exc: BaseException) -> list[str]:
    """Per-item reasons of a ``TransactionCanceledException`` (``"None"`` for items that were fine)."""
    response = getattr(exc, "response", None)
    reasons = response.get("CancellationReasons", []) if isinstance(response, dict) else []
    return [str(r.get("Code", "None")) for r in reasons]


class LazyClient:
    """A boto3 client created on first use (never at import time), or the one injected by a test."""

    def __init__(self, service: str, client: Any = None) -> None:
        self._service = service
        self._client = client
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3

                    self._client = boto3.client(self._service)
        return self._client


class TableItems:
    """Base of a ledger item store: the table's name, a lazily created (or injected) client and a clock."""

    def __init__(self, table_name: str, *, client: Any = None, clock: Clock | None = None) -> None:
        if not table_name:
            raise ValueError("table_name must be a non-empty string")
        self.table_name = table_name
        self._client = LazyClient("dynamodb", client)
        self._clock = clock or utc_now

    @property
    def client(self) -> Any:
        return self._client.get()


TRANSACT_MAX = 100  # items per TransactWriteItems request (the DynamoDB limit)


def put_all(client: Any, table_name: str, items: Iterable[Item]) -> int:
    """Put items in transactions of at most :data:`TRANSACT_MAX`, never ``BatchWriteItem``: IAM cannot tell a
    batch put from a batch delete, and the functions that write ledger items must not be able to delete them
    (template.yaml grants PutItem only). Each item's key must be unique within the call. Returns the count."""
    batch: list[dict[str, Any]] = []
    written = 0
    for item in items:
        batch.append({"Put": {"TableName": table_name, "Item": item}})
        if len(batch) == TRANSACT_MAX:
            client.transact_write_items(TransactItems=batch)
            written += len(batch)
            batch = []
    if batch:
        client.transact_write_items(TransactItems=batch)
        written += len(batch)
    return written


def query_all(client: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Every item of a query, following ``LastEvaluatedKey``; items are deserialised."""
    items: list[dict[str, Any]] = []
    while True:
        page = client.query(**kwargs)
        items.extend(from_item(i) for i in page.get("Items", []))
        last = page.get("LastEvaluatedKey")
        if not last:
            return items
        kwargs["ExclusiveStartKey"] = last
