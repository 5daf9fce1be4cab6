"""OData v4 ``$batch`` (multipart/mixed) with one changeset per group of operations (dynamics-fo.md §2.1).

A changeset is atomic in F&O: all of its operations are committed or none. A batch holds at most 5,000
operations. A failed changeset answers with one error response (F&O's error JSON, §5.1) which we map back
to the operation through its ``Content-ID``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from d365_anaplan.errors import BadInputData, DynamicsBadResponse

MAX_BATCH_OPERATIONS = 5000
CRLF = "\r\n"


@dataclass(frozen=True)
class Operation:
    method: str
    entity_set: str
    body: Mapping[str, Any]
    content_id: str


@dataclass(frozen=True)
class PartResponse:
    status: int
    content_id: str | None
    body: bytes


@dataclass(frozen=True)
class ChangesetResponse:
    parts: tuple[PartResponse, ...]

    @property
    def ok(self) -> bool:
        return bool(self.parts) and all(200 <= p.status < 300 for p in self.parts)


def encode_batch(base_url: str, changesets: Sequence[Sequence[Operation]], dumps: Any) -> tuple[str, bytes]:
    """(Content-Type header, body) for a batch of changesets; ``dumps`` serialises a body to JSON text."""
    total = sum(len(cs) for cs in changesets)
    if total > MAX_BATCH_OPERATIONS:
        raise BadInputData(
            f"$batch: {total} operations; F&O accepts at most {MAX_BATCH_OPERATIONS} per batch"
        )
    batch = f"batch_{uuid.uuid4()}"
    out: list[str] = []
    for cs in changesets:
        changeset = f"changeset_{uuid.uuid4()}"
        out.append(f"--{batch}{CRLF}Content-Type: multipart/mixed; boundary={changeset}{CRLF}{CRLF}")
        for op in cs:
            body = dumps(dict(op.body))
            out.append(
                f"--{changeset}{CRLF}"
                f"Content-Type: application/http{CRLF}"
                f"Content-Transfer-Encoding: binary{CRLF}"
                f"Content-ID: {op.content_id}{CRLF}{CRLF}"
                f"{op.method} {base_url}/{op.entity_set} HTTP/1.1{CRLF}"
                f"Content-Type: application/json; type=entry{CRLF}"
                f"Accept: application/json{CRLF}{CRLF}"
                f"{body}{CRLF}"
            )
        out.append(f"--{changeset}--{CRLF}")
    out.append(f"--{batch}--{CRLF}")
    return f"multipart/mixed; boundary={batch}", "".join(out).encode("utf-8")


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


def boundary_of(content_type: str) -> str:
    m = _BOUNDARY.search(content_type or "")
    if not m:
        raise DynamicsBadResponse(f"$batch: response Content-Type {content_type!r} has no multipart boundary")
    return m.group(1).strip()


def split_multipart(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """Parts of a multipart body as (lower-case headers, body)."""
    delim = b"--" + boundary.encode("ascii")
    chunks = body.split(delim)
    if len(chunks) < 2:
        raise DynamicsBadResponse("$batch: response body does not contain its boundary")
    parts: list[tuple[dict[str, str], bytes]] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n").removeprefix(b"\n")
        head, sep, rest = chunk.partition(b"\r\n\r\n")
        if not sep:
            head, sep, rest = chunk.partition(b"\n\n")
        headers = _headers(head)
        parts.append((headers, rest.removesuffix(b"\r\n").removesuffix(b"\n")))
    return parts


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("utf-8", "replace").splitlines():
        if ":" in line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return headers


def _http_part(headers: dict[str, str], payload: bytes) -> PartResponse:
    head, sep, body = payload.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = payload.partition(b"\n\n")
    lines = head.decode("utf-8", "replace").splitlines()
    if not lines or not lines[0].startswith("HTTP/"):
        raise DynamicsBadResponse(
            f"$batch: a response part has no HTTP status line ({lines[0][:60] if lines else ''!r})"
        )
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise DynamicsBadResponse(f"$batch: bad status line {lines[0][:60]!r}") from None
    inner = _headers("\n".join(lines[1:]).encode("utf-8"))
    content_id = headers.get("content-id") or inner.get("content-id")
    return PartResponse(status, content_id, body)


def decode_batch(content_type: str, body: bytes) -> list[ChangesetResponse]:
    """One :class:`ChangesetResponse` per request changeset, in order."""
    out: list[ChangesetResponse] = []
    for headers, payload in split_multipart(body, boundary_of(content_type)):
        ctype = headers.get("content-type", "")
        if ctype.lower().startswith("multipart/mixed"):
            inner = [_http_part(h, p) for h, p in split_multipart(payload, boundary_of(ctype))]
            out.append(ChangesetResponse(tuple(inner)))
        elif ctype.lower().startswith("application/http"):
            out.append(ChangesetResponse((_http_part(headers, payload),)))
        else:
            raise DynamicsBadResponse(f"$batch: unexpected part Content-Type {ctype!r}")
    return out


def part_json(part: PartResponse) -> Any:
    try:
        return json.loads(part.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
