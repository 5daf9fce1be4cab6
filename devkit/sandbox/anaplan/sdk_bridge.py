"""Point the independent ``anaplan-sdk`` package at the sandbox.

anaplan-sdk 0.5.22 hard-codes ``https://api.anaplan.com/2/0`` and ``https://auth.anaplan.com`` (it has no
host settings), but it passes extra keyword arguments to its ``httpx2.Client``. A transport that rewrites
those two hosts to the sandbox's servers, verifying TLS against the sandbox CA, is therefore enough.
Its very first login uses a private ``httpx2.Client`` that ignores those arguments, so we hand it a token
minted by the sandbox together with the credentials; later re-logins (after a 401) go through the transport.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import httpx2
import requests

from devkit.sandbox.anaplan.harness import RunningSandbox


class RewriteTransport(httpx2.HTTPTransport):
    """Send requests for ``*.anaplan.com`` hosts to local sandbox servers (TLS verified)."""

    def __init__(self, routes: dict[str, str], ca_bundle: str, **kwargs: Any) -> None:
        super().__init__(verify=ssl.create_default_context(cafile=ca_bundle), **kwargs)
        self.routes = {host: urlsplit(base) for host, base in routes.items()}
        self.rewritten = 0

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        target = self.routes.get(request.url.host)
        if target is not None:
            request.url = request.url.copy_with(scheme="https", host=target.hostname, port=target.port)
            self.rewritten += 1
        return super().handle_request(request)


def sdk_client_for(
    *,
    api_base: str,
    auth_base: str,
    ca_bundle: str,
    username: str,
    password: str,
    workspace_id: str,
    model_id: str,
    **kwargs: Any,
) -> Any:
    """An ``anaplan_sdk.Client`` whose api/auth.anaplan.com requests go to ``api_base``/``auth_base``."""
    import anaplan_sdk

    token = requests.post(
        f"{auth_base}/token/authenticate", auth=(username, password), verify=ca_bundle, timeout=30
    ).json()["tokenInfo"]["tokenValue"]
    transport = RewriteTransport({"api.anaplan.com": api_base, "auth.anaplan.com": auth_base}, ca_bundle)
    return anaplan_sdk.Client(
        workspace_id=workspace_id,
        model_id=model_id,
        user_email=username,
        password=password,
        token=token,
        transport=transport,
        **kwargs,
    )


def sdk_client(sbx: RunningSandbox, **kwargs: Any) -> Any:
    """An ``anaplan_sdk.Client`` for the sandbox's workspace and model (Basic auth)."""
    return sdk_client_for(
        api_base=sbx.servers["api"].base_url,
        auth_base=sbx.auth_url,
        ca_bundle=sbx.ca_bundle,
        username=sbx.username,
        password=sbx.password,
        workspace_id=sbx.app.seed.workspace_id,
        model_id=sbx.app.seed.model_id,
        **kwargs,
    )
