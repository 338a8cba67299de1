"""Batches past `CGW_MAX_CONCURRENT_BATCHES` in one server wait a little for a slot, then are
answered 503 with `Retry-After`, nothing read or kept. Nothing bounded them: a review's eight
35 MiB batches at once took a server from 87 to 805 MiB, a few more from the OOM killer.

Against a real server: a batch holds its slot while its body arrives, which only a real
connection spreads over time."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import Server, serve_process

from gateway.batch_slots import WAIT_SECONDS

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    settings = {"CGW_MAX_CONCURRENT_BATCHES": "1", "CGW_BODY_TIMEOUT_SECONDS": "30"}
    with serve_process(tmp_path / "data", tmp_path / "server.stderr", settings) as running:
        yield running


def _batch(tag: str, n: int = 3) -> bytes:
    pushes = [
        {"idempotency_key": f"{tag}-{i}", "user_id": f"user-{tag}-{i}", "topic": "transactional",
         "title": "Payment received", "body": "Your payment was received."}
        for i in range(n)
    ]  # fmt: skip
    return json.dumps({"pushes": pushes}).encode()


def _decisions(base: str) -> float:
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{base}/metrics").text)}
    return sum(s.value for s in families["cgw_decisions"].samples if s.name == "cgw_decisions_total")


def _unavailable(base: str) -> dict[str, float]:
    """`cgw_unavailable_answers_total` by cause."""
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{base}/metrics").text)}
    found = families["cgw_unavailable_answers"].samples
    return {s.labels["cause"]: s.value for s in found if s.name == "cgw_unavailable_answers_total"}


def _started(server: Server, key: str, body: bytes) -> socket.socket:
    """A batch whose headers and first half have been sent: it holds a slot until the rest comes."""
    where = urlsplit(server.base)
    conn = socket.create_connection((where.hostname or "127.0.0.1", where.port or 80), timeout=30)
    conn.sendall(
        b"POST /v1/pushes/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n".encode()
        + b"Content-Type: application/json\r\n\r\n"
        + body[: len(body) // 2]
    )
    return conn


def _answer(conn: socket.socket) -> tuple[bytes, bytes]:
    """The head and body of one answer read from `conn`, by its `Content-Length`."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += conn.recv(65536)
    head, body = received.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head, body


def test_a_batch_past_the_slots_waits_then_gets_503_and_is_not_kept(server: Server) -> None:
    created = server.cli("keys", "create", "--name", "batches", "--scope", "pushes:write")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    first, second = _batch("first"), _batch("second")

    with _started(server, key, first) as held:
        time.sleep(0.3)  # its slot taken before the next asks
        before = _decisions(server.base)
        asked = time.monotonic()
        refused = httpx.post(f"{server.base}/v1/pushes/batch", content=second, headers=auth, timeout=30)
        waited = time.monotonic() - asked
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == str(round(WAIT_SECONDS))
        assert "batches" in refused.json()["detail"]
        assert WAIT_SECONDS <= waited < WAIT_SECONDS + 5, waited
        assert _decisions(server.base) == before  # nothing decided, nothing kept
        assert _unavailable(server.base) == {
            "batches_busy": 1, "storage_failed": 0, "storage_full": 0, "storage_busy": 0
        }  # fmt: skip
        reader = server.cli("keys", "create", "--name", "reader", "--scope", "campaigns:read").stdout.strip()
        asked = time.monotonic()
        other = {"Authorization": f"Bearer {reader}", "Content-Type": "application/json"}
        forbidden = httpx.post(f"{server.base}/v1/pushes/batch", content=second, headers=other, timeout=30)
        assert forbidden.status_code == 403, forbidden.text  # refused at once, not after a wait
        assert time.monotonic() - asked < WAIT_SECONDS

        held.sendall(first[len(first) // 2 :])  # the first batch ends, and is answered
        head, body = _answer(held)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert len(json.loads(body)["results"]) == 3

    again = httpx.post(f"{server.base}/v1/pushes/batch", content=second, headers=auth, timeout=30)
    assert again.status_code == 200, again.text  # its slot given back once answered
    assert len(again.json()["results"]) == 3
    assert _decisions(server.base) == before + 6
    server.stop()


def test_a_stalled_batch_gives_its_slot_back(tmp_path: Path) -> None:
    """A batch cut off by the body timeout (408) frees its slot for the next."""
    settings = {"CGW_MAX_CONCURRENT_BATCHES": "1", "CGW_BODY_TIMEOUT_SECONDS": "1"}
    with serve_process(tmp_path / "data", tmp_path / "server.stderr", settings) as server:
        created = server.cli("keys", "create", "--name", "batches", "--scope", "pushes:write")
        key = created.stdout.strip()
        with _started(server, key, _batch("stalled")) as stalled:
            received = b""
            while chunk := stalled.recv(65536):
                received += chunk
        assert received.startswith(b"HTTP/1.1 408 "), received[:200]
        auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        answered = httpx.post(
            f"{server.base}/v1/pushes/batch", content=_batch("next"), headers=auth, timeout=30
        )
        assert answered.status_code == 200, answered.text
        server.stop()
