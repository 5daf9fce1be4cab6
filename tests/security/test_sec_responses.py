"""Bounded input from the network: oversized and compressed bodies (counted after decompression), both
clients' reads, and hostile F&O ``$metadata``."""

from __future__ import annotations

import gzip
import io
import json
import time
import tracemalloc
import zlib
from typing import Any

import pytest
from sec_support import SECRET, HostileServer, good, http_response

from d365_anaplan.anaplan.client import AnaplanClient
from d365_anaplan.anaplan.tokens import CachedToken, InMemoryTokenCache, cache_key
from d365_anaplan.config import ConnectionConfig, parse_connection
from d365_anaplan.dynamics.metadata import parse_metadata
from d365_anaplan.dynamics.odata import ODataClient
from d365_anaplan.errors import DynamicsBadResponse, ResponseTooLarge
from d365_anaplan.http import VerifiedSession, session_for
from devkit.sandbox.tls import SandboxCA

CAP = 256 * 1024


def session(ca: SandboxCA) -> VerifiedSession:
    return VerifiedSession(ca_bundle=str(ca.ca_bundle), timeout=5, max_response_bytes=CAP)


def zeros_compressed(size: int, encoding: str) -> bytes:
    raw = b"0" * size
    return gzip.compress(raw, 9) if encoding == "gzip" else zlib.compress(raw, 9)


def test_declared_oversize_is_refused_before_reading(hostile: Any, ca: SandboxCA) -> None:
    server = hostile(lambda _r: http_response(200, b"", {"Content-Length": str(CAP * 100)}))
    with pytest.raises(ResponseTooLarge, match="declares"):
        session(ca).get(server.base_url + "/x")


def test_undeclared_oversize_stops_at_the_cap(hostile: Any, ca: SandboxCA) -> None:
    def endless(_r: bytes) -> Any:
        yield b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
        for _ in range(4 * CAP // 65536):
            yield b"[" * 65536

    server = hostile(endless)
    with pytest.raises(ResponseTooLarge, match=r"security\.max_response_bytes"):
        session(ca).get(server.base_url + "/x")


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compression_bomb_is_refused_without_inflating_it(encoding: str, hostile: Any, ca: SandboxCA) -> None:
    bomb = zeros_compressed(200 * 1024 * 1024, encoding)  # ~200 KB on the wire, 200 MB inflated
    server = hostile(lambda _r: http_response(200, bomb, {"Content-Encoding": encoding}))
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge, match="after decompression"):
            session(ca).get(server.base_url + "/x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, f"{peak:,} bytes held while refusing a {len(bomb):,}-byte bomb"


def test_small_compressed_answer_still_reads(hostile: Any, ca: SandboxCA) -> None:
    body = gzip.compress(json.dumps({"ok": True}).encode())
    server = hostile(lambda _r: http_response(200, body, {"Content-Encoding": "gzip"}))
    assert session(ca).get(server.base_url + "/x").json() == {"ok": True}


def sandbox_config(server: HostileServer, ca: SandboxCA) -> ConnectionConfig:
    data = good()
    data["dynamics"]["environment_url"] = server.base_url
    data["anaplan"]["api_url"] = server.base_url + "/2/0"
    data["anaplan"]["auth_url"] = server.base_url
    data["tls"] = {"ca_bundle": str(ca.ca_bundle)}
    data["security"] = {"allowed_hosts": [f"127.0.0.1:{server.port}"], "max_response_bytes": CAP}
    return parse_connection(data)


class _Tokens:
    client_id = "app-id"

    def token(self) -> str:
        return SECRET

    def invalidate(self) -> None:
        return None


def odata(server: HostileServer, ca: SandboxCA) -> ODataClient:
    cfg = sandbox_config(server, ca)
    return ODataClient(cfg.dynamics.environment_url, _Tokens(), session_for(cfg, 5), sleep=lambda _s: None)


def test_fo_page_larger_than_the_cap_is_refused(hostile: Any, ca: SandboxCA) -> None:
    rows = [{"AccountNum": f"{i:06d}", "Name": "x" * 200} for i in range(2000)]
    body = gzip.compress(json.dumps({"value": rows}).encode())
    server = hostile(lambda _r: http_response(200, body, {"Content-Encoding": "gzip"}))
    with pytest.raises(ResponseTooLarge):
        list(odata(server, ca).iter_pages(resume=f"{server.base_url}/data/MainAccounts"))


def test_huge_metadata_is_refused(hostile: Any, ca: SandboxCA) -> None:
    padding = "<!-- " + "x" * (2 * CAP) + " -->"
    server = hostile(lambda _r: http_response(200, padding.encode(), {"Content-Type": "application/xml"}))
    with pytest.raises(ResponseTooLarge):
        odata(server, ca).metadata()


def test_anaplan_chunk_larger_than_the_cap_is_refused(hostile: Any, ca: SandboxCA) -> None:
    chunks = {"chunks": [{"id": "0", "name": "Chunk 0"}], "meta": {"paging": {"totalSize": 1}}}

    def respond(request: bytes) -> list[bytes]:
        if b"/chunks/0 " in request.split(b"\r\n", 1)[0]:
            return http_response(200, b"a,b\n" * CAP, {"Content-Type": "application/octet-stream"})
        return http_response(200, json.dumps(chunks).encode())

    server = hostile(respond)
    cfg = sandbox_config(server, ca)
    cache = InMemoryTokenCache()
    client = AnaplanClient.from_config(cfg, token_cache=cache, sleep=lambda _s: None)
    now_ms = int(time.time() * 1000)
    token = CachedToken(value=SECRET, expires_at=now_ms + 3_600_000, minted_at=now_ms)
    cache.put(cache_key(cfg.name, cfg.anaplan.auth_url, client.tokens.authenticator.principal), token, 3600)
    sink = io.BytesIO()
    with pytest.raises(ResponseTooLarge) as info:
        client.download_file("116000000001", sink)
    assert SECRET not in str(info.value)
    assert sink.getvalue() == b""


EDMX = (
    '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices>'
    '<Schema Namespace="M" xmlns="http://docs.oasis-open.org/odata/ns/edm">'
    '<EntityType Name="T"><Key><PropertyRef Name="Id"/></Key><Property Name="Id" Type="Edm.String"/></EntityType>'
    '<EntityContainer Name="C"><EntitySet Name="Ts" EntityType="M.T"/></EntityContainer>'
    "</Schema></edmx:DataServices></edmx:Edmx>"
)


@pytest.mark.parametrize(
    ("document", "says"),
    [
        # entity expansion (billion laughs)
        (
            '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;">]>'
            + EDMX.replace('Name="T"', 'Name="&b;"'),
            "DTD or entities",
        ),
        # a DTD hidden behind a long comment (past the first 4 KB)
        (
            '<?xml version="1.0"?><!--'
            + "x" * 5000
            + '--><!DOCTYPE edmx:Edmx SYSTEM "file:///etc/passwd">'
            + EDMX,
            "DTD",
        ),
        # nesting far deeper than CSDL ever does
        (EDMX.replace("<edmx:DataServices>", "<edmx:DataServices>" + "<a>" * 5000 + "</a>" * 5000), "nest"),
    ],
)
def test_hostile_metadata_is_refused(document: str, says: str) -> None:
    with pytest.raises(DynamicsBadResponse, match=says):
        parse_metadata(document)


def test_plain_metadata_still_parses() -> None:
    assert parse_metadata(EDMX).has_set("Ts")
