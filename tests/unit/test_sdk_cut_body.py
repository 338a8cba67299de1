"""A success cut off mid-body is no answer: the call's retry rules apply, as when the connection
drops before the status line. Never a `GatewayError(200)` for a push the gateway may have taken.

A real server on 127.0.0.1 sends a 200 and closes the connection part way through the body, in
the two framings a body can have over HTTP/1.1:

- with a Content-Length larger than what it sends: httpx sees the body is short and raises
  `RemoteProtocolError`;
- without one, the body ending where the connection closes (HTTP/1.0, some proxies): httpx cannot
  tell a cut from the end, so the SDK reads it as cut when it is not JSON at all.

A push carries its idempotency key, so it is tried again and the second, whole answer returned. A
campaign created twice would be two campaigns, so that call gives up at once, `Unreachable`, saying
it may have been carried out.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from clients.sdk import AsyncConsentGateway, ConsentGateway, GatewayError, RetryPolicy, Unreachable, calls

KEY = "cgw_0123456789abcdef_secret"
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.01, deadline=10.0)
PUSH: dict[str, Any] = {
    "idempotency_key": "order-7-paid",
    "topic": "transactional",
    "title": "Paid",
    "body": "...",
}
ANSWER = b'{"push_id":"p_1","outcome":"queued","reasons":[],"expires_at":"2026-11-24T10:00:00Z"}'
HALF = ANSWER[: len(ANSWER) // 2]
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"

WHOLE = HEAD + b"Content-Length: %d\r\n\r\n" % len(ANSWER) + ANSWER
SHORT_OF_ITS_LENGTH = HEAD + b"Content-Length: %d\r\n\r\n" % len(ANSWER) + HALF
ENDED_BY_CLOSE = HEAD + b"\r\n" + HALF
CUTS = [SHORT_OF_ITS_LENGTH, ENDED_BY_CLOSE]
CUT_IDS = ["short of its Content-Length", "ended by the close"]


class Scripted:
    """Answers the n-th connection with the n-th of `answers` (raw bytes) and closes it; keeps
    each request's body, so a test sees what reached the server and how often."""

    def __init__(self, answers: list[bytes]) -> None:
        self.bodies: list[bytes] = []
        self._answers = answers
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        for answer in self._answers:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed by the test
                return
            with conn:
                self.bodies.append(_request_body(conn))
                conn.sendall(answer)
                conn.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Wakes an `accept` still waiting for a connection that will not come (shutdown does;
        close alone does not, on Linux)."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)


