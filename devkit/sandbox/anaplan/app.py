"""The Anaplan sandbox application: auth host, OAuth host and Integration API v2 behind one ``handle``.

Built from the reference material (``shared/reference/anaplan-api.md``, the OpenAPI descriptions and the
Anaplan Connect canned responses): envelopes ``{meta, status, <payload>}``, 201 on authenticate, 204 on chunk
PUT, ``AnaplanAuthToken`` required, 401 once a token expires, refresh extends it, certificate signatures
verified (v1 and v2), device grant with ``authorization_pending``/``slow_down``, 600/min tenant rate limit.

Imports really parse the uploaded file, exports render module data, tasks run asynchronously one at a time
per model. :class:`Faults` injects failures for tests; :attr:`AnaplanSandbox.counters` counts per endpoint.
"""

from __future__ import annotations

import base64
import codecs
import csv
import gzip
import io
import json
import re
import secrets
import shutil
import struct
import tempfile
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from devkit.sandbox.anaplan import time_dimension as td
from devkit.sandbox.anaplan.calendar import ModelCalendar, model_calendar
from devkit.sandbox.anaplan.model_details import ModelFacts, model_view
from devkit.sandbox.anaplan.seed import (
    ExportDef,
    ImportDef,
    ListDef,
    Member,
    ModelSeed,
    ModuleDef,
    build_seed,
)
from devkit.sandbox.server import Request, Response

MB = 1_000_000
_ROUTES: list[tuple[str, re.Pattern[str], str]] = []


# --- fault injection ---------------------------------------------------------------------------------


@dataclass
class _Rule:
    match: str
    method: str | None
    status: int
    count: int
    retry_after: str | None
    drop: bool
    message: str


