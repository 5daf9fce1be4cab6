"""An Entra ID look-alike serving what msal calls for client credentials (dynamics-fo.md §1.1-§1.3).

* ``GET /{tenant}/v2.0/.well-known/openid-configuration`` - tenant discovery
* ``GET /common/discovery/instance`` - instance discovery (only when a client asks for it)
* ``POST /{tenant}/oauth2/v2.0/token`` - ``grant_type=client_credentials`` with ``client_secret`` or a
  ``client_assertion`` JWT (PS256/RS256, ``x5t#S256``/``x5t`` naming a registered certificate,
  ``aud`` = the token endpoint, ``iss`` = ``sub`` = client id). Scope must be a single ``<resource>/.default``.
  Success: ``{"token_type":"Bearer","expires_in":N,"ext_expires_in":N,"access_token":...}`` and never a
  refresh token. Errors: HTTP 400/401 with ``error``, ``error_description`` (AADSTS code first),
  ``error_codes``, ``timestamp``, ``trace_id``, ``correlation_id``.

Access tokens are JWTs signed with a key private to the sandbox; ``aud`` is the requested resource exactly
as sent (Entra does not normalise it, which is why F&O rejects mixed case or a trailing slash), ``tid`` the
tenant, ``oid`` the service principal, ``appid`` the client id.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devkit.sandbox.server import Request, Response

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class EntraApp:
    client_id: str
    client_secret: str | None = None
    certificates: list[bytes] = field(default_factory=list)  # PEM
    service_principal_oid: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class IssuedToken:
    jti: str
    client_id: str
    expires_at: float


class Entra:
    """Tenant ``tenant_id`` with registered apps; ``resources`` are the accepted resource URLs (lowercase)."""

    def __init__(
        self,
        *,
        tenant_id: str,
        apps: list[EntraApp],
        resources: Callable[[], list[str]],
        base_url: Callable[[], str],
        token_lifetime: int = 3599,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tenant_id = tenant_id
        self.apps = {a.client_id: a for a in apps}
        self.resources = resources
        self.base_url = base_url
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.signing_key = secrets.token_bytes(32)
        self.issued: list[IssuedToken] = []
        self.revoked: set[str] = set()

    # -- routing ----------------------------------------------------------------------------------------------

    def handles(self, req: Request) -> bool:
        parts = req.path.strip("/").split("/")
        return (
            bool(parts)
            and parts[0] != "data"
            and (
                req.path.endswith("/.well-known/openid-configuration")
                or req.path.endswith("/oauth2/v2.0/token")
                or req.path.startswith("/common/discovery/")
            )
        )

    def handle(self, req: Request) -> Response:
        path = req.path
        if path.startswith("/common/discovery/instance"):
            return self._instance_discovery(req)
        tenant = path.strip("/").split("/", 1)[0]
        if path.endswith("/v2.0/.well-known/openid-configuration") and req.method == "GET":
            if not self._tenant_ok(tenant):
                return self._error(
                    400,
                    "invalid_tenant",
                    90002,
                    f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.",
                )
            return Response.json(200, self._openid_configuration(tenant))
        if path.endswith("/oauth2/v2.0/token") and req.method == "POST":
            return self._token(tenant, req)
        return self._error(404, "invalid_request", 90010, "The request is not supported by this endpoint.")

    def _tenant_ok(self, tenant: str) -> bool:
        return tenant.lower() in (self.tenant_id.lower(), "common", "organizations")

    def _openid_configuration(self, tenant: str) -> dict[str, Any]:
        base = f"{self.base_url()}/{tenant}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{self.base_url()}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{self.base_url()}/{self.tenant_id}/v2.0",
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "tenant_region_scope": "NA",
            "cloud_instance_name": "sandbox.local",
        }

    def _instance_discovery(self, req: Request) -> Response:
        authority = req.query_value("authorization_endpoint") or ""
        tenant = authority.split("/")[3] if authority.count("/") >= 4 else self.tenant_id
        return Response.json(
            200,
            {
                "tenant_discovery_endpoint": f"{self.base_url()}/{tenant}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [
                    {
                        "preferred_network": self.base_url().split("://", 1)[1],
                        "preferred_cache": self.base_url().split("://", 1)[1],
                        "aliases": [self.base_url().split("://", 1)[1]],
                    }
                ],
            },
        )

    # -- token endpoint -------------------------------------------------------------------------------------

    def _error(self, status: int, error: str, code: int, text: str) -> Response:
        trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
        ts = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return Response.json(
            status,
            {
                "error": error,
                "error_description": f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {corr} Timestamp: {ts}",
                "error_codes": [code],
                "timestamp": ts,
                "trace_id": trace,
                "correlation_id": corr,
                "error_uri": f"{self.base_url()}/error?code={code}",
            },
        )

    def _token(self, tenant: str, req: Request) -> Response:
        form = dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
        if not self._tenant_ok(tenant):
            return self._error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if tenant.lower() in ("common", "organizations"):
            return self._error(
                400,
                "invalid_request",
                700016,
                "Use a tenant-specific endpoint for the client credentials flow; /common and /organizations are not supported for app-only tokens.",
            )
        if form.get("grant_type") != "client_credentials":
            return self._error(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        client_id = form.get("client_id", "")
        app = self.apps.get(client_id)
        if app is None:
            return self._error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{self.tenant_id}'.",
            )
        scope = form.get("scope", "")
        scopes = scope.split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            return self._error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
            )
        resource = scopes[0][: -len("/.default")]
        known = [r.lower() for r in self.resources()]
        if resource.rstrip("/").lower() not in known:
            return self._error(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named {self.tenant_id}.",
            )
        problem = self._authenticate(app, form, tenant)
        if problem is not None:
            return problem
        now = self.clock()
        jti = str(uuid.uuid4())
        claims = {
            "aud": resource,  # as requested: Entra does not fix case or a trailing slash
            "iss": f"https://sts.sandbox.local/{self.tenant_id}/",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + self.token_lifetime),
            "tid": self.tenant_id,
            "oid": app.service_principal_oid,
            "appid": app.client_id,
            "idtyp": "app",
            "jti": jti,
        }
        token = jwt.encode(claims, self.signing_key, algorithm="HS256")
        self.issued.append(IssuedToken(jti, app.client_id, now + self.token_lifetime))
        return Response.json(
            200,
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "ext_expires_in": self.token_lifetime,
                "access_token": token,
            },
        )

    def _authenticate(self, app: EntraApp, form: dict[str, str], tenant: str) -> Response | None:
        if "client_secret" in form:
            if app.client_secret is None or not secrets.compare_digest(
                form["client_secret"], app.client_secret
            ):
                return self._error(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
                )
            return None
        if form.get("client_assertion_type") != ASSERTION_TYPE or "client_assertion" not in form:
            return self._error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        assertion = form["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return self._error(401, "invalid_client", 700027, "Client assertion is not a valid JWT.")
        cert = self._certificate_for(app, header)
        if cert is None:
            return self._error(
                401,
                "invalid_client",
                700027,
                "Client assertion contains an invalid signature. The key was not found.",
            )
        endpoint = f"{self.base_url()}/{tenant}/oauth2/v2.0/token"
        try:
            claims = jwt.decode(
                assertion,
                cert.public_key(),  # type: ignore[arg-type]
                algorithms=["PS256", "RS256"],
                audience=endpoint,
                options={"require": ["exp", "aud", "iss", "sub"]},
                leeway=60,
            )
        except jwt.ExpiredSignatureError:
            return self._error(
                401, "invalid_client", 700024, "Client assertion is not within its valid time range."
            )
        except jwt.InvalidAudienceError:
            return self._error(
                401, "invalid_client", 700027, f"The audience of the client assertion must be {endpoint}."
            )
        except jwt.PyJWTError as exc:
            return self._error(
                401,
                "invalid_client",
                700027,
                f"Client assertion failed signature validation ({type(exc).__name__}).",
            )
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            return self._error(
                401,
                "invalid_client",
                700023,
                "The issuer and subject of the client assertion must be the client id.",
            )
        # No jti replay check: msal reuses one assertion until it expires (about 10 minutes) and Entra accepts that.
        return None

    @staticmethod
    def _certificate_for(app: EntraApp, header: dict[str, Any]) -> x509.Certificate | None:
        for pem in app.certificates:
            cert = x509.load_pem_x509_certificate(pem)
            der = cert.public_bytes(serialization.Encoding.DER)
            s256 = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
            s1 = (
                base64.urlsafe_b64encode(hashlib.sha1(der, usedforsecurity=False).digest())
                .rstrip(b"=")
                .decode()
            )
            # base64url with or without padding (msal keeps the "=")
            if (
                str(header.get("x5t#S256", "")).rstrip("=") == s256
                or str(header.get("x5t", "")).rstrip("=") == s1
            ):
                return cert
        return None

    # -- used by the F&O host -------------------------------------------------------------------------------

    def validate(self, token: str, audience: str) -> str | None:
        """None if ``token`` is valid for ``audience`` now, else the reason (for WWW-Authenticate)."""
        try:
            claims = jwt.decode(
                token,
                self.signing_key,
                algorithms=["HS256"],
                options={"verify_aud": False, "require": ["exp", "aud", "tid"]},
            )
        except jwt.ExpiredSignatureError:
            return "the token is expired"
        except jwt.PyJWTError:
            return "the token signature is invalid"
        if claims.get("aud") != audience:
            return f"the audience '{claims.get('aud')}' is invalid"
        if claims.get("tid") != self.tenant_id:
            return "the token was issued for another tenant"
        if not claims.get("oid"):
            return "the token has no oid (no service principal in this tenant)"
        if claims["exp"] <= self.clock():
            return "the token is expired"
        if claims.get("jti") in self.revoked:
            return "the token is expired"
        return None

    def expire_all(self) -> None:
        """Fault injection: every token issued so far is treated as expired by the F&O host."""
        self.revoked.update(t.jti for t in self.issued)

    def client_of(self, token: str) -> str:
        try:
            return str(jwt.decode(token, options={"verify_signature": False}).get("appid", ""))
        except jwt.PyJWTError:
            return ""
