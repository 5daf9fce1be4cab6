"""Idempotency for handlers whose effects must not repeat (start an Anaplan action, post a journal, ...).

A thin factory around Powertools Idempotency with the separate idempotency table (partition key ``id``, TTL
attribute ``expiration``; env ``IDEMPOTENCY_TABLE``).

How to key it
-------------
Step Functions re-invokes a Lambda with the *same input* on ``Retry`` and on a console/API *redrive*
(same execution ARN), but a *replay* is a new execution. So key the stored result on the execution and the
state, which the state passes in its payload::

    "Parameters": {
      "idempotency": {
        "execution.$": "$$.Execution.Id",
        "state.$": "$$.State.Name",
        "item.$": "$$.Map.Item.Index"          <- only inside a Map iteration
      },
      "connection.$": "$.connection", ...
    }

and use ``idempotency_config("idempotency")`` (the default :data:`DEFAULT_KEY_JMESPATH`). Then:

* a Retry or a redrive of the same state in the same execution gets the stored result without running the
  body again (the Anaplan action is not started twice);
* a Map item index keeps iterations apart; without it every iteration would get the first one's result;
* an invocation that *raised* leaves no record (Powertools deletes it), so Retry/redrive re-run failed work;
* a replay (new execution) runs everything again, deliberately.

Do not put ``$$.State.EnteredTime`` or ``$$.State.RetryCount`` in the key: they change on every attempt.
Add ``payload_validation_jmespath`` to fail loudly if the same key ever arrives with different content.

With ``@idempotent_function`` (not the ``@idempotent`` handler decorator) call
``config.register_lambda_context(context)`` in the handler, otherwise an invocation that is killed
(timeout, OOM) leaves an INPROGRESS record that blocks retries until ``expires_after_seconds``.

The expiry must outlive the longest possible gap between a failure and its redrive (redrive is allowed for
14 days), hence the default of 15 days here and DynamoDB TTL on ``expiration``.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig

from d365_anaplan.errors import ConfigError

IDEMPOTENCY_TABLE_ENV = "IDEMPOTENCY_TABLE"
DEFAULT_KEY_JMESPATH = "idempotency"
DEFAULT_EXPIRY_SECONDS = 15 * 24 * 3600  # redrive is possible for 14 days after an execution ends


def idempotency_key(execution_id: str, state_name: str, item_index: int | None = None) -> dict[str, Any]:
    """The payload fragment the ASL builds (for tests and for handlers invoked outside Step Functions)."""
    key: dict[str, Any] = {"execution": execution_id, "state": state_name}
    if item_index is not None:
        key["item"] = item_index
    return key


def idempotency_config(
    key_jmespath: str = DEFAULT_KEY_JMESPATH,
    expires_after_seconds: int = DEFAULT_EXPIRY_SECONDS,
    *,
    payload_validation_jmespath: str = "",
    use_local_cache: bool = False,
) -> IdempotencyConfig:
    """An ``IdempotencyConfig`` keyed on ``key_jmespath``; a payload without that key is an error.

    ``raise_on_no_idempotency_key`` is on: a state that forgot to pass the key must fail, not silently run
    without protection.
    """
    if expires_after_seconds <= 0:
        raise ValueError(f"expires_after_seconds must be positive, got {expires_after_seconds}")
    config: IdempotencyConfig = IdempotencyConfig(
        event_key_jmespath=key_jmespath,
        payload_validation_jmespath=payload_validation_jmespath,
        raise_on_no_idempotency_key=True,
        expires_after_seconds=expires_after_seconds,
        use_local_cache=use_local_cache,
    )
    return config


def persistence_layer(table_name: str | None = None, *, client: Any = None) -> DynamoDBPersistenceLayer:
    """The Powertools DynamoDB persistence layer on ``table_name`` or env ``IDEMPOTENCY_TABLE``.

    Creates a boto3 client (Powertools does so in its constructor) unless ``client`` is given: call this
    in the handler module, not in library code imported by other modules.
    """
    name = table_name or os.environ.get(IDEMPOTENCY_TABLE_ENV, "")
    if not name:
        raise ConfigError([f"{IDEMPOTENCY_TABLE_ENV}: environment variable is not set"], "idempotency")
    layer: DynamoDBPersistenceLayer = DynamoDBPersistenceLayer(table_name=name, boto3_client=client)
    return layer
