"""Helpers of the security tests: a leak listener on another loopback address, a scripted hostile TLS
server, and a connection configuration whose secrets are easy to look for."""

from __future__ import annotations

import copy
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from devkit.sandbox.tls import SandboxCA

SECRET = "s3cr3t-Never-Print-Me"
LEAK_HOST = "127.0.0.2"


def good() -> dict[str, Any]:
    """A valid connection (public hosts; nothing is contacted unless a test starts a server)."""
    return copy.deepcopy(
        {
            "name": "contoso",
            "dynamics": {
                "environment_url": "https://contoso.operations.dynamics.com",
                "tenant_id": "11111111-2222-3333-4444-555555555555",
                "client_id": "app-id",
                "client_secret": SECRET,
                "companies": ["USMF"],
            },
            "anaplan": {
                "workspace_id": "8a8b8c8d8e8f",
                "model_id": "ABCDEF0123456789",
                "auth": {"mode": "basic", "username": "integration@contoso.com", "password": SECRET},
            },
        }
    )


@dataclass
class LeakListener:
    """A plain TCP listener on 127.0.0.2 that records every connection made to it (and answers nothing)."""

    host: str = LEAK_HOST
    hits: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((self.host, 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="leak-listener", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(0.5)
                try:
                    first = conn.recv(4096)
                except OSError:
                    first = b""
                self.hits.append(first or b"<connected>")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


Responder = Callable[[bytes], Iterable[bytes]]


class HostileServer:
    """A TLS server on 127.0.0.1 whose answers are scripted raw bytes (redirects, bombs, lies)."""

    def __init__(self, ca: SandboxCA, responder: Responder) -> None:
        self.responder = responder
        self.requests: list[bytes] = []
        self._ctx = ca.server_context()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.base_url = f"https://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="hostile-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._one, args=(raw,), daemon=True).start()

    def _one(self, raw: socket.socket) -> None:
        try:
            raw.settimeout(5)
            with self._ctx.wrap_socket(raw, server_side=True) as conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    piece = conn.recv(65536)
                    if not piece:
                        return
                    data += piece
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(body) < length:
                    piece = conn.recv(65536)
                    if not piece:
                        break
                    body += piece
                request = head + b"\r\n\r\n" + body
                self.requests.append(request)
                for piece in self.responder(request):
                    conn.sendall(piece)
        except (OSError, ssl.SSLError):
            return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


def http_response(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> list[bytes]:
    """One raw HTTP/1.1 answer (Content-Length unless a header says otherwise)."""
    h = {"Content-Type": "application/json", "Connection": "close", **(headers or {})}
    if "Transfer-Encoding" not in h:
        h.setdefault("Content-Length", str(len(body)))
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in h.items()]
    return [("\r\n".join(lines) + "\r\n\r\n").encode("ascii"), body]
