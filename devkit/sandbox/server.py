"""A small threaded HTTPS server that sandboxes build on.

A sandbox is an object with ``handle(request) -> Response``; :class:`SandboxServer` serves it over real
HTTPS on loopback (port 0 picks a free port) in a background thread. Request counters per route are kept
here so tests and the demo can report what a client did.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from devkit.sandbox.tls import SandboxCA, default_ca


@dataclass
class Request:
    method: str
    path: str  # without query string, percent-decoding left to the sandbox
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    raw_target: str = ""

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def query_value(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None


@dataclass
class Response:
    status: int
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop_connection: bool = False  # fault injection: close the socket without answering

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        h = {"Content-Type": "application/json;charset=UTF-8", **(headers or {})}
        return cls(status, json.dumps(payload).encode("utf-8"), h)


Handler = Callable[[Request], Response]


class SandboxServer:
    """Serve ``app`` (anything with ``handle``) over HTTPS on ``host:port``."""

    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, ca: SandboxCA | None = None
    ) -> None:
        self.app = app
        self.ca = ca or default_ca()
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = (
                True  # headers and body go out in two writes; no 40 ms delayed-ACK stall
            )

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = self._read_chunked()
                parts = urlsplit(self.path)
                with server._lock:
                    server.requests[f"{self.command} {parts.path}"] += 1
                req = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qsl(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    raw_target=self.path,
                )
                try:
                    resp = server.app.handle(req)
                except Exception as exc:  # noqa: BLE001 - a sandbox bug must still answer like a server would
                    resp = Response.json(500, {"error": f"sandbox error: {type(exc).__name__}: {exc}"})
                if resp.drop_connection:
                    self.close_connection = True
                    self.connection.close()
                    return
                payload = resp.body if isinstance(resp.body, bytes) else b"".join(resp.body)
                self.send_response(resp.status)
                for k, v in resp.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _read_chunked(self) -> bytes:
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return bytes(out)
                    out += self.rfile.read(size)
                    self.rfile.readline()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.socket = self.ca.server_context().wrap_socket(self._httpd.socket, server_side=True)
        self.host = host
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"sandbox-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
