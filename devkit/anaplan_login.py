"""``d365-anaplan anaplan-login --config FILE``: one-time OAuth 2.0 device-grant login.

Prints the verification URL and user code, polls Anaplan's OAuth host at the server's interval
(``authorization_pending`` keeps waiting, ``slow_down`` backs off, ``expired_token`` ends), then stores the
refresh token where ``anaplan.auth.refresh_token`` points (Secrets Manager in AWS, a ``file:`` locally).
The refresh token is never printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="connection configuration YAML")
    parser.add_argument("--name", default=None, help="connection name when the file holds several")
    parser.add_argument(
        "--scope", default="openid profile email offline_access", help="OAuth scopes to request"
    )


def run(args: argparse.Namespace, *, sleep: Callable[[float], None] = time.sleep) -> int:
    from d365_anaplan.anaplan.device import poll_device_token, start_device_authorization
    from d365_anaplan.config import DeviceAuth, load_connection_file
    from d365_anaplan.errors import AnaplanAuthError, AnaplanUnavailable, SecretUnavailable
    from d365_anaplan.http import session_for
    from d365_anaplan.secrets import SecretResolver

    cfg = load_connection_file(args.config, args.name)
    auth = cfg.anaplan.auth
    if not isinstance(auth, DeviceAuth):
        print(
            f"anaplan-login: anaplan.auth.mode is {auth.mode!r}; the device-grant login needs mode 'device'",
            file=sys.stderr,
        )
        return 2
    if auth.refresh_token is None:
        print(
            "anaplan-login: set anaplan.auth.refresh_token to where the token is kept "
            "(a Secrets Manager ARN, or file:<path> locally)",
            file=sys.stderr,
        )
        return 2
    session = session_for(cfg, cfg.anaplan.timeout_seconds)
    try:
        code = start_device_authorization(session, cfg.anaplan.oauth_url, auth.client_id, args.scope)
        print(f"To sign in to Anaplan, open {code.verification_uri} and enter the code {code.user_code}")
        if code.verification_uri_complete:
            print(f"(or open {code.verification_uri_complete})")
        print(f"Waiting for approval (the code expires in {code.expires_in // 60} minutes) ...", flush=True)

        def waiting(error: str, interval: float) -> None:
            if error == "slow_down":
                print(f"  Anaplan asked to slow down; polling every {int(interval)} s", flush=True)

        tokens = poll_device_token(
            session,
            cfg.anaplan.oauth_url,
            auth.client_id,
            code,
            sleep=sleep,
            on_wait=waiting,
        )
        assert tokens.refresh_token is not None
        SecretResolver(allow_local=True).store(auth.refresh_token, tokens.refresh_token)
    except AnaplanAuthError as exc:
        print(f"anaplan-login: {exc}", file=sys.stderr)
        return 3
    except AnaplanUnavailable as exc:
        print(f"anaplan-login: {exc}", file=sys.stderr)
        return 3
    except SecretUnavailable as exc:
        print(f"anaplan-login: cannot store the refresh token: {exc}", file=sys.stderr)
        return 2
    print(f"Signed in. The refresh token is stored in {auth.refresh_token.describe()}.")
    return 0
