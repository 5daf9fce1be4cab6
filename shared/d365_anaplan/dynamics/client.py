"""Wiring: one :class:`DynamicsConnection` (token provider, OData client, reader, journal writer) per
connection configuration. Handlers call :func:`connect` and use ``.reader`` / ``.writer``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from d365_anaplan.config import ConnectionConfig
from d365_anaplan.dynamics.auth import TokenProvider, credential_from_settings, provider_for
from d365_anaplan.dynamics.journal import JournalWriter
from d365_anaplan.dynamics.odata import ODataClient, Throttle
from d365_anaplan.dynamics.reader import DynamicsReader
from d365_anaplan.http import VerifiedSession, restrict_to, session_for
from d365_anaplan.secrets import SecretResolver


@dataclass
class DynamicsConnection:
    session: VerifiedSession
    tokens: TokenProvider
    client: ODataClient
    reader: DynamicsReader
    writer: JournalWriter


def connect(
    cfg: ConnectionConfig,
    resolver: SecretResolver,
    *,
    remaining_time: Callable[[], float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    session: VerifiedSession | None = None,
    reuse_tokens: bool = True,
    throttle: Throttle | None = None,
) -> DynamicsConnection:
    """Build the F&O side of a connection (``remaining_time``: seconds left in this Lambda invocation;
    ``throttle``: the environment's shared throttle record, see ``ledger/throttle.py``)."""
    d = cfg.dynamics
    if session is not None:
        restrict_to(session, cfg)
    sess = session or session_for(cfg, d.timeout_seconds)
    if reuse_tokens:
        tokens = provider_for(d, resolver, sess)
    else:
        tokens = TokenProvider(
            environment_url=d.environment_url,
            tenant_id=d.tenant_id,
            client_id=d.client_id,
            credential=credential_from_settings(d, resolver),
            session=sess,
            authority_host=d.authority_host,
        )
    client = ODataClient(
        d.environment_url,
        tokens,
        sess,
        page_size=d.page_size,
        sleep=sleep,
        remaining_time=remaining_time,
        throttle=throttle,
    )
    reader = DynamicsReader(
        client,
        companies=d.companies,
        gl_route=d.gl_route,
        published_gl_entity_set=d.published_gl_entity_set,
        options=cfg.ledger,
    )
    writer = JournalWriter(client, reader, d.journal, sleep=sleep)
    return DynamicsConnection(sess, tokens, client, reader, writer)
