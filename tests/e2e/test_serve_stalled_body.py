"""A client that stops sending its body mid-way, against a real server: answered 408 once
`CGW_BODY_TIMEOUT_SECONDS` pass, nothing written, the connection closed. It held the
connection for as long as it liked, and on SIGTERM held `serve` up with it (found by a review of
operations: 45 s, until the client let go)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from support import Server, serve_process

pytestmark = pytest.mark.slow

TIMEOUT = 1.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    settings = {"CGW_BODY_TIMEOUT_SECONDS": str(TIMEOUT), "CGW_LOG_LEVEL": "info"}
    with serve_process(tmp_path / "data", tmp_path / "server.stderr", settings) as running:
        yield running


def _stalled_push(server: Server, key: str) -> socket.socket:
    """A connection that sent a push's headers and the first byte of its declared 100."""
    where = urlsplit(server.base)
    conn = socket.create_connection((where.hostname or "127.0.0.1", where.port or 80), timeout=15)
    conn.sendall(
        b"POST /v1/pushes HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {key}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    return conn


def _key(server: Server) -> str:
    created = server.cli("keys", "create", "--name", "stalled", "--scope", "pushes:write", "audit:read")
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


def test_a_stalled_body_is_answered_408_and_the_connection_closed(server: Server) -> None:
    key = _key(server)
    started = time.monotonic()
    with _stalled_push(server, key) as conn:
        received = b""
        while chunk := conn.recv(65536):  # until the server closes the connection
            received += chunk
    waited = time.monotonic() - started
    assert TIMEOUT <= waited < TIMEOUT + 5, waited
    head, body = received.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 408 "), head
    assert b"connection: close" in head.lower().split(b"\r\n")
    answer = json.loads(body)
    assert answer["status_code"] == 408
    assert [item["key"] for item in answer["extra"]] == ["body"]

    auditor = {"Authorization": f"Bearer {key}"}
    decisions = httpx.get(f"{server.base}/v1/audit/decisions", headers=auditor, timeout=10)
    assert decisions.status_code == 200, decisions.text
    assert decisions.json()["decisions"] == []  # nothing was written


def test_sigterm_is_not_held_up_by_a_stalled_body(server: Server) -> None:
    key = _key(server)
    with _stalled_push(server, key):
        time.sleep(0.2)  # the request is under way
        started = time.monotonic()
        server.stop()  # SIGTERM; fails if the server is still up 10 s on
        assert time.monotonic() - started < TIMEOUT + 5
