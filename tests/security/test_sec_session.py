"""Credentials only to their origins, at send time: redirects, http, user information, wrong origin per
credential, and msal's token request through our session. A listener on 127.0.0.2 must see nothing."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import requests
from sec_support import LEAK_HOST, SECRET, HostileServer, LeakListener, good, http_response

from d365_anaplan.anaplan.authenticators import DeviceGrantAuthenticator
from d365_anaplan.anaplan.client import AnaplanClient
from d365_anaplan.anaplan.tokens import InMemoryTokenCache
from d365_anaplan.config import ConnectionConfig, parse_connection
from d365_anaplan.dynamics.auth import Credential, TokenProvider
from d365_anaplan.dynamics.odata import ODataClient
from d365_anaplan.errors import DynamicsBadResponse, RedirectRefused, UnsafeDestination
from d365_anaplan.http import VerifiedSession, session_for
from devkit.sandbox.tls import SandboxCA


def sandbox_config(server: HostileServer, ca: SandboxCA) -> ConnectionConfig:
    """Every endpoint on the hostile server (allowed explicitly), trusting the test CA."""
    data = good()
    data["dynamics"]["environment_url"] = server.base_url
    data["dynamics"]["authority_host"] = server.base_url
    for key in ("auth_url", "oauth_url"):
        data["anaplan"][key] = server.base_url
    data["anaplan"]["api_url"] = server.base_url + "/2/0"
    data["tls"] = {"ca_bundle": str(ca.ca_bundle)}
    data["security"] = {"allowed_hosts": [f"127.0.0.1:{server.port}"], "max_response_bytes": 65536}
    return parse_connection(data)


def redirect_to(location: str, status: int = 302) -> Any:
    def respond(_request: bytes) -> list[bytes]:
        return http_response(status, b"", {"Location": location})

    return respond


def basic_login(cfg: ConnectionConfig) -> None:
    client = AnaplanClient.from_config(cfg, token_cache=InMemoryTokenCache(), sleep=lambda _s: None)
    client.tokens.token()


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_login_redirected_to_another_host_is_refused(
    scheme: str, hostile: Any, ca: SandboxCA, leak: LeakListener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = hostile(lambda _r: [])
    server.responder = redirect_to(f"{scheme}://{LEAK_HOST}:{leak.port}/token/authenticate")
    with pytest.raises(RedirectRefused) as info:
        basic_login(sandbox_config(server, ca))
    assert SECRET not in str(info.value)
    assert SECRET not in caplog.text
    assert leak.hits == []


def test_same_host_redirect_does_not_resend_the_credential(hostile: Any, ca: SandboxCA) -> None:
    server = hostile(lambda _r: [])
    server.responder = redirect_to(f"{server.base_url}/elsewhere", status=307)
    with pytest.raises(RedirectRefused, match="redirects are never followed"):
        basic_login(sandbox_config(server, ca))
    assert len(server.requests) == 1
    assert b"/elsewhere" not in server.requests[0]


def test_plain_http_is_never_used(leak: LeakListener) -> None:
    with pytest.raises(UnsafeDestination, match="only https"):
        VerifiedSession().get(
            f"http://{LEAK_HOST}:{leak.port}/", headers={"Authorization": f"Basic {SECRET}"}
        )
    assert "http://" not in VerifiedSession().adapters
    assert leak.hits == []


def test_user_information_in_a_request_url_is_refused(leak: LeakListener) -> None:
    with pytest.raises(UnsafeDestination, match="user information"):
        VerifiedSession().get(f"https://api.anaplan.com:x@{LEAK_HOST}:{leak.port}/2/0/workspaces")
    assert leak.hits == []


def test_anaplan_token_goes_only_to_the_api_and_auth_origins(
    hostile: Any, ca: SandboxCA, leak: LeakListener
) -> None:
    server = hostile(lambda _r: http_response(200, b"{}"))
    session = session_for(sandbox_config(server, ca), 5)
    with pytest.raises(UnsafeDestination, match="not one of the configured endpoints"):
        session.get(
            f"https://{LEAK_HOST}:{leak.port}/2/0", headers={"Authorization": f"AnaplanAuthToken {SECRET}"}
        )
    assert leak.hits == []


def test_each_credential_only_to_its_own_origin(leak: LeakListener) -> None:
    data = good()
    data["anaplan"]["auth"] = {"mode": "device", "client_id": "c1", "refresh_token": SECRET}
    session = session_for(parse_connection(data), 5)
    # the F&O bearer token may not go to Anaplan, the refresh token not to the auth API
    with pytest.raises(UnsafeDestination, match=r"fo-token credential may go only to https://contoso"):
        session.get("https://api.anaplan.com/2/0/workspaces", headers={"Authorization": f"Bearer {SECRET}"})
    store = type("Store", (), {"load": lambda self: SECRET, "save": lambda self, v: None})()
    wrong = DeviceGrantAuthenticator("https://auth.anaplan.com", "c1", store)
    with pytest.raises(
        UnsafeDestination, match=r"anaplan-oauth credential may go only to https://us1a\.app\.anaplan\.com"
    ):
        wrong.authenticate(session)


def test_msal_token_request_to_a_hijacked_token_endpoint_is_refused(
    hostile: Any, ca: SandboxCA, leak: LeakListener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = hostile(lambda _r: [])
    authority = f"{server.base_url}/tenant-1"
    discovery = {
        "authorization_endpoint": f"{authority}/oauth2/v2.0/authorize",
        "token_endpoint": f"https://{LEAK_HOST}:{leak.port}/tenant-1/oauth2/v2.0/token",
        "issuer": f"{authority}/v2.0",
    }
    server.responder = lambda _r: http_response(200, json.dumps(discovery).encode())
    cfg = sandbox_config(server, ca)
    provider = TokenProvider(
        environment_url=cfg.dynamics.environment_url,
        tenant_id="tenant-1",
        client_id="app-id",
        credential=Credential(client_secret=SECRET),
        session=session_for(cfg, 5),
        authority_host=cfg.dynamics.authority_host,
    )
    with pytest.raises(UnsafeDestination) as info:
        provider.token()
    assert SECRET not in str(info.value)
    assert SECRET not in caplog.text
    assert leak.hits == []


class _Tokens:
    client_id = "app-id"

    def token(self) -> str:
        return SECRET

    def invalidate(self) -> None:
        return None


def test_odata_next_link_to_another_host_is_not_followed(
    hostile: Any, ca: SandboxCA, leak: LeakListener
) -> None:
    server = hostile(lambda _r: [])
    for link in (
        f"https://{LEAK_HOST}:{leak.port}/data/GeneralJournalAccountEntries?$skiptoken=1",
        f"https://127.0.0.1:{server.port}:x@{LEAK_HOST}:{leak.port}/data/X",
        f"https://127.0.0.1:{server.port}\\@{LEAK_HOST}:{leak.port}/data/X",
    ):
        page = {"value": [], "@odata.nextLink": link}
        server.responder = lambda _r, page=page: http_response(200, json.dumps(page).encode())
        cfg = sandbox_config(server, ca)
        client = ODataClient(
            cfg.dynamics.environment_url, _Tokens(), session_for(cfg, 5), sleep=lambda _s: None
        )
        with pytest.raises(DynamicsBadResponse, match="nextLink"):
            list(client.iter_pages(resume=f"{server.base_url}/data/GeneralJournalAccountEntries"))
    assert leak.hits == []


def test_refusal_messages_carry_no_credential(leak: LeakListener) -> None:
    session = session_for(parse_connection(good()), 5)
    for url in (f"https://{LEAK_HOST}:{leak.port}/x?token={SECRET}", f"http://{LEAK_HOST}/#{SECRET}"):
        with pytest.raises(UnsafeDestination) as info:
            session.post(url, data={"client_secret": SECRET})
        assert SECRET not in str(info.value)
    with pytest.raises(requests.RequestException):
        requests.Session().get("http://127.0.0.2:1/", timeout=0.5)  # the probe itself works
    assert leak.hits == []
