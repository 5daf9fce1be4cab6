"""The OAuth device grant's one-time bootstrap (``d365-anaplan anaplan-login``): the user code, then the
refresh token once the user approved it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import requests
from pydantic import ValidationError

from d365_anaplan.anaplan.authenticators import (
    DEFAULT_SCOPE,
    DEVICE_GRANT,
    Clock,
    Sleep,
    auth_failure,
    post_auth,
)
from d365_anaplan.anaplan.models import DeviceCode, OAuthError, OAuthTokens
from d365_anaplan.errors import AnaplanAuthError

# --- device authorization (one-time bootstrap) -------------------------------------------------------


def start_device_authorization(
    session: requests.Session, oauth_url: str, client_id: str, scope: str = DEFAULT_SCOPE
) -> DeviceCode:
    """``POST {oauth}/oauth/device/code``: the user code and verification URL to show the user."""
    call = f"POST /oauth/device/code (client {client_id})"
    resp = post_auth(
        session,
        f"{oauth_url.rstrip('/')}/oauth/device/code",
        call,
        json={"client_id": client_id, "scope": scope},
    )
    if resp.status_code != 200:
        raise auth_failure(call, resp)
    try:
        return DeviceCode.model_validate(resp.json())
    except (ValueError, ValidationError):
        raise AnaplanAuthError(f"{call}: the answer is not a device authorization") from None


def poll_device_token(
    session: requests.Session,
    oauth_url: str,
    client_id: str,
    code: DeviceCode,
    *,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
    on_wait: Callable[[str, float], None] | None = None,
) -> OAuthTokens:
    """Poll ``POST {oauth}/oauth/token`` at the server's interval until the user approves (RFC 8628 §3.5).

    ``authorization_pending`` keeps polling, ``slow_down`` adds 5 s to the interval, ``expired_token``,
    ``access_denied`` and anything else end with :class:`AnaplanAuthError`.
    """
    call = f"POST /oauth/token (device_code grant, client {client_id})"
    interval: float = max(code.interval, 1)
    deadline = clock() + code.expires_in
    body = {"grant_type": DEVICE_GRANT, "device_code": code.device_code, "client_id": client_id}
    while True:
        sleep(interval)
        resp = post_auth(session, f"{oauth_url.rstrip('/')}/oauth/token", call, json=body)
        if resp.status_code == 200:
            try:
                tokens = OAuthTokens.model_validate(resp.json())
            except (ValueError, ValidationError):
                raise AnaplanAuthError(f"{call}: HTTP 200 without an access_token in the answer") from None
            if not tokens.refresh_token:
                raise AnaplanAuthError(f"{call}: no refresh_token returned; request the offline_access scope")
            return tokens
        try:
            err = OAuthError.model_validate(resp.json())
        except (ValueError, ValidationError):
            raise auth_failure(call, resp) from None
        if err.error == "authorization_pending":
            pass
        elif err.error == "slow_down":
            interval += 5
        elif err.error == "expired_token":
            raise AnaplanAuthError(
                f"{call}: the device code expired before it was approved; run the login again"
            )
        else:
            raise auth_failure(call, resp)
        if on_wait is not None:
            on_wait(err.error, interval)
        if clock() + interval > deadline:
            raise AnaplanAuthError(
                f"{call}: the device code expired before it was approved; run the login again"
            )