class Faults:
    """Failures to inject. Each rule applies to the next ``count`` requests whose path contains ``match``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self.fail_next_import_with_dump = 0
        self.busy_task_starts = 0

    def fail(
        self,
        match: str,
        status: int,
        *,
        count: int = 1,
        method: str | None = None,
        retry_after: str | None = None,
        message: str = "",
    ) -> None:
        """Answer ``status`` (e.g. 429 with or without ``Retry-After``, 500, 503, 423)."""
        with self._lock:
            self._rules.append(_Rule(match, method, status, count, retry_after, False, message))

    def drop(self, match: str, *, count: int = 1, method: str | None = None) -> None:
        """Close the connection without answering (e.g. mid-chunk); the request has no effect."""
        with self._lock:
            self._rules.append(_Rule(match, method, 0, count, None, True, ""))

    def busy(self, count: int = 1) -> None:
        """The next ``count`` task starts answer 409 (model busy)."""
        with self._lock:
            self.busy_task_starts += count

    def fail_next_import(self, count: int = 1) -> None:
        """The next ``count`` imports complete unsuccessfully with a failure dump."""
        with self._lock:
            self.fail_next_import_with_dump += count

    def take(self, method: str, path: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.match in path and (rule.method is None or rule.method == method):
                    rule.count -= 1
                    if rule.count <= 0:
                        self._rules.remove(rule)
                    return rule
        return None

    def take_busy(self) -> bool:
        with self._lock:
            if self.busy_task_starts > 0:
                self.busy_task_starts -= 1
                return True
            return False

    def take_import_failure(self) -> bool:
        with self._lock:
            if self.fail_next_import_with_dump > 0:
                self.fail_next_import_with_dump -= 1
                return True
            return False

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self.fail_next_import_with_dump = 0
            self.busy_task_starts = 0


# --- state -------------------------------------------------------------------------------------------


@dataclass
class Token:
    value: str
    token_id: str
    refresh_token_id: str
    user: str
    expires_at: float  # epoch seconds


@dataclass
class DeviceRequest:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    expires_at: float
    interval: float
    approved: bool = False
    polls: int = 0
    last_poll: float | None = None
    used: bool = False


@dataclass
class StoredFile:
    id: str
    name: str
    directory: Path
    chunk_count: int = 0
    chunks: dict[int, tuple[Path, bool]] = field(default_factory=dict)  # index -> (path, gzip?)
    complete: bool = False

    def reset(self) -> None:
        for path, _ in self.chunks.values():
            path.unlink(missing_ok=True)
        self.chunks.clear()
        self.complete = False

    def iter_bytes(self) -> Iterator[bytes]:
        for index in sorted(self.chunks):
            path, zipped = self.chunks[index]
            if zipped:
                with gzip.open(path, "rb") as fh:
                    while piece := fh.read(1 << 20):
                        yield piece
            else:
                with path.open("rb") as fh:
                    while piece := fh.read(1 << 20):
                        yield piece


@dataclass
class SandboxTask:
    id: str
    kind: str  # imports | exports | processes | actions
    action_id: str
    created: float
    state: str = "NOT_STARTED"
    progress: float = 0.0
    step: str = "Waiting to start."
    result: dict[str, Any] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    dumps: dict[str, list[bytes]] = field(default_factory=dict)  # object id -> chunks
    polls: int = 0

    def view(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "taskInformation",
            "taskId": self.id,
            "taskState": self.state,
            "creationTime": int(self.created * 1000),
            "currentStep": self.step,
            "progress": self.progress,
        }
        if self.result is not None and self.state in ("COMPLETE", "CANCELLED"):
            body["result"] = self.result
        return body


class _Bucket:
    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.tokens = float(per_minute)
        self.clock = clock
        self.last = clock()
        self.lock = threading.Lock()

    def take(self) -> float:
        """0 if a request may pass, else the seconds until one may."""
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- the application ---------------------------------------------------------------------------------


class AnaplanSandbox:
    """State and request handling for the three Anaplan hosts (see :func:`role_app` to split them)."""

    def __init__(
        self,
        seed: ModelSeed | None = None,
        *,
        users: dict[str, str] | None = None,
        oauth_clients: dict[str, bool] | None = None,
        token_lifetime_s: float = 2100.0,
        task_start_delay_s: float = 0.05,
        task_run_delay_s: float = 0.1,
        rate_limit_per_minute: int = 600,
        rate_limit_retry_after: bool = True,
        dump_chunk_size: int = 10 * MB,
        export_chunk_size: int = 10 * MB,
        device_interval_s: int = 5,
        device_expires_s: int = 900,
        device_auto_approve_after: int | None = 2,
        certificate_skew_s: float = 300.0,
        storage_dir: str | Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.seed = seed or build_seed()
        self.users = users or {"integration@example.com": "sandbox-password"}
        self.oauth_clients = (
            oauth_clients if oauth_clients is not None else {"0123456789abcdef0123456789abcdef": True}
        )
        self.token_lifetime_s = token_lifetime_s
        self.task_start_delay_s = task_start_delay_s
        self.task_run_delay_s = task_run_delay_s
        self.rate_limit_retry_after = rate_limit_retry_after
        self.dump_chunk_size = dump_chunk_size
        self.export_chunk_size = export_chunk_size
        self.device_interval_s = device_interval_s
        self.device_expires_s = device_expires_s
        self.device_auto_approve_after = device_auto_approve_after
        self.certificate_skew_s = certificate_skew_s
        self.clock = clock
        self.model_state = "UNLOCKED"  # ARCHIVED -> 422, LOCKED -> 423 on writes
        self.calendar = ModelCalendar()  # GET …/modelCalendar (devkit/sandbox/anaplan/calendar.py)
        self.module_access = (
            td.ModuleAccess()
        )  # who may read line items (devkit/sandbox/anaplan/time_dimension.py)
        self.faults = Faults()
        self.counters: Counter[str] = Counter()
        self.bucket = _Bucket(rate_limit_per_minute, clock) if rate_limit_per_minute else None
        self._lock = threading.RLock()
        self._tokens: dict[str, Token] = {}
        self._certificates: dict[bytes, tuple[str, rsa.RSAPublicKey]] = {}  # DER sha -> (user, key)
        self._seen_payloads: set[str] = set()
        self._devices: dict[str, DeviceRequest] = {}
        self._refresh_tokens: dict[str, tuple[str, str]] = {}  # refresh token -> (client id, scope)
        self._tasks: dict[str, SandboxTask] = {}
        self._own_dir = storage_dir is None
        self.storage = (
            Path(storage_dir) if storage_dir else Path(tempfile.mkdtemp(prefix="anaplan-sandbox-files-"))
        )
        self.storage.mkdir(parents=True, exist_ok=True)
        self.files: dict[str, StoredFile] = {}
        for imp in self.seed.imports.values():
            self.files[imp.file_id] = StoredFile(imp.file_id, imp.file_name, self.storage / imp.file_id)
        self._export_files: dict[str, list[bytes]] = {}
        self._queue: list[SandboxTask] = []
        self._queue_cv = threading.Condition()
        self._stopping = False
        self._worker = threading.Thread(target=self._work, name="anaplan-sandbox-tasks", daemon=True)
        self._worker.start()
        self.seen_headers: list[dict[str, str]] = []  # last requests' headers (for tests), bounded

    # --- lifecycle and test helpers --------------------------------------------------------------

    def close(self) -> None:
        with self._queue_cv:
            self._stopping = True
            self._queue_cv.notify_all()
        self._worker.join(timeout=5)
        if self._own_dir:
            shutil.rmtree(self.storage, ignore_errors=True)

    def register_certificate(self, cert_pem: bytes, user: str | None = None) -> None:
        """Register a client certificate (as a tenant admin would); its RSA key verifies signatures."""
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("Anaplan certificate auth needs an RSA certificate")
        der = cert.public_bytes(Encoding.DER)
        self._certificates[der] = (user or next(iter(self.users)), key)

    def expire_tokens(self) -> None:
        """Fault: every issued token expires now (the next API call answers 401)."""
        with self._lock:
            for tok in self._tokens.values():
                tok.expires_at = self.clock() - 1

    def approve_device(self, user_code: str) -> bool:
        with self._lock:
            for req in self._devices.values():
                if req.user_code == user_code:
                    req.approved = True
                    return True
        return False

    def list_members(self, list_name: str) -> list[str]:
        return list(self.seed.lists[list_name].members)

    def module_cells(self, module_name: str) -> dict[tuple[str, ...], dict[str, object]]:
        with self._lock:
            return dict(self.seed.modules[module_name].cells)

    def import_by_name(self, name: str) -> ImportDef:
        return next(i for i in self.seed.imports.values() if i.name == name)

    def export_by_name(self, name: str) -> ExportDef:
        return next(e for e in self.seed.exports.values() if e.name == name)

    def task(self, task_id: str) -> SandboxTask:
        return self._tasks[task_id]

    # --- responses -------------------------------------------------------------------------------

    def _base(self, req: Request) -> str:
        return f"https://{req.header('host') or 'localhost'}"

    def _meta(self, req: Request, obj: str, paging: dict[str, Any] | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"schema": f"{self._base(req)}/2/0/models/{self.seed.model_id}/objects/{obj}"}
        if paging is not None:
            meta["paging"] = paging
        return meta

    def _ok(self, req: Request, obj: str, payload: dict[str, Any], status: int = 200) -> Response:
        return Response.json(
            status, {"meta": self._meta(req, obj), "status": {"code": 200, "message": "Success"}, **payload}
        )

    def _page(self, req: Request, obj: str, key: str, items: list[dict[str, Any]]) -> Response:
        offset = int(req.query_value("offset") or 0)
        limit = min(int(req.query_value("limit") or 5000), 5000)
        page = items[offset : offset + limit]
        paging: dict[str, Any] = {"currentPageSize": len(page), "totalSize": len(items), "offset": offset}
        path = req.path
        if offset + len(page) < len(items):
            paging["next"] = f"{self._base(req)}{path}?limit={limit}&offset={offset + limit}"
        if offset > 0:
            paging["previous"] = f"{self._base(req)}{path}?limit={limit}&offset={max(0, offset - limit)}"
        body: dict[str, Any] = {
            "meta": self._meta(req, obj, paging),
            "status": {"code": 200, "message": "Success"},
        }
        if page:  # Anaplan omits empty collections
            body[key] = page
        return Response.json(200, body)

    @staticmethod
    def _error(req: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return Response.json(
            status,
            {"status": {"code": status, "message": message}, "path": req.path, "timestamp": _now_iso()},
            headers,
        )

    @staticmethod
    def _auth_error(status: int, code: str, message: str) -> Response:
        return Response.json(status, {"status": code, "statusMessage": message})

    @staticmethod
    def _oauth_error(status: int, error: str, description: str) -> Response:
        return Response.json(status, {"error": error, "error_description": description})

    # --- dispatch --------------------------------------------------------------------------------

    def admin(self, req: Request) -> Response:
        """Dev-only control of a sandbox running in another process (``/_sandbox/...`` on the API host).

        ``GET /_sandbox/counters``; ``POST /_sandbox/faults`` with one of
        ``{"kind": "fail", "match", "status", "count"?, "retry_after"?, "method"?, "message"?}``,
        ``{"kind": "drop", "match", "count"?, "method"?}``, ``{"kind": "busy", "count"?}``,
        ``{"kind": "fail_import", "count"?}``, ``{"kind": "expire_tokens"}``, ``{"kind": "model_state", "state"}``,
        ``{"kind": "clear"}``.
        """
        if req.method == "GET" and req.path == "/_sandbox/counters":
            return Response.json(200, dict(self.counters))
        if req.method == "POST" and req.path == "/_sandbox/faults":
            try:
                body = req.json() or {}
                kind = body["kind"]
                count = int(body.get("count", 1))
                if kind == "fail":
                    self.faults.fail(
                        str(body["match"]),
                        int(body["status"]),
                        count=count,
                        method=body.get("method"),
                        retry_after=body.get("retry_after"),
                        message=str(body.get("message", "")),
                    )
                elif kind == "drop":
                    self.faults.drop(str(body["match"]), count=count, method=body.get("method"))
                elif kind == "busy":
                    self.faults.busy(count)
                elif kind == "fail_import":
                    self.faults.fail_next_import(count)
                elif kind == "expire_tokens":
                    self.expire_tokens()
                elif kind == "model_state":
                    if body["state"] not in ("UNLOCKED", "LOCKED", "ARCHIVED"):
                        raise ValueError(body["state"])
                    self.model_state = body["state"]
                elif kind == "clear":
                    self.faults.clear()
                    self.model_state = "UNLOCKED"
                else:
                    raise ValueError(kind)
            except (KeyError, ValueError, TypeError) as exc:
                return Response.json(400, {"error": f"bad fault request: {exc}"})
            return Response(204)
        return Response.json(404, {"error": "unknown sandbox admin path"})

    def handle(self, req: Request) -> Response:
        if req.path.startswith("/_sandbox/"):
            return self.admin(req)
        if len(self.seen_headers) > 200:
            del self.seen_headers[:100]
        seen = {k: ("<redacted>" if k == "authorization" else v) for k, v in req.headers.items()}
        self.seen_headers.append({"method": req.method, "path": req.path, **seen})
        rule = self.faults.take(req.method, req.path)
        if rule is not None:
            self.counters[f"fault {rule.status or 'drop'}"] += 1
            if rule.drop:
                return Response(0, drop_connection=True)
            headers = {"Retry-After": rule.retry_after} if rule.retry_after is not None else None
            return self._error(req, rule.status, rule.message or _REASONS.get(rule.status, "Error"), headers)
        path = req.path
        if path.startswith("/token/"):
            return self._auth(req)
        if path.startswith("/oauth/") or path == "/activate":
            return self._oauth(req)
        if path.startswith("/2/0/"):
            return self._api(req)
        return self._error(req, 404, "Not Found")

    # --- auth host -------------------------------------------------------------------------------

    def _issue(self, user: str) -> Token:
        tok = Token(
            secrets.token_urlsafe(32),
            str(uuid.uuid4()),
            str(uuid.uuid4()),
            user,
            self.clock() + self.token_lifetime_s,
        )
        with self._lock:
            self._tokens[tok.value] = tok
        return tok

    def _token_body(self, req: Request, tok: Token, message: str) -> dict[str, Any]:
        return {
            "meta": {"validationUrl": f"{self._base(req)}/token/validate"},
            "status": "SUCCESS",
            "statusMessage": message,
            "tokenInfo": {
                "tokenId": tok.token_id,
                "tokenValue": tok.value,
                "expiresAt": int(tok.expires_at * 1000),
                "refreshTokenId": tok.refresh_token_id,
            },
        }

    def _bearer(self, req: Request, schemes: tuple[str, ...] = ("AnaplanAuthToken",)) -> Token | None:
        header = req.header("authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme not in schemes:
            return None
        with self._lock:
            tok = self._tokens.get(value.strip())
        if tok is None or tok.expires_at <= self.clock():
            return None
        return tok

    def _auth(self, req: Request) -> Response:
        path = req.path
        self.counters[f"{req.method} {path}"] += 1
        if path == "/token/authenticate" and req.method == "POST":
            header = req.header("authorization") or ""
            scheme, _, value = header.partition(" ")
            if scheme == "Basic":
                try:
                    user, _, password = base64.b64decode(value).decode("utf-8").partition(":")
                except (ValueError, UnicodeDecodeError):
                    return self._auth_error(400, "FAILURE_BAD_HEADER", "Invalid header. Verify the header.")
                if self.users.get(user) != password or not password:
                    return self._auth_error(401, "FAILURE_BAD_CREDENTIAL", "Invalid credentials")
                tok = self._issue(user)
            elif scheme == "CACertificate":
                outcome = self._certificate_login(value, req)
                if isinstance(outcome, Response):
                    return outcome
                tok = self._issue(outcome)
            else:
                return self._auth_error(400, "FAILURE_BAD_HEADER", "Invalid header. Verify the header.")
            self.counters["tokens_minted"] += 1
            return Response.json(201, self._token_body(req, tok, "Login successful"))
        header = req.header("authorization") or ""
        if header and not header.startswith("AnaplanAuthToken "):
            return self._auth_error(400, "FAILURE_BAD_HEADER", "Invalid header. Verify the header.")
        bearer = self._bearer(req)
        if bearer is None:
            return self._auth_error(401, "FAILURE_BAD_CREDENTIAL", "Invalid or expired token")
        if path == "/token/refresh" and req.method == "POST":
            with self._lock:
                bearer.expires_at = self.clock() + self.token_lifetime_s
            self.counters["tokens_refreshed"] += 1
            return Response.json(200, self._token_body(req, bearer, "Token refreshed"))
        if path == "/token/validate" and req.method == "GET":
            body = self._token_body(req, bearer, "Token validated")
            body["tokenInfo"] = {"expiresAt": int(bearer.expires_at * 1000), "tokenId": bearer.token_id}
            body["userInfo"] = {
                "userGuid": uuid.uuid5(uuid.NAMESPACE_DNS, bearer.user).hex,
                "userId": bearer.user,
                "customerGuid": "c" * 32,
            }
            return Response.json(200, body)
        if path == "/token/logout" and req.method == "POST":
            with self._lock:
                self._tokens.pop(bearer.value, None)
            return Response(204)
        return self._auth_error(400, "FAILURE_BAD_HEADER", "Unknown auth operation")

    def _certificate_login(self, header_value: str, req: Request) -> str | Response:
        bad_header = self._auth_error(400, "FAILURE_BAD_HEADER", "Invalid header. Verify the header.")
        bad_cred = self._auth_error(401, "FAILURE_BAD_CREDENTIAL", "Certificate authentication failed")
        try:
            raw = base64.b64decode(header_value.strip(), validate=True)
            if b"-----BEGIN" in raw:
                cert = x509.load_pem_x509_certificate(raw)
            else:
                cert = x509.load_der_x509_certificate(raw)
        except ValueError:
            return bad_header
        entry = self._certificates.get(cert.public_bytes(Encoding.DER))
        if entry is None:
            return bad_cred
        user, key = entry
        try:
            body = req.json() or {}
            data = base64.b64decode(body["encodedData"], validate=True)
            signature = base64.b64decode(body["encodedSignedData"], validate=True)
        except (ValueError, KeyError, TypeError):
            return bad_header
        fmt = body.get("encodedDataFormat")
        if fmt not in (None, "v1", "v2"):
            return bad_header
        if fmt == "v2":
            if len(data) < 108:
                return bad_cred
            (stamp,) = struct.unpack(">Q", data[:8])
            now = self.clock()
            seconds = (
                stamp / 1000 if stamp > 10**11 else float(stamp)
            )  # seconds or milliseconds (UNCONFIRMED)
            if abs(seconds - now) > self.certificate_skew_s:
                return bad_cred
        elif len(data) < 100:
            return bad_cred
        try:
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA512())
        except InvalidSignature:
            return bad_cred
        digest = body["encodedData"]
        with self._lock:
            if digest in self._seen_payloads:
                return bad_cred  # a payload cannot be reused
            self._seen_payloads.add(digest)
        self.counters[f"certificate_{fmt or 'v1'}"] += 1
        return user

    # --- OAuth host ------------------------------------------------------------------------------

    def _oauth_body(self, req: Request) -> dict[str, Any]:
        ctype = (req.header("content-type") or "").lower()
        if "application/x-www-form-urlencoded" in ctype:
            return dict(parse_qsl(req.body.decode("utf-8")))
        try:
            body = req.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _oauth(self, req: Request) -> Response:
        self.counters[f"{req.method} {req.path}"] += 1
        if req.path == "/activate":
            code = req.query_value("user_code") or ""
            ok = self.approve_device(code)
            html = (
                b"<html><body>Device approved.</body></html>"
                if ok
                else b"<html><body>Unknown code.</body></html>"
            )
            return Response(200 if ok else 404, html, {"Content-Type": "text/html"})
        body = self._oauth_body(req)
        if req.path == "/oauth/device/code" and req.method == "POST":
            client = str(body.get("client_id") or "")
            if client not in self.oauth_clients:
                return self._oauth_error(
                    403, "unauthorized_client", "Unknown client or client not enabled for the device grant."
                )
            device = DeviceRequest(
                device_code=secrets.token_urlsafe(24),
                user_code=f"{secrets.token_hex(2).upper()}-{secrets.token_hex(2).upper()}",
                client_id=client,
                scope=str(body.get("scope") or "openid email offline_access"),
                expires_at=self.clock() + self.device_expires_s,
                interval=float(self.device_interval_s),
            )
            with self._lock:
                self._devices[device.device_code] = device
            base = self._base(req)
            return Response.json(
                200,
                {
                    "device_code": device.device_code,
                    "user_code": device.user_code,
                    "verification_uri": f"{base}/activate",
                    "verification_uri_complete": f"{base}/activate?user_code={device.user_code}",
                    "expires_in": self.device_expires_s,
                    "interval": self.device_interval_s,
                },
            )
        if req.path == "/oauth/token" and req.method == "POST":
            grant = body.get("grant_type")
            client = str(body.get("client_id") or "")
            if client not in self.oauth_clients:
                return self._oauth_error(401, "unauthorized_client", "Unknown client.")
            if grant == "urn:ietf:params:oauth:grant-type:device_code":
                return self._device_token(str(body.get("device_code") or ""), client)
            if grant == "refresh_token":
                return self._refresh_grant(str(body.get("refresh_token") or ""), client)
            return self._oauth_error(400, "invalid_request", f"Unsupported grant_type {grant!r}.")
        return self._oauth_error(400, "invalid_request", "Unknown OAuth operation.")

    def _tokens_for(self, client: str, scope: str, refresh: str | None) -> Response:
        tok = self._issue(f"oauth:{client}")
        self.counters["tokens_minted"] += 1
        granted = " ".join(s for s in scope.split() if s != "profile")
        body: dict[str, Any] = {
            "access_token": tok.value,
            "id_token": base64.urlsafe_b64encode(json.dumps({"sub": client}).encode()).decode().rstrip("="),
            "scope": granted,
            "expires_in": int(self.token_lifetime_s),
            "token_type": "Bearer",
        }
        if refresh:
            body["refresh_token"] = refresh
        return Response.json(200, body)

    def _device_token(self, device_code: str, client: str) -> Response:
        now = self.clock()
        with self._lock:
            req = self._devices.get(device_code)
            if req is None or req.client_id != client or req.used:
                return self._oauth_error(403, "invalid_grant", "Invalid or already used device code.")
            if now >= req.expires_at:
                return self._oauth_error(403, "expired_token", "The device code has expired.")
            too_fast = req.last_poll is not None and now - req.last_poll < req.interval
            req.last_poll = now
            req.polls += 1
            self.counters["device_polls"] += 1
            if too_fast:
                req.interval += 5
                return self._oauth_error(
                    403, "slow_down", "You are polling faster than the specified interval."
                )
            if (
                not req.approved
                and self.device_auto_approve_after is not None
                and req.polls > self.device_auto_approve_after
            ):
                req.approved = True
            if not req.approved:
                return self._oauth_error(
                    403, "authorization_pending", "User has yet to authorize device code."
                )
            req.used = True
            refresh = secrets.token_urlsafe(32) if "offline_access" in req.scope.split() else None
            if refresh:
                self._refresh_tokens[refresh] = (client, req.scope)
        return self._tokens_for(client, req.scope, refresh)

    def _refresh_grant(self, refresh: str, client: str) -> Response:
        with self._lock:
            entry = self._refresh_tokens.get(refresh)
            if entry is None or entry[0] != client:
                return self._oauth_error(403, "invalid_grant", "Unknown or invalid refresh token.")
            rotating = self.oauth_clients.get(client, False)
            new_refresh = refresh
            if rotating:  # single use: the old one stops working
                del self._refresh_tokens[refresh]
                new_refresh = secrets.token_urlsafe(32)
                self._refresh_tokens[new_refresh] = entry
            self.counters["refresh_grants"] += 1
        return self._tokens_for(client, entry[1], new_refresh)

    # --- API host --------------------------------------------------------------------------------

    def _api(self, req: Request) -> Response:
        if self.bucket is not None:
            wait = self.bucket.take()
            if wait > 0:
                self.counters["rate_limited"] += 1
                headers = (
                    {"Retry-After": str(max(1, int(wait + 0.999)))} if self.rate_limit_retry_after else None
                )
                return self._error(req, 429, "Too Many Requests", headers)
        tok = self._bearer(req, ("AnaplanAuthToken", "Bearer"))
        if tok is None:
            self.counters["unauthorized"] += 1
            return self._error(req, 401, "Unauthorized")
        path = req.path[len("/2/0") :]
        ws = self.seed.workspace_id
        model = self.seed.model_id
        m = re.match(rf"^(?:/workspaces/{ws})?/models/{model}(/.*)?$", path)
        if m is None:
            return self._tenant_routes(req, path)
        rest = m.group(1) or ""
        if self.model_state == "ARCHIVED" and rest:
            return self._error(req, 422, "Model archived")
        for method, pattern, name in _ROUTES:
            if method != req.method:
                continue
            found = pattern.match(rest)
            if found:
                self.counters[f"{method} {name}"] += 1
                handler: Callable[..., Response] = getattr(self, f"_r_{name}")
                return handler(req, *found.groups())
        return self._error(req, 404, "Not Found")

    def _tenant_routes(self, req: Request, path: str) -> Response:
        ws = {
            "id": self.seed.workspace_id,
            "name": self.seed.workspace_name,
            "active": True,
            "sizeAllowance": 10**10,
            "currentSize": 10**8,
        }
        model = self._model_view(details=req.query_value("modelDetails") == "true")
        self.counters[f"{req.method} {re.sub(r'[0-9A-Fa-f]{32}', '{id}', path)}"] += 1
        if req.method != "GET":
            return self._error(req, 404, "Not Found")
        if path == "/workspaces":
            return self._page(req, "workspace", "workspaces", [ws])
        if path == f"/workspaces/{self.seed.workspace_id}":
            return self._ok(req, "workspace", {"workspace": ws})
        if path in ("/models", f"/workspaces/{self.seed.workspace_id}/models"):
            other = model_view(  # a second model of the workspace, never touched by the connector
                ModelFacts("B1E2D3C4B5A697887766554433221100", "Workforce Plan", self.seed.workspace_id,
                           self.seed.workspace_name, serial=1_400_000, memory_usage=212_860_928),
                "UNLOCKED",
                details=req.query_value("modelDetails") == "true",
            )  # fmt: skip
            return self._page(req, "model", "models", [model, other])
        if path == "/users/me":
            email = next(iter(self.users))
            user = {
                "id": uuid.uuid5(uuid.NAMESPACE_DNS, email).hex,
                "active": True,
                "email": email,
                "emailOptIn": False,
                "firstName": "Integration",
                "lastName": "User",
                "lastLoginDate": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
            }
            return self._ok(req, "user", {"user": user})
        return self._error(req, 404, "Not Found")

    def _model_view(self, *, details: bool = False, single: bool = False) -> dict[str, Any]:
        facts = ModelFacts(
            self.seed.model_id, self.seed.model_name, self.seed.workspace_id, self.seed.workspace_name
        )
        with self._lock:
            tasks = list(self._tasks.values())
        running = any(t.state == "IN_PROGRESS" for t in tasks)
        done = sum(1 for t in tasks if t.state == "COMPLETE" and t.kind == "imports")
        return model_view(facts, self.model_state, details=details, single=single, transaction_running=running,
                          serial_offset=done)  # fmt: skip

    def _writable(self, req: Request) -> Response | None:
        if self.model_state == "LOCKED":
            return self._error(req, 423, "Model locked")
        return None

    # model

    def _r_model(self, req: Request) -> Response:
        details = req.query_value("modelDetails") == "true"
        return self._ok(req, "model", {"model": self._model_view(details=details, single=True)})

    def _r_model_calendar(self, req: Request) -> Response:
        tok = self._bearer(req, ("AnaplanAuthToken", "Bearer"))
        status, payload = model_calendar(self.calendar, tok.user if tok else None, self.clock)
        if status != 200:
            return self._error(req, status, "Forbidden")
        return Response.json(200, {"meta": {"schema": "https://api.anaplan.com/2/0/objects/modelCalendar"},
                                   "status": {"code": 200, "message": "Success"}, **payload})  # fmt: skip

    def _r_line_items(self, req: Request) -> Response:
        return self._page(req, "lineItem", "items", td.line_items(self.seed))

    def _r_line_item_dimensions(self, req: Request, item_id: str) -> Response:
        dims = td.dimensions(self.seed, item_id)
        return (
            self._error(req, 404, "Not Found")
            if dims is None
            else self._page(req, "dimension", "dimensions", dims)
        )

    def _r_line_item_dimension_items(self, req: Request, item_id: str, dim_id: str) -> Response:
        tok = self._bearer(req, ("AnaplanAuthToken", "Bearer"))
        status, payload = td.dimension_items(
            self.seed, self.module_access, tok.user if tok else None, item_id, dim_id
        )
        return self._ok(req, "dimension", payload) if status == 200 else self._error(req, status, "Not Found")

    def _r_status(self, req: Request) -> Response:
        running = next((t for t in self._tasks.values() if t.state == "IN_PROGRESS"), None)
        status = {
            "taskId": running.id if running else None,
            "currentStep": "Processing ..." if running else "Open",
            "tooltip": f"{running.kind[:-1]} running" if running else None,
            "progress": running.progress if running else -1.0,
            "creationTime": int(self.clock() * 1000),
            "exportTaskType": None,
            "peakMemoryUsageEstimate": None,
            "peakMemoryUsageTime": None,
        }
        return Response.json(200, {"requestStatus": status})

    # catalogue
    def _r_imports(self, req: Request) -> Response:
        items = [
            {"id": i.id, "name": i.name, "importDataSourceId": i.file_id, "importType": i.import_type}
            for i in self.seed.imports.values()
        ]
        return self._page(req, "import", "imports", items)

    def _r_import(self, req: Request, import_id: str) -> Response:
        imp = self.seed.imports.get(import_id)
        if imp is None:
            return self._error(req, 404, "Not Found")
        meta = {
            "name": imp.name,
            "type": "FILE",
            "source": {
                "textEncoding": "UTF-8",
                "columnSeparator": ",",
                "textDelimiter": '"',
                "headerRow": 1,
                "firstDataRow": 2,
                "decimalSeparator": ".",
                "headerNames": imp.header_names,
                "columnCount": len(imp.header_names),
            },
        }
        return self._ok(req, "importMetadata", {"importMetadata": meta})

    def _r_exports(self, req: Request) -> Response:
        items = [
            {
                "id": e.id,
                "name": e.name,
                "exportType": "TABULAR_MULTI_COLUMN",
                "exportFormat": "text/csv",
                "encoding": "UTF-8",
                "layout": "TABULAR_MULTI_COLUMN",
            }
            for e in self.seed.exports.values()
        ]
        return self._page(req, "export", "exports", items)

    def _r_export(self, req: Request, export_id: str) -> Response:
        exp = self.seed.exports.get(export_id)
        if exp is None:
            return self._error(req, 404, "Not Found")
        headers = exp.header_names
        if exp.time_in_columns:
            from devkit.sandbox.anaplan.shapes import time_in_columns_header

            with self._lock:
                headers = time_in_columns_header(
                    self.seed, exp, sorted(self.seed.modules[exp.module].cells.items())
                )
        meta = {
            "columnCount": len(headers),
            "dataTypes": ["ENTITY"] * 4 + ["NUMBER", "TEXT"],
            "delimiter": '"',
            "encoding": "UTF-8",
            "exportFormat": "text/csv",
            "headerNames": headers,
            "listNames": ["Legal Entities", "Accounts", "Periods", "Versions"],
            "rowCount": sum(1 for k in self.seed.modules[exp.module].cells if k[-1] == exp.version),
            "separator": ",",
            "layout": "TABULAR_MULTI_COLUMN",
        }
        return self._ok(req, "exportMetadata", {"exportMetadata": meta})

    def _r_processes(self, req: Request) -> Response:
        return self._page(
            req, "process", "processes", [{"id": p.id, "name": p.name} for p in self.seed.processes.values()]
        )

    def _r_process(self, req: Request, process_id: str) -> Response:
        proc = self.seed.processes.get(process_id)
        if proc is None:
            return self._error(req, 404, "Not Found")
        actions = []
        for aid in proc.actions:
            imp = self.seed.imports[aid]
            actions.append(
                {
                    "id": aid,
                    "name": imp.name,
                    "actionType": "IMPORT",
                    "importDataSourceId": imp.file_id,
                    "importType": imp.import_type,
                }
            )
        return self._ok(req, "processMetadata", {"processMetadata": {"name": proc.name, "actions": actions}})

    def _r_actions(self, req: Request) -> Response:
        return self._page(req, "action", "actions", [])

    def _file_view(self, f: StoredFile) -> dict[str, Any]:
        return {
            "id": f.id,
            "name": f.name,
            "chunkCount": f.chunk_count,
            "delimiter": '"',
            "encoding": "UTF-8",
            "firstDataRow": 2,
            "format": "txt",
            "headerRow": 1,
            "separator": ",",
        }

    def _r_files(self, req: Request) -> Response:
        items = [self._file_view(f) for f in self.files.values()]
        for export_id, chunks in self._export_files.items():
            exp = self.seed.exports[export_id]
            items.append(
                {
                    **self._file_view(StoredFile(export_id, exp.name + ".csv", self.storage)),
                    "chunkCount": len(chunks),
                }
            )
        return self._page(req, "file", "files", items)

    def _r_lists(self, req: Request) -> Response:
        return self._page(
            req, "list", "lists", [{"id": lst.id, "name": lst.name} for lst in self.seed.lists.values()]
        )

    def _find_list(self, list_id: str) -> ListDef | None:
        return next((lst for lst in self.seed.lists.values() if lst.id == list_id), None)

    def _r_list_items(self, req: Request, list_id: str) -> Response:
        lst = self._find_list(list_id)
        if lst is None:
            return self._error(req, 404, "Not Found")
        with self._lock:
            members = list(lst.members.values())
        include_all = req.query_value("includeAll") == "true"
        items = []
        for mem in members:
            item: dict[str, Any] = {"id": mem.id, "name": mem.name, "code": mem.code}
            if mem.parent:
                item["parent"] = mem.parent
            if include_all:
                item["properties"] = {}
                item["subsets"] = {}
            items.append(item)
        return self._page(req, "listItem", "listItems", items)

    def _r_modules(self, req: Request) -> Response:
        return self._page(
            req, "module", "modules", [{"id": m.id, "name": m.name} for m in self.seed.modules.values()]
        )

    # files
    def _file(self, file_id: str, create: bool = False) -> StoredFile | None:
        with self._lock:
            f = self.files.get(file_id)
            if f is None and create and file_id not in self.seed.exports:
                f = StoredFile(file_id, file_id, self.storage / file_id)  # Anaplan creates unknown files
                self.files[file_id] = f
            return f

    def _r_file_post(self, req: Request, file_id: str) -> Response:
        blocked = self._writable(req)
        if blocked:
            return blocked
        body = req.json() or {}
        count = body.get("chunkCount")
        if not isinstance(count, int) or (count < 1 and count != -1):
            return self._error(req, 400, "chunkCount must be a positive number or -1")
        f = self._file(file_id, create=True)
        assert f is not None
        with self._lock:
            f.reset()
            f.chunk_count = count
            f.directory.mkdir(parents=True, exist_ok=True)
        return self._ok(req, "file", {"file": self._file_view(f)})

    def _r_file_put(self, req: Request, file_id: str) -> Response:
        blocked = self._writable(req)
        if blocked:
            return blocked
        f = self._file(file_id, create=True)
        assert f is not None
        if "gzip" in (req.header("content-type") or ""):
            return self._error(req, 400, "A single-shot upload cannot be compressed")
        with self._lock:
            f.reset()
            f.directory.mkdir(parents=True, exist_ok=True)
            path = f.directory / "single"
            path.write_bytes(req.body)
            f.chunks[0] = (path, False)
            f.chunk_count = 1
            f.complete = True
        self.counters["single_uploads"] += 1
        return Response(204)

    def _r_chunk_put(self, req: Request, file_id: str, index: str) -> Response:
        blocked = self._writable(req)
        if blocked:
            return blocked
        f = self._file(file_id)
        if f is None:
            return self._error(req, 404, "Not Found")
        n = int(index)
        zipped = "gzip" in (req.header("content-type") or "")
        if zipped:
            try:  # verify the whole gzip stream without keeping the decompressed data
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                size = 0
                view = memoryview(req.body)
                for start in range(0, len(view), 1 << 20):
                    size += len(d.decompress(view[start : start + (1 << 20)], 1 << 22))
                    while d.unconsumed_tail:
                        size += len(d.decompress(d.unconsumed_tail, 1 << 22))
                size += len(d.flush())
                if not d.eof:
                    raise zlib.error("truncated")
            except zlib.error:
                return self._error(req, 400, f"Chunk {n} is not valid gzip data")
        else:
            size = len(req.body)
        if size > 50 * MB:
            return self._error(req, 400, f"Chunk {n} is larger than 50 MB uncompressed")
        with self._lock:
            if f.chunk_count != -1 and n >= max(f.chunk_count, 0):
                return self._error(req, 400, f"Chunk {n} is outside the chunk count {f.chunk_count}")
            if n >= 1000:
                return self._error(req, 400, "A file may have at most 1000 chunks")
            f.directory.mkdir(parents=True, exist_ok=True)
            path = f.directory / f"chunk-{n}"
            path.write_bytes(req.body)
            f.chunks[n] = (path, zipped)
            if f.chunk_count != -1 and len(f.chunks) == f.chunk_count:
                f.complete = True
        self.counters["chunks_received"] += 1
        self.counters["chunk_bytes_received"] += len(req.body)
        return Response(204)

    def _r_file_complete(self, req: Request, file_id: str) -> Response:
        f = self._file(file_id)
        if f is None:
            return self._error(req, 404, "Not Found")
        with self._lock:
            indexes = sorted(f.chunks)
            if indexes != list(range(len(indexes))):
                return self._error(req, 400, f"Chunks are missing: have {indexes}")
            f.chunk_count = len(indexes)
            f.complete = True
        return self._ok(req, "file", {"file": self._file_view(f)})

    def _chunks_of(self, file_id: str) -> list[bytes] | StoredFile | None:
        if file_id in self._export_files:
            return self._export_files[file_id]
        return self._file(file_id)

    def _r_file_chunks(self, req: Request, file_id: str) -> Response:
        found = self._chunks_of(file_id)
        if found is None:
            return self._error(req, 404, "Not Found")
        count = len(found) if isinstance(found, list) else len(found.chunks)
        return self._page(
            req, "chunk", "chunks", [{"id": str(i), "name": f"Chunk {i}"} for i in range(count)]
        )

    def _r_file_chunk_get(self, req: Request, file_id: str, index: str) -> Response:
        found = self._chunks_of(file_id)
        n = int(index)
        if isinstance(found, list):
            if n >= len(found):
                return self._error(req, 404, "Not Found")
            data = found[n]
        elif found is not None and n in found.chunks:
            path, zipped = found.chunks[n]
            data = gzip.decompress(path.read_bytes()) if zipped else path.read_bytes()
        else:
            return self._error(req, 404, "Not Found")
        return Response(200, data, {"Content-Type": "application/octet-stream"})

    def _r_file_get(self, req: Request, file_id: str) -> Response:
        found = self._chunks_of(file_id)
        if isinstance(found, list):
            data = b"".join(found)
        elif found is not None and found.chunks:
            data = b"".join(found.iter_bytes())
        else:
            return self._error(req, 404, "Not Found")
        return Response(200, data, {"Content-Type": "application/octet-stream"})

    def _r_file_delete(self, req: Request, file_id: str) -> Response:
        f = self._file(file_id)
        if f is None:
            return self._error(req, 404, "Not Found")
        with self._lock:
            f.reset()
        return Response(204)

    # tasks
    def _action_exists(self, kind: str, action_id: str) -> bool:
        known: dict[str, Any] = {
            "imports": self.seed.imports,
            "exports": self.seed.exports,
            "processes": self.seed.processes,
        }
        return action_id in known.get(kind, {})

    def _r_task_start(self, req: Request, kind: str, action_id: str) -> Response:
        if not self._action_exists(kind, action_id):
            return self._error(req, 404, "Not Found")
        blocked = self._writable(req)
        if blocked:
            return blocked
        if self.faults.take_busy():
            return self._error(req, 409, "The model is busy running another action; try again later")
        body = req.json() or {}
        if not isinstance(body, dict) or "localeName" not in body:
            return self._error(req, 400, "localeName is required")
        task = SandboxTask(uuid.uuid4().hex.upper(), kind, action_id, self.clock())
        with self._lock:
            self._tasks[task.id] = task
            # actions of this model not finished when this one starts, itself included (Anaplan locks the model)
            unfinished = sum(1 for t in self._tasks.values() if t.state in ("NOT_STARTED", "IN_PROGRESS"))
            self.counters["max_actions_in_flight"] = max(self.counters["max_actions_in_flight"], unfinished)
        with self._queue_cv:
            self._queue.append(task)
            self._queue_cv.notify_all()
        self.counters["tasks_started"] += 1
        return self._ok(
            req,
            "task",
            {"task": {"taskId": task.id, "taskState": task.state, "creationTime": int(task.created * 1000)}},
        )

    def _r_task_list(self, req: Request, kind: str, action_id: str) -> Response:
        tasks = [t.view() for t in self._tasks.values() if t.kind == kind and t.action_id == action_id]
        for t in tasks:
            t.pop("result", None)
        return self._page(req, "task", "tasks", tasks)

    def _get_task(self, kind: str, action_id: str, task_id: str) -> SandboxTask | None:
        task = self._tasks.get(task_id)
        return task if task is not None and task.kind == kind and task.action_id == action_id else None

    def _r_task_get(self, req: Request, kind: str, action_id: str, task_id: str) -> Response:
        task = self._get_task(kind, action_id, task_id)
        if task is None:
            return self._error(req, 404, "Not Found")
        task.polls += 1
        self.counters["polls"] += 1
        with self._lock:
            view = task.view()
        return self._ok(req, "task", {"task": view})

    def _r_task_delete(self, req: Request, kind: str, action_id: str, task_id: str) -> Response:
        task = self._get_task(kind, action_id, task_id)
        if task is None:
            return self._error(req, 404, "Not Found")
        with self._lock:
            if task.state == "NOT_STARTED":
                task.state = "CANCELLED"
                task.step = "Cancelled."
                task.result = {"successful": False, "failureDumpAvailable": False, "objectId": action_id}
            elif task.state == "IN_PROGRESS":
                task.state = "CANCELLING"
                task.step = "Cancelling."
            task.cancel.set()
            view = task.view()
        self.counters["cancels"] += 1
        return self._ok(req, "task", {"task": view})

    def _dump(self, task_id: str, import_id: str, kind: str = "imports") -> list[bytes] | None:
        task = self._tasks.get(task_id)
        if task is None or task.kind != kind:
            return None
        return task.dumps.get(import_id)

    def _r_dump_chunks(self, req: Request, import_id: str, task_id: str) -> Response:
        chunks = self._dump(task_id, import_id)
        if chunks is None:
            return self._error(req, 404, "Not Found")
        return self._page(
            req, "chunk", "chunks", [{"id": str(i), "name": f"Chunk {i}"} for i in range(len(chunks))]
        )

    def _r_dump_chunk(self, req: Request, import_id: str, task_id: str, index: str) -> Response:
        chunks = self._dump(task_id, import_id)
        n = int(index)
        if chunks is None or n >= len(chunks):
            return self._error(req, 404, "Not Found")
        return Response(200, chunks[n], {"Content-Type": "text/plain"})

    def _r_dump(self, req: Request, import_id: str, task_id: str) -> Response:
        chunks = self._dump(task_id, import_id)
        if chunks is None:
            return self._error(req, 404, "Not Found")
        return Response(200, b"".join(chunks), {"Content-Type": "text/plain"})

    def _r_process_dump_chunks(self, req: Request, process_id: str, task_id: str, object_id: str) -> Response:
        task = self._tasks.get(task_id)
        chunks = task.dumps.get(object_id) if task is not None and task.action_id == process_id else None
        if chunks is None:
            return self._error(req, 404, "Not Found")
        return self._page(
            req, "chunk", "chunks", [{"id": str(i), "name": f"Chunk {i}"} for i in range(len(chunks))]
        )

    def _r_process_dump_chunk(
        self, req: Request, process_id: str, task_id: str, object_id: str, index: str
    ) -> Response:
        task = self._tasks.get(task_id)
        chunks = task.dumps.get(object_id) if task is not None and task.action_id == process_id else None
        n = int(index)
        if chunks is None or n >= len(chunks):
            return self._error(req, 404, "Not Found")
        return Response(200, chunks[n], {"Content-Type": "text/plain"})

    # --- task execution --------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._queue_cv:
                while not self._queue and not self._stopping:
                    self._queue_cv.wait()
                if self._stopping:
                    return
                task = self._queue.pop(0)
            if task.cancel.is_set() or task.state == "CANCELLED":
                continue
            if task.cancel.wait(self.task_start_delay_s):
                self._finish_cancelled(task)
                continue
            with self._lock:
                task.state = "IN_PROGRESS"
                task.step = "Processing ..."
                task.progress = 0.5
            if task.cancel.wait(self.task_run_delay_s):
                self._finish_cancelled(task)
                continue
            try:
                result = self._execute(task)
            except Exception as exc:  # noqa: BLE001 - a sandbox bug still ends the task
                result = {"successful": False, "failureDumpAvailable": False, "objectId": task.action_id, "details": [
                    {"type": "error", "localMessageText": f"sandbox error: {type(exc).__name__}: {exc}", "occurrences": 1, "values": []}
                ]}  # fmt: skip
            with self._lock:
                if task.cancel.is_set():
                    self._finish_cancelled(task)
                    continue
                task.result = result
                task.state = "COMPLETE"
                task.step = "Complete."
                task.progress = 1.0

    def _finish_cancelled(self, task: SandboxTask) -> None:
        with self._lock:
            task.state = "CANCELLED"
            task.step = "Cancelled."
            task.result = {"successful": False, "failureDumpAvailable": False, "objectId": task.action_id}

    def _execute(self, task: SandboxTask) -> dict[str, Any]:
        if task.kind == "imports":
            return self._run_import(task, self.seed.imports[task.action_id])
        if task.kind == "exports":
            return self._run_export(self.seed.exports[task.action_id])
        proc = self.seed.processes[task.action_id]
        nested = [self._run_import(task, self.seed.imports[aid]) for aid in proc.actions]
        for n in nested:
            n.pop("objectName", None)
        return {
            "successful": all(n["successful"] for n in nested),
            "failureDumpAvailable": any(n["failureDumpAvailable"] for n in nested),
            "objectId": proc.id,
            "nestedResults": nested,
        }

    def _lines(self, f: StoredFile) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        pending = ""
        for piece in f.iter_bytes():
            pending += decoder.decode(piece)
            *lines, pending = pending.split("\n")
            for line in lines:
                yield line + "\n"
        pending += decoder.decode(b"", final=True)
        if pending:
            yield pending

    def _run_import(self, task: SandboxTask, imp: ImportDef) -> dict[str, Any]:
        f = self.files[imp.file_id]
        forced_failure = self.faults.take_import_failure()
        base: dict[str, Any] = {"objectId": imp.id, "objectName": imp.name}
        if not f.complete or not f.chunks:
            detail = {
                "type": "noData",
                "localMessageText": f"{imp.name}: the data source file has no content",
                "occurrences": 1,
                "values": [],
            }
            return {**base, "successful": False, "failureDumpAvailable": False, "details": [detail]}
        reader = csv.reader(self._lines(f))
        header = [h.strip() for h in next(reader, [])]
        missing = [h for h in imp.header_names if h not in header]
        if missing:
            detail = {
                "type": "headerMismatch",
                "localMessageText": f"{imp.name}: columns {missing} not found in the file header {header}",
                "occurrences": 1,
                "values": missing,
            }
            return {**base, "successful": False, "failureDumpAvailable": False, "details": [detail]}
        pos = {h: header.index(h) for h in imp.header_names}
        dump_rows: list[list[str]] = []
        counts = Counter[str]()
        if imp.import_type == "HIERARCHY_DATA":
            target_list = self.seed.lists[imp.target]
            for line_no, row in enumerate(reader, start=2):
                if not any(c.strip() for c in row):
                    continue
                counts["total"] += 1
                code = row[pos["Code"]].strip() if len(row) > pos["Code"] else ""
                name = row[pos["Name"]].strip() if len(row) > pos["Name"] else ""
                if not code:
                    dump_rows.append(["E", str(line_no), "Code is blank", *row])
                    counts["failed"] += 1
                    continue
                with self._lock:
                    existing = target_list.members.get(code)
                    if existing is None:
                        target_list.members[code] = Member(
                            code, name or code, f"2{len(target_list.members) + 1:09d}{target_list.id[-3:]}"
                        )
                        counts["created"] += 1
                    else:
                        existing.name = name or existing.name
                        counts["updated"] += 1
                counts["success"] += 1
            hierarchy = imp.target
        else:
            module: ModuleDef = self.seed.modules[imp.target]
            for line_no, row in enumerate(reader, start=2):
                if not any(c.strip() for c in row):
                    continue
                counts["total"] += 1
                error = None
                key: list[str] = []
                for column, list_name in module.dimensions:
                    value = row[pos[column]].strip() if len(row) > pos[column] else ""
                    member = self.seed.lists[list_name].find(value)
                    if member is None:
                        error = f"Item not located in {list_name} list: {value}"
                        break
                    key.append(member.code)
                amount: Decimal | None = None
                if error is None:
                    raw = row[pos["Amount"]].strip() if len(row) > pos["Amount"] else ""
                    try:
                        amount = Decimal(raw)
                        if not amount.is_finite():
                            raise InvalidOperation
                    except InvalidOperation:
                        error = f"Invalid number for Amount: {raw!r}"
                if error is not None:
                    dump_rows.append(["E", str(line_no), error, *row])
                    counts["failed"] += 1
                    continue
                with self._lock:
                    cell = module.cells.get(tuple(key))
                    if cell is None:
                        counts["created"] += 1
                    else:
                        counts["updated"] += 1
                    module.cells[tuple(key)] = {"Amount": amount}
                counts["success"] += 1
            hierarchy = module.name
        if forced_failure and not dump_rows:
            dump_rows.append(["E", "0", "Injected failure: the import was rejected", *[""] * len(header)])
            counts["failed"] += 1
        successful = not forced_failure and not (counts["total"] and counts["success"] == 0)
        result: dict[str, Any] = {**base, "successful": successful, "failureDumpAvailable": bool(dump_rows)}
        values = [
            "hierarchyName", hierarchy,
            "successRowCount", str(counts["success"]),
            "successCreateCount", str(counts["created"]),
            "successUpdateCount", str(counts["updated"]),
            "warningsRowCount", "0",
            "failedCount", str(counts["failed"]),
            "ignoredCount", "0",
            "totalRowCount", str(counts["total"]),
            "invalidCount", str(counts["failed"]),
            "updatedCount", str(counts["updated"]),
            "renamedCount", "0",
            "createdCount", str(counts["created"]),
        ]  # fmt: skip
        text = f"{hierarchy}: {counts['success']} ({counts['created']}/{counts['updated']}) rows successful, {counts['failed']} failed "
        result["details"] = [
            {"type": "hierarchyRowsProcessed", "localMessageText": text, "occurrences": 0, "values": values}
        ]
        if dump_rows:
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["_Status_", "_Line_", "_Error_1_", *header])
            writer.writerows(dump_rows)
            data = out.getvalue().encode("utf-8")
            task.dumps[imp.id] = [
                data[i : i + self.dump_chunk_size] for i in range(0, len(data), self.dump_chunk_size)
            ]
        return result

    def _run_export(self, exp: ExportDef) -> dict[str, Any]:
        module = self.seed.modules[exp.module]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(exp.header_names)
        rows = 0
        with self._lock:
            cells = sorted(module.cells.items())
        if exp.time_in_columns:
            from devkit.sandbox.anaplan.shapes import time_in_columns_export

            return self._store_export(exp, time_in_columns_export(self.seed, exp, cells))
        columns = [column for column, _ in module.dimensions]
        versioned = "Version" in columns  # a module without Versions exports every cell
        for key, values in cells:
            if versioned and key[-1] != exp.version:
                continue
            amount = values.get("Amount")
            text = f"{amount:.2f}" if isinstance(amount, Decimal) else ""
            # Tabular export: each header names a dimension or a line item (a column the export leaves out,
            # such as Version when the view shows one version, is simply not written).
            named = {
                **dict(zip(columns, key, strict=True)),
                "Amount": text,
                "Approval": values.get("Approval", ""),
            }
            writer.writerow([named.get(h, "") for h in exp.header_names])
            rows += 1
        return self._store_export(exp, out.getvalue().encode("utf-8"))

    def _store_export(self, exp: ExportDef, data: bytes) -> dict[str, Any]:
        size = self.export_chunk_size
        self._export_files[exp.id] = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        return {"successful": True, "failureDumpAvailable": False, "objectId": exp.id, "objectName": exp.name}


_REASONS = {
    400: "Bad Request",
    409: "Conflict",
    422: "Model archived",
    423: "Model locked",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

_KIND = "(imports|exports|processes|actions)"
_ID = "([^/]+)"
_ROUTES.extend(
    (method, re.compile(f"^{pattern}$"), name)
    for method, pattern, name in [
        ("GET", "", "model"),
        ("GET", "/status", "status"),
        ("GET", "/modelCalendar", "model_calendar"),
        ("GET", "/imports/?", "imports"),
        ("GET", f"/imports/{_ID}", "import"),
        ("GET", "/exports/?", "exports"),
        ("GET", f"/exports/{_ID}", "export"),
        ("GET", "/processes/?", "processes"),
        ("GET", f"/processes/{_ID}", "process"),
        ("GET", "/actions/?", "actions"),
        ("GET", "/files/?", "files"),
        ("GET", "/lists/?", "lists"),
        ("GET", f"/lists/{_ID}/items", "list_items"),
        ("GET", "/modules/?", "modules"),
        ("GET", "/lineItems/?", "line_items"),
        ("GET", f"/lineItems/{_ID}/dimensions/?", "line_item_dimensions"),
        ("GET", f"/lineItems/{_ID}/dimensions/{_ID}/items", "line_item_dimension_items"),
        ("POST", f"/files/{_ID}", "file_post"),
        ("PUT", f"/files/{_ID}", "file_put"),
        ("GET", f"/files/{_ID}", "file_get"),
        ("DELETE", f"/files/{_ID}", "file_delete"),
        ("PUT", f"/files/{_ID}/chunks/{_ID}", "chunk_put"),
        ("GET", f"/files/{_ID}/chunks", "file_chunks"),
        ("GET", f"/files/{_ID}/chunks/{_ID}", "file_chunk_get"),
        ("POST", f"/files/{_ID}/complete", "file_complete"),
        ("POST", f"/{_KIND}/{_ID}/tasks", "task_start"),
        ("GET", f"/{_KIND}/{_ID}/tasks", "task_list"),
        ("GET", f"/{_KIND}/{_ID}/tasks/{_ID}", "task_get"),
        ("DELETE", f"/{_KIND}/{_ID}/tasks/{_ID}", "task_delete"),
        ("GET", f"/imports/{_ID}/tasks/{_ID}/dump", "dump"),
        ("GET", f"/imports/{_ID}/tasks/{_ID}/dump/chunks", "dump_chunks"),
        ("GET", f"/imports/{_ID}/tasks/{_ID}/dump/chunks/{_ID}", "dump_chunk"),
        ("GET", f"/processes/{_ID}/tasks/{_ID}/dumps/{_ID}/chunks", "process_dump_chunks"),
        ("GET", f"/processes/{_ID}/tasks/{_ID}/dumps/{_ID}/chunks/{_ID}", "process_dump_chunk"),
    ]
)


def role_app(app: AnaplanSandbox, role: str) -> Any:
    """A view of ``app`` that answers only one host's paths (``auth``, ``oauth`` or ``api``)."""
    prefixes = {"auth": ("/token/",), "oauth": ("/oauth/", "/activate"), "api": ("/2/0/", "/_sandbox/")}[role]

    class _Role:
        def handle(self, req: Request) -> Response:
            if not req.path.startswith(prefixes):
                return Response.json(
                    404,
                    {"status": {"code": 404, "message": f"Not Found on the {role} host"}, "path": req.path},
                )
            return app.handle(req)

    return _Role()
