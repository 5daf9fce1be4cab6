"""Everything a step needs for one invocation: configuration, resource names, clients and the ledger."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from d365_anaplan.config import ConnectionConfig
from d365_anaplan.ledger.audit import RunLedger
from d365_anaplan.ledger.lease import ModelLease
from d365_anaplan.request_metrics import ResponseCounts, count_responses
from d365_anaplan.runtime import Settings, load_connection, run_id_of, s3, settings
from d365_anaplan.secrets import SecretResolver
from d365_anaplan.staging import run_key

if TYPE_CHECKING:
    from d365_anaplan.anaplan.client import AnaplanClient
    from d365_anaplan.dynamics.client import DynamicsConnection


@dataclass
class StepContext:
    """One invocation's view of its run. ``remaining_ms`` is the Lambda context's clock."""

    connection: str
    execution: str
    remaining_ms: Callable[[], int] = field(default=lambda: 900_000)
    # answers per system ("anaplan", "dynamics") of the clients this invocation created (request_metrics)
    responses: dict[str, ResponseCounts] = field(default_factory=dict)

    @cached_property
    def cfg(self) -> ConnectionConfig:
        return load_connection(self.connection)

    @cached_property
    def env(self) -> Settings:
        return settings()

    @property
    def run_id(self) -> str:
        return run_id_of(self.execution)

    @cached_property
    def ledger(self) -> RunLedger:
        return RunLedger(self.env.ledger_table)

    @cached_property
    def leases(self) -> ModelLease:
        return ModelLease(self.env.ledger_table)

    @cached_property
    def s3(self) -> Any:
        return s3()

    @cached_property
    def resolver(self) -> SecretResolver:
        return SecretResolver(allow_local=False)

    def key(self, step: str, name: str) -> str:
        return run_key(self.connection, self.run_id, step, name)

    @cached_property
    def anaplan(self) -> AnaplanClient:
        from d365_anaplan.anaplan.client import AnaplanClient
        from d365_anaplan.ledger.tokens import DynamoDBTokenCache

        cache = DynamoDBTokenCache(self.env.ledger_table, kms_key_id=self.env.kms_key_id)
        client = AnaplanClient.from_config(self.cfg, resolver=self.resolver, token_cache=cache)
        self.responses["anaplan"] = count_responses(client.session)
        return client

    @cached_property
    def dynamics(self) -> DynamicsConnection:
        from d365_anaplan.dynamics.client import connect
        from d365_anaplan.ledger.throttle import SharedThrottle
        from d365_anaplan.urls import parse_base_url

        host = parse_base_url(self.cfg.dynamics.environment_url).authority  # host[:port], one per environment
        conn = connect(
            self.cfg,
            self.resolver,
            remaining_time=lambda: self.remaining_ms() / 1000,
            throttle=SharedThrottle(self.env.ledger_table, host),
        )
        self.responses["dynamics"] = count_responses(conn.session)
        return conn
