"""`HEAD` on a real server, read as bytes off the socket: the GET's status and `Content-Length`,
then not one byte of body. A server that sent the body anyway would put it where the next
answer on the connection starts, so a `GET` is pipelined behind each `HEAD`."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from support import Server, serve_process

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with serve_process(tmp_path / "data", tmp_path / "server.stderr", {"CGW_LOG_LEVEL": "info"}) as running:
        yield running


def _exchange(base: str, raw: bytes) -> bytes:
    """What the server sends for `raw` until it closes the connection."""
    where = urlsplit(base)
    with socket.create_connection((where.hostname or "127.0.0.1", where.port or 80), timeout=10) as conn:
        conn.sendall(raw)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return received


def test_head_then_get_on_one_connection(server: Server) -> None:
    got = httpx.get(f"{server.base}/readyz")
    raw = (
        b"HEAD /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    head, rest = _exchange(server.base, raw).split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert f"content-length: {len(got.content)}".encode() in head.lower()
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:80]  # no body between the two answers
    assert rest.endswith(got.content)

    lines = [json.loads(line) for line in server.stderr().splitlines() if line.startswith("{")]
    methods = [
        line["method"] for line in lines if line.get("msg") == "request" and line["route"] == "/readyz"
    ]
    assert methods[-2:] == ["HEAD", "GET"]
    server.stop()


def test_head_where_only_post_is_served_is_refused_without_a_body(server: Server) -> None:
    raw = (
        b"HEAD /v1/pushes HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    head, rest = _exchange(server.base, raw).split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 405 ")
    assert b"allow: OPTIONS, POST" in head.split(b"\r\n")
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:80]
    server.stop()