def _request_body(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    while length and len(body) < int(length[1]):
        body += conn.recv(65536)
    return body


@pytest.fixture
def scripted() -> Iterator[list[Scripted]]:
    servers: list[Scripted] = []
    yield servers
    for server in servers:
        server.close()


def _server(servers: list[Scripted], *answers: bytes) -> Scripted:
    server = Scripted(list(answers))
    servers.append(server)
    return server


@pytest.mark.parametrize("cut", CUTS, ids=CUT_IDS)
def test_a_push_whose_answer_is_cut_is_sent_again_and_the_whole_answer_returned(
    scripted: list[Scripted], cut: bytes
) -> None:
    server = _server(scripted, cut, WHOLE)
    with ConsentGateway(server.base, KEY, retry=FAST) as gateway:
        answer = gateway.push(**PUSH)
    assert (answer.push_id, answer.outcome) == ("p_1", "queued")
    assert len(server.bodies) == 2
    assert server.bodies[0] == server.bodies[1]  # the same idempotency key: one push


@pytest.mark.parametrize("cut", CUTS, ids=CUT_IDS)
def test_the_async_client_sends_it_again_too(scripted: list[Scripted], cut: bytes) -> None:
    server = _server(scripted, cut, WHOLE)

    async def scenario() -> None:
        async with AsyncConsentGateway(server.base, KEY, retry=FAST) as gateway:
            answer = await gateway.push(**PUSH)
        assert answer.push_id == "p_1"

    asyncio.run(scenario())
    assert len(server.bodies) == 2
    assert server.bodies[0] == server.bodies[1]


@pytest.mark.parametrize("cut", CUTS, ids=CUT_IDS)
def test_every_answer_cut_is_unreachable_once_the_attempts_are_spent(
    scripted: list[Scripted], cut: bytes
) -> None:
    server = _server(scripted, cut, cut, cut)
    with ConsentGateway(server.base, KEY, retry=FAST) as gateway, pytest.raises(Unreachable) as lost:
        gateway.push(**PUSH)
    assert lost.value.status_code is None
    assert "after 3 attempt(s)" in lost.value.detail
    assert len(server.bodies) == 3


@pytest.mark.parametrize("cut", CUTS, ids=CUT_IDS)
def test_a_campaign_whose_answer_is_cut_is_not_created_twice(scripted: list[Scripted], cut: bytes) -> None:
    server = _server(scripted, cut, cut)

    async def scenario() -> None:
        async with AsyncConsentGateway(server.base, KEY, retry=FAST) as gateway:
            await gateway.create_campaign("spring", "promotions")

    with pytest.raises(Unreachable, match="may have reached it, so it was not repeated"):
        asyncio.run(scenario())
    with ConsentGateway(server.base, KEY, retry=FAST) as gateway, pytest.raises(Unreachable):
        gateway.create_campaign("spring", "promotions")  # the sync client: the same verdict
    assert len(server.bodies) == 2  # one each, never a repeat


def test_a_whole_answer_of_another_shape_is_an_error_not_a_cut(scripted: list[Scripted]) -> None:
    """JSON that is all there but not a push answer (another gateway version): repeating the push
    would get the same, so it ends the call at once, with the status the gateway gave."""
    odd = b'{"push_id":7}'
    server = _server(scripted, HEAD + b"Content-Length: %d\r\n\r\n" % len(odd) + odd)
    with ConsentGateway(server.base, KEY, retry=FAST) as gateway, pytest.raises(GatewayError) as caught:
        gateway.push(**PUSH)
    assert type(caught.value) is GatewayError
    assert caught.value.status_code == 200
    assert "cannot read" in caught.value.detail
    assert len(server.bodies) == 1


def _push_once(client: str, base: str) -> None:
    """One push through the sync or the async client."""

    async def push_async() -> None:
        async with AsyncConsentGateway(base, KEY, retry=FAST) as gateway:
            await gateway.push(**PUSH)

    if client == "async":
        asyncio.run(push_async())
        return
    with ConsentGateway(base, KEY, retry=FAST) as gateway:
        gateway.push(**PUSH)


PAGE = b"<html><body>Sign in first</body></html>"
PORTAL = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n" + (
    b"Content-Length: %d\r\n\r\n" % len(PAGE) + PAGE
)


@pytest.mark.parametrize("client", ["sync", "async"])
def test_a_whole_answer_that_is_not_json_is_an_error_at_once(scripted: list[Scripted], client: str) -> None:
    """A page a proxy or a portal answers with, its length given and all of it received, is no cut:
    the gateway was not reached, and trying again would only wait to be told the same."""
    server = _server(scripted, PORTAL, WHOLE)

    with pytest.raises(GatewayError) as failed:
        _push_once(client, server.base)
    assert not isinstance(failed.value, Unreachable)
    assert failed.value.status_code == 200
    assert len(server.bodies) == 1


def test_an_http2_answer_is_framed_by_its_stream_whatever_its_headers() -> None:
    """HTTP/2 has no chunks and its Content-Length is optional: the stream's end marks the body's."""
    h2 = httpx.Response(200, content=b"<html>portal</html>", extensions={"http_version": b"HTTP/2"})
    del h2.headers["content-length"]
    closed = httpx.Response(200, content=b"<html>portal</html>", extensions={"http_version": b"HTTP/1.0"})
    del closed.headers["content-length"]
    assert calls.framed(h2)
    assert not calls.framed(closed)


@pytest.mark.parametrize("client", ["sync", "async"])
def test_an_answer_whose_encoding_does_not_decode_is_an_error_at_once(
    scripted: list[Scripted], client: str
) -> None:
    """Not a cut (its length arrived whole) and not the gateway's (it never compresses): a
    `GatewayError` like any unreadable answer, not httpx's own exception."""
    garbage = b"not gzip at all"
    corrupt = HEAD + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(garbage) + garbage
    server = _server(scripted, corrupt, WHOLE)

    with pytest.raises(GatewayError) as failed:
        _push_once(client, server.base)
    assert not isinstance(failed.value, Unreachable)
    assert len(server.bodies) == 1
