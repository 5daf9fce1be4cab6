from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses

from d365_anaplan.anaplan.authenticators import BasicAuthenticator
from d365_anaplan.anaplan.client import AnaplanClient
from d365_anaplan.anaplan.tokens import InMemoryTokenCache
from d365_anaplan.config import AnaplanSettings

AUTH = "https://auth.test.anaplan.com"
API = "https://api.test.anaplan.com/2/0"
OAUTH = "https://oauth.test.anaplan.com"
WS = "8a8196b15ff7e44b016001f3f4a2021c"
MODEL = "75A40874E6B64FA3AE0B1A2A5C0F9B2E"
MP = f"{API}/workspaces/{WS}/models/{MODEL}"


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def settings(**overrides: Any) -> AnaplanSettings:
    data: dict[str, Any] = {
        "auth_url": AUTH,
        "api_url": API,
        "oauth_url": OAUTH,
        "workspace_id": WS,
        "model_id": MODEL,
        "auth": {"mode": "basic", "username": "integration@example.com", "password": "pw"},
        "chunk_size_mb": 1,
    }
    data.update(overrides)
    return AnaplanSettings.model_validate(data)


def auth_body(
    value: str = "tok-1", expires_at: float | None = None, message: str = "Login successful"
) -> dict[str, Any]:
    return {
        "meta": {"validationUrl": f"{AUTH}/token/validate"},
        "status": "SUCCESS",
        "statusMessage": message,
        "tokenInfo": {
            "tokenId": "4ed163af-9751-11e7-9719-8b1a1f02078d",
            "tokenValue": value,
            "expiresAt": int((expires_at if expires_at is not None else time.time() + 2100) * 1000),
            "refreshTokenId": "4ed163b0-9751-11e7-9719-d36c7a73a3b4",
        },
    }


def envelope(**payload: Any) -> dict[str, Any]:
    return {"meta": {"schema": f"{API}/objects/x"}, "status": {"code": 200, "message": "Success"}, **payload}


def paged(key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    body = envelope(**{key: items})
    body["meta"]["paging"] = {"currentPageSize": len(items), "totalSize": len(items), "offset": 0}
    return body


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def make_client(clock: FakeClock) -> Any:
    def build(**kwargs: Any) -> AnaplanClient:
        cfg = kwargs.pop("settings", None) or settings()
        authn = kwargs.pop("authenticator", None) or BasicAuthenticator(
            AUTH, "integration@example.com", "pw", clock=clock
        )
        kwargs.setdefault("token_cache", InMemoryTokenCache(clock=clock))
        return AnaplanClient(
            cfg,
            authn,
            session=requests.Session(),
            clock=clock,
            monotonic=clock,
            sleep=clock.sleep,
            **kwargs,
        )

    return build


def add_auth(rsps: responses.RequestsMock, clock: FakeClock, value: str = "tok-1") -> None:
    rsps.add(responses.POST, f"{AUTH}/token/authenticate", json=auth_body(value, clock() + 2100), status=201)
