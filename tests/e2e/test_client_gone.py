"""A client that goes away before sending its whole body gets no answer; the request is logged and
counted as 499 (client closed request), not as a server error, and nothing is recorded.

Over a real socket to `consent-gateway serve`: the disconnect is uvicorn's `http.disconnect`,
which only a real connection produces."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import Server, serve_process

from storage.connections import Connection, connect
from storage.keys import KeyStore
from storage.store import DATA_FILE

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with serve_process(tmp_path / "data", tmp_path / "server.stderr", {"CGW_LOG_LEVEL": "info"}) as running:
        yield running


def _statuses(base: str, route: str) -> dict[str, float]:
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{base}/metrics").text)}
    return {
        s.labels["status"]: s.value
        for s in families["cgw_http_requests"].samples
        if s.name == "cgw_http_requests_total" and s.labels["route"] == route
    }


def _cut_short(base: str, api_key: str) -> bytes:
    """POST /v1/pushes announcing 400 bytes of body, sending 20, then closing its side."""
    address = urlsplit(base)
    with socket.create_connection((address.hostname, address.port), timeout=10) as conn:
        conn.sendall(
            b"POST /v1/pushes HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {api_key}\r\n".encode()
            + b'Content-Length: 400\r\n\r\n{"idempotency_key":'
        )
        conn.shutdown(socket.SHUT_WR)
        return conn.recv(4096)


def test_a_body_cut_short_is_counted_as_499_and_records_nothing(server: Server) -> None:
    scopes = ("--scope", "pushes:write", "--scope", "audit:read")
    created = server.cli("keys", "create", "--name", "gone", *scopes)
    assert created.returncode == 0, created.stderr
    api_key = created.stdout.strip()

    assert _cut_short(server.base, api_key) == b""  # no answer: there is no one to read it

    deadline = time.monotonic() + 10
    while "499" not in (counted := _statuses(server.base, "/v1/pushes")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert counted == {"499": 1.0}
    lines = [json.loads(line) for line in server.stderr().splitlines() if line.startswith("{")]
    assert [(line["status"], line["route"]) for line in lines if line.get("msg") == "request"
            and line.get("route") == "/v1/pushes"] == [(499, "/v1/pushes")]  # fmt: skip
    assert not [line for line in lines if line["level"] == "error"]
    decisions = httpx.get(
        f"{server.base}/v1/audit/decisions", headers={"Authorization": f"Bearer {api_key}"}
    ).json()["decisions"]
    assert decisions == []
    server.stop()


@contextmanager
def _write_lock_held(server: Server) -> Iterator[Connection]:
    """Another process holding the data file's write lock: a request that writes waits for it."""
    keys = KeyStore.load(server.data_dir / "keys.json")
    other = connect(server.data_dir / DATA_FILE, keys.database_key)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield other
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()


def _given_up_while_waiting(server: Server, send: Callable[[httpx.Timeout], object]) -> None:
    """`send` given a read timeout its request outlasts: the client gives up and closes."""
    with _write_lock_held(server), pytest.raises(httpx.ReadTimeout):
        send(httpx.Timeout(10, read=1.5))


def _once_499(base: str, route: str) -> dict[str, float]:
    """The route's counts by status once its 499 is counted (the request ends after its client)."""
    deadline = time.monotonic() + 10
    while "499" not in (counted := _statuses(base, route)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return counted


def test_a_client_gone_while_its_push_is_written_is_counted_as_499_and_its_push_kept(
    server: Server,
) -> None:
    """A client that gave up waiting (its timeout, under load) was counted by the answer no one
    got, a 200: logs and metrics showed clean answers while clients had none. Its push is kept,
    and its retry gets the same answer. The wait here: another process holds the write lock."""
    created = server.cli("keys", "create", "--name", "gone", "--scope", "pushes:write")
    assert created.returncode == 0, created.stderr
    auth = {"Authorization": f"Bearer {created.stdout.strip()}"}
    push = {"idempotency_key": "left-1", "user_id": "user-left", "topic": "transactional",
            "title": "Payment received", "body": "Your payment was received."}  # fmt: skip
    with _write_lock_held(server) as other, ThreadPoolExecutor(1) as pool:
        stayed = {**push, "idempotency_key": "stayed"}  # a client that waits as long is answered
        patient = pool.submit(httpx.post, f"{server.base}/v1/pushes", json=stayed, headers=auth, timeout=30)
        time.sleep(1.5)
        other.execute("ROLLBACK")
        assert patient.result().status_code == 200, patient.result().text
    assert _statuses(server.base, "/v1/pushes") == {"200": 1.0}

    _given_up_while_waiting(
        server,
        lambda timeout: httpx.post(f"{server.base}/v1/pushes", json=push, headers=auth, timeout=timeout),
    )

    assert _once_499(server.base, "/v1/pushes") == {"200": 1.0, "499": 1.0}
    again = httpx.post(f"{server.base}/v1/pushes", json=push, headers=auth)
    assert again.status_code == 200, again.text
    assert _statuses(server.base, "/v1/pushes") == {"499": 1.0, "200": 2.0}
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{server.base}/metrics").text)}
    decided = [s.value for s in families["cgw_decisions"].samples if s.name == "cgw_decisions_total"]
    assert sum(decided) == 2  # each decided and kept once: the retry was answered from what was kept
    lines = [json.loads(line) for line in server.stderr().splitlines() if line.startswith("{")]
    assert [line["status"] for line in lines if line.get("route") == "/v1/pushes"] == [200, 499, 200]
    assert not [line for line in lines if line["level"] == "error"]
    server.stop()


def test_a_client_gone_while_its_bodiless_request_waits_is_counted_as_499(server: Server) -> None:
    """The same for a request with no body (here an erasure, `DELETE /v1/me`): the middleware
    hears the leave through the request's one message, which the app never asked for."""
    made = server.cli("token", "user-erasing")
    assert made.returncode == 0, made.stderr
    user = {"Authorization": f"Bearer {made.stdout.strip()}"}
    consent = {"granted": True, "notice_version": "v1"}
    assert httpx.put(f"{server.base}/v1/me/consents/marketing", json=consent, headers=user).status_code == 200
    _given_up_while_waiting(
        server, lambda timeout: httpx.delete(f"{server.base}/v1/me", headers=user, timeout=timeout)
    )

    assert _once_499(server.base, "/v1/me") == {"499": 1.0}
    preferences = httpx.get(f"{server.base}/v1/me/preferences", headers=user).json()
    assert preferences["consents"]["marketing"]["granted"] is False  # erased all the same
    server.stop()
