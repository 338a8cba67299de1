"""The adapters' HTTP/1.1 client against real sockets that answer exactly as scripted: kept-alive
connections, the ways an answer can be framed or cut short, what is refused before sending, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohappyeyeballs
import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clients.delivery import DeliveryMessage
from clients.delivery._http import (
    HAPPY_EYEBALLS_SECONDS,
    MAX_ANSWER_BYTES,
    Http1Client,
    Reply,
    TransportFailure,
    _Connection,
    _Deadlines,
    transport_failure,
)
from gateway.adapters import build_adapters
from gateway.settings import Secret, Settings

T = TypeVar("T")
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"


class Scripted:
    """A server on 127.0.0.1 that reads each request whole and answers with `answer(n)` for the
    n-th request of the whole server (bytes to write; `close` after it ends the connection)."""

    def __init__(
        self, answer: Callable[[int], bytes], close: Callable[[int], bool] = lambda n: False
    ) -> None:
        self.requests: list[bytes] = []
        self.connections = 0
        self._answer, self._close = answer, close
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Scripted:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append(head + await reader.readexactly(length))
                n = len(self.requests)
                writer.write(self._answer(n))
                await writer.drain()
                if self._close(n):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)


Run = Callable[[Callable[[], Coroutine[Any, Any, T]]], T]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run[Any]:
    """Each test on both loops uvicorn may serve the gateway on: uvloop's transports are not
    asyncio's classes, and its callbacks come in its own order."""
    if request.param == "uvloop":
        return lambda scenario: uvloop.run(scenario())
    return lambda scenario: asyncio.run(scenario())


async def post(client: Http1Client, url: str, body: bytes = b'{"a":1}') -> Reply:
    return await client.post(url + "/hook", {"content-type": "application/json"}, content=body)


def test_requests_reuse_kept_alive_connections(run: Run[Any]) -> None:
    async def scenario() -> None:
        async with Scripted(lambda n: OK) as server:
            client = Http1Client(5.0)
            for _ in range(3):
                replies = await asyncio.gather(*(post(client, server.url) for _ in range(8)))
                assert [r.status for r in replies] == [200] * 8
            await client.aclose()
            assert len(server.requests) == 24
            assert server.connections == 8
            first = server.requests[0]
            assert first.startswith(b"POST /hook HTTP/1.1\r\n")
            assert f"host: 127.0.0.1:{server.port}\r\n".encode() in first.lower()
            assert first.endswith(b'\r\n\r\n{"a":1}')

    run(scenario)


def test_a_connection_the_server_closed_while_idle_is_replaced_without_a_failure(run: Run[Any]) -> None:
    async def scenario() -> None:
        async with Scripted(lambda n: OK, close=lambda n: n == 1) as server:
            client = Http1Client(5.0)
            assert (await post(client, server.url)).status == 200
            assert (await post(client, server.url)).status == 200
            await client.aclose()
            assert server.connections == 2

    run(scenario)


def test_an_answer_asking_to_close_is_not_reused(run: Run[Any]) -> None:
    closing = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"

    async def scenario() -> None:
        async with Scripted(lambda n: closing if n == 1 else OK) as server:
            client = Http1Client(5.0)
            assert (await post(client, server.url)).status == 200
            assert (await post(client, server.url)).content == b"{}"
            await client.aclose()
            assert server.connections == 2

    run(scenario)


@pytest.mark.parametrize(
    ("answer", "close", "content"),
    [
        (b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nhello", False, b"hello"),
        (
            b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
            False,
            b"hello",
        ),
        (
            b"HTTP/1.1 201 Created\r\n\r\nhello",
            True,
            b"hello",
        ),  # no length: the body ends with the connection
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nhello",
            False,
            b"hello",
        ),
    ],
    ids=["length", "chunked", "until-close", "interim-100"],
)
def test_answers_framed_every_allowed_way_are_read_whole(
    answer: bytes, close: bool, content: bytes, run: Run[Any]
) -> None:
    async def scenario() -> Reply:
        async with Scripted(lambda n: answer, close=lambda n: close) as server:
            client = Http1Client(5.0)
            try:
                return await post(client, server.url)
            finally:
                await client.aclose()

    reply = run(scenario)
    assert isinstance(reply, Reply)
    assert (reply.status, reply.content) == (201, content)


def test_headers_are_found_by_lower_case_name_and_repeated_ones_joined(run: Run[Any]) -> None:
    answer = b"HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nX-Note: a\r\nx-note: b\r\ncontent-length: 0\r\n\r\n"

    async def scenario() -> Reply:
        async with Scripted(lambda n: answer) as server:
            client = Http1Client(5.0)
            try:
                return await post(client, server.url)
            finally:
                await client.aclose()

    reply = run(scenario)
    assert isinstance(reply, Reply)
    assert reply.headers["retry-after"] == "7"
    assert reply.headers["x-note"] == "a, b"


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf", "ServerDisconnected"),  # cut short
        (b"SMTP ready\r\n\r\n", "ProtocolError"),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (MAX_ANSWER_BYTES + 1)
            + b"x" * (MAX_ANSWER_BYTES + 1),
            "AnswerTooLarge",
        ),
        (b"HTTP/1.1 200 OK\r\n" + b"x-pad: y\r\n" * (MAX_ANSWER_BYTES // 10) + b"\r\n", "AnswerTooLarge"),
        (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n", "ProtocolError"),
        (b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: 2\r\n\r\n{}", "ProtocolError"),
        (
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            "ProtocolError",
        ),
    ],
    ids=["cut-short", "not-http", "too-large", "head-too-large", "upgrade", "compressed", "transfer-coded"],
)
def test_an_answer_that_is_not_whole_or_not_http_is_a_transport_failure(
    answer: bytes, code: str, run: Run[Any]
) -> None:
    async def scenario() -> str:
        async with Scripted(lambda n: answer, close=lambda n: True) as server:
            client = Http1Client(5.0)
            try:
                await post(client, server.url)
            except TransportFailure as exc:
                return exc.code
            finally:
                await client.aclose()
        return "answered"

    assert run(scenario) == code


def test_bytes_after_the_answer_are_never_the_next_requests_answer(run: Run[Any]) -> None:
    """A server that sends a second answer nobody asked for: the connection is dropped, and the
    next request gets its own answer on a new one, not the leftover 410 (a disabled device)."""
    extra = OK + b"HTTP/1.1 410 Gone\r\ncontent-length: 5\r\n\r\nst"

    async def scenario() -> None:
        async with Scripted(lambda n: extra if n == 1 else OK) as server:
            client = Http1Client(5.0)
            assert (await post(client, server.url)).status == 200
            second = await post(client, server.url)
            await client.aclose()
            assert (second.status, second.content) == (200, b"{}")
            assert server.connections == 2

    run(scenario)


def test_a_connection_idle_too_long_is_not_reused(run: Run[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """One a NAT dropped without a word would swallow the next request until the timeout."""
    monkeypatch.setattr("clients.delivery._http.IDLE_SECONDS", 0.05)

    async def scenario() -> None:
        async with Scripted(lambda n: OK) as server:
            client = Http1Client(5.0)
            await post(client, server.url)
            await post(client, server.url)
            await asyncio.sleep(0.1)
            await post(client, server.url)
            await client.aclose()
            assert server.connections == 2

    run(scenario)


def test_connections_the_servers_closed_do_not_hold_places_in_the_pool(run: Run[Any]) -> None:
    """Two places; two hosts close their connections after answering, without saying so. A third
    host must still get its connection kept between requests."""

    async def scenario() -> None:
        async with (
            Scripted(lambda n: OK, close=lambda n: True) as first,
            Scripted(lambda n: OK, close=lambda n: True) as second,
            Scripted(lambda n: OK) as third,
        ):
            client = Http1Client(5.0, connections=2)
            await post(client, first.url)
            await post(client, second.url)
            await asyncio.sleep(0.05)  # both connections are lost by now
            for _ in range(5):
                await post(client, third.url)
            await client.aclose()
            assert third.connections == 1

    run(scenario)


def test_credentials_in_the_url_are_sent_as_basic_auth_and_not_in_the_host(run: Run[Any]) -> None:
    async def scenario() -> None:
        async with Scripted(lambda n: OK) as server:
            client = Http1Client(5.0)
            url = server.url.replace("http://", "http://relay%40x:s3cret@")
            await client.post(url + "/hook", {}, content=b"")
            await client.aclose()
            head = server.requests[0].lower()
            assert b"authorization: basic cmvsyxlaedpzm2nyzxq=\r\n" in head  # "relay@x:s3cret"
            assert f"host: 127.0.0.1:{server.port}\r\n".encode() in head

    run(scenario)


def test_a_server_that_closes_every_connection_at_once_is_a_transport_failure(run: Run[Any]) -> None:
    """Never an exception of another kind (uvloop raises RuntimeError on a write to a closed
    transport), and never a wait for the timeout."""

    async def scenario() -> list[str]:
        async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(slam, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        client = Http1Client(5.0)
        codes = []
        for _ in range(10):
            try:
                await client.post(url, {}, content=b"")
                codes.append("answered")
            except TransportFailure as exc:
                codes.append(exc.code)
        await client.aclose()
        server.close()
        await server.wait_closed()
        return codes

    started = time.monotonic()
    assert set(run(scenario)) == {"ServerDisconnected"}
    assert time.monotonic() - started < 4.0


def test_an_unframed_answer_cut_by_a_reset_is_not_taken_whole(run: Run[Any]) -> None:
    async def scenario() -> str:
        async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b'HTTP/1.1 400 Bad Request\r\n\r\n{"error":{"status":"UNREG')
            await writer.drain()
            await asyncio.sleep(0.05)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

        server = await asyncio.start_server(reset, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        client = Http1Client(5.0)
        try:
            await client.post(url, {}, content=b"")
            outcome = "answered"
        except TransportFailure as exc:
            outcome = exc.code
        await client.aclose()
        server.close()
        await server.wait_closed()
        return outcome

    assert run(scenario) == "ServerDisconnected"


def test_a_redirect_is_an_answer_not_a_second_request(run: Run[Any]) -> None:
    answer = b"HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:9/x\r\ncontent-length: 0\r\n\r\n"

    async def scenario() -> None:
        async with Scripted(lambda n: answer) as server:
            client = Http1Client(5.0)
            assert (await post(client, server.url)).status == 307
            await client.aclose()
            assert len(server.requests) == 1

    run(scenario)


@pytest.mark.parametrize(
    "headers",
    [{"authorization": "Bearer x\r\nx-injected: 1"}, {"bad name": "v"}, {"x-token": "caf\u00e9\u2603"}],
    ids=["crlf-in-value", "space-in-name", "not-latin-1"],
)
def test_a_header_that_could_split_the_request_is_refused_before_anything_is_sent(
    headers: dict[str, str], run: Run[Any]
) -> None:
    async def scenario() -> None:
        async with Scripted(lambda n: OK) as server:
            client = Http1Client(5.0)
            with pytest.raises(TransportFailure) as raised:
                await client.post(server.url, headers, content=b"{}")
            await client.aclose()
            assert raised.value.code == "InvalidHeader"
            assert server.connections == 0

    run(scenario)


def test_the_url_is_escaped_into_one_request_line_and_a_bad_url_is_refused(run: Run[Any]) -> None:
    async def scenario() -> None:
        async with Scripted(lambda n: OK) as server:
            client = Http1Client(5.0)
            await client.post(server.url + "/a b/\u00e9?q=1 2&r=%41", {}, content=b"")
            for bad in ("ftp://127.0.0.1/x", "http:///nohost", f"http://127.0.0.1:{10**6}/"):
                with pytest.raises(TransportFailure) as raised:
                    await client.post(bad, {}, content=b"")
                assert raised.value.code == "InvalidURL"
            await client.aclose()
            assert server.requests[0].startswith(b"POST /a%20b/%C3%A9?q=1%202&r=%41 HTTP/1.1\r\n")

    run(scenario)


@pytest.mark.parametrize(
    ("code", "asked"), [("InvalidURL", False), ("InvalidHeader", False), ("Timeout", True)]
)
def test_a_request_refused_before_connecting_did_not_ask_the_provider(code: str, asked: bool) -> None:
    """So the provider's circuit breaker learns nothing from it: one user's subscription our
    client cannot send to opened Web Push's circuit for every user."""
    assert transport_failure(code).asked_provider is asked


def test_a_form_is_sent_url_encoded(run: Run[Any]) -> None:
    async def scenario() -> None:
        async with Scripted(lambda n: OK) as server:
            client = Http1Client(5.0)
            await client.post(server.url + "/token", {}, form={"grant_type": "a b", "assertion": "x&y=z"})
            await client.aclose()
            request = server.requests[0]
            assert b"content-type: application/x-www-form-urlencoded\r\n" in request.lower()
            assert request.endswith(b"\r\n\r\ngrant_type=a+b&assertion=x%26y%3Dz")

    run(scenario)


def test_the_timeout_does_not_count_the_wait_for_a_free_connection(
    monkeypatch: pytest.MonkeyPatch, run: Run[Any]
) -> None:
    """Two slots, six requests each answered after 0.15 s: the last waits 0.3 s for a slot, more
    than the 0.25 s timeout, and is still answered."""
    monkeypatch.setattr("clients.delivery._http.CONNECTIONS", 2)

    async def scenario() -> None:
        async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    await asyncio.sleep(0.15)
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(slow, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        client = Http1Client(0.25)
        replies = await asyncio.gather(*(client.post(url, {}, content=b"") for _ in range(6)))
        await client.aclose()
        server.close()
        await asyncio.sleep(0.05)  # the handlers read the end of their connections and close them
        assert [r.status for r in replies] == [200] * 6

    run(scenario)


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class TlsServer:
    """An HTTPS server on asyncio's own loop in a thread, whatever loop the client runs on
    (uvloop's server-side `start_tls` never completes a handshake). TLS is started in the
    handler, not by the server, so a handshake the client refuses still closes the socket."""

    def __init__(self, served: ssl.SSLContext) -> None:
        self._served = served
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._answer, "127.0.0.1", 0), self._loop
        )
        self._server = server.result(5)
        return f"https://localhost:{self._server.sockets[0].getsockname()[1]}/hook"

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await writer.start_tls(self._served)
            await reader.readuntil(b"\r\n\r\n")
            writer.write(OK)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        writer.close()


def test_https_checks_the_certificate(tmp_path: Path, run: Run[Any]) -> None:
    cert, key = _self_signed(tmp_path)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))

    async def scenario(url: str) -> tuple[int, str]:
        ours = Http1Client(5.0, tls=trusting)
        status = (await ours.post(url, {}, content=b"{}")).status
        default = Http1Client(5.0)  # the system's roots: a self-signed certificate is refused
        try:
            await default.post(url, {}, content=b"{}")
            refused = "sent"
        except TransportFailure as exc:
            refused = exc.code
        await ours.aclose()
        await default.aclose()
        return status, refused

    with TlsServer(served) as url:
        assert run(lambda: scenario(url)) == (200, "TLSError")


def test_the_gateway_gives_its_adapters_a_connection_for_each_push_of_a_round(
    run: Run[Any], tmp_path: Path
) -> None:
    """A round's sends to one provider go at once, as many as `CGW_WORKER_CONCURRENCY` claims:
    ten sends at once over a pool sized for rounds of three open three connections."""

    async def scenario() -> None:
        async with Scripted(lambda n: OK) as server:
            settings = Settings.from_env(
                {}, data_dir=tmp_path, worker_concurrency=3, delivery_webhook_url=f"{server.url}/hook",
                delivery_webhook_secret=Secret("a-webhook-secret-of-32-characters-at-least"),
            )  # fmt: skip
            adapter = build_adapters(settings)["webhook"]
            results = await asyncio.gather(*(adapter.send(_message(i)) for i in range(10)))
            await adapter.aclose()
            assert {r.status for r in results} == {"delivered"}
            assert (len(server.requests), server.connections) == (10, 3)

    run(scenario)


def _message(i: int) -> DeliveryMessage:
    return DeliveryMessage(
        push_id=f"psh_{i:024x}", device_id=f"dev_{i:024x}", platform="webhook", token=f"relay-{i}",
        topic="transactional", title="Shipped", body="On its way", data={}, campaign_id=None, variant=None,
        expires_at=datetime.datetime(2026, 12, 4, tzinfo=datetime.UTC),
    )  # fmt: skip


def test_a_black_holed_first_address_costs_the_happy_eyeballs_delay_not_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A relay's name resolves to an IPv6 address whose packets vanish, then to one that answers.
    The first connect must not use up the request's timeout: the next address is tried after
    `HAPPY_EYEBALLS_SECONDS`. The black hole is a listener on [::1] whose accept queue is full,
    so the kernel drops further SYNs. On the asyncio loop, whose resolver is `socket.getaddrinfo`
    (uvloop resolves in libuv; the connect path itself is the one every test here runs on both)."""

    async def scenario() -> float:
        async with Scripted(lambda n: OK) as server:
            with contextlib.ExitStack() as stack:
                hole = stack.enter_context(socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
                try:
                    hole.bind(("::1", server.port))
                except OSError:
                    pytest.skip("no IPv6 loopback here")
                hole.listen(0)
                for _ in range(3):
                    queued = stack.enter_context(socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
                    queued.setblocking(False)
                    with contextlib.suppress(BlockingIOError):
                        queued.connect(("::1", server.port))
                await asyncio.sleep(0.1)
                both = [
                    (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", server.port, 0, 0)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", server.port)),
                ]
                monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: both)
                client = Http1Client(5.0)
                started = time.monotonic()
                try:
                    reply = await client.post(f"http://relay.test:{server.port}/hook", {}, content=b"{}")
                finally:
                    await client.aclose()
                assert reply.status == 200
                return time.monotonic() - started

    took = asyncio.run(scenario())
    assert HAPPY_EYEBALLS_SECONDS <= took < 4.0  # waiting on ::1 alone would take the 5 s timeout


def test_an_answer_not_come_by_its_deadline_fails_while_others_go_on(run: Run[Any]) -> None:
    """A hung server's request times out; requests to a server that answers, made before and
    after it, are answered: one timer serves them all (`_Deadlines`)."""

    async def scenario() -> None:
        async with Scripted(lambda n: b"") as hung, Scripted(lambda n: OK) as live:
            client = Http1Client(0.3)
            try:
                assert (await post(client, live.url)).status == 200
                stuck = asyncio.ensure_future(post(client, hung.url))
                answered = [await post(client, live.url) for _ in range(3)]
                with pytest.raises(TransportFailure) as failed:
                    await asyncio.wait_for(stuck, 5)  # a failure, not a test hanging for ever
                assert failed.value.code == "Timeout"
                assert [r.status for r in answered] == [200] * 3
                assert (await post(client, live.url)).status == 200
            finally:
                await client.aclose()

    run(scenario)


def test_a_request_slow_to_connect_times_out_at_its_own_deadline(
    monkeypatch: pytest.MonkeyPatch, run: Run[Any]
) -> None:
    """The timeout runs from the free slot, connecting included. A request that waited 0.8 s to
    connect (its deadline 1.0 s) starts waiting for its answer after one on a kept connection
    that began later (deadline 1.4 s): it times out at its own deadline, not at the other's.
    The margins are tenths of a second, for a loaded machine's late timers."""
    real_start = aiohappyeyeballs.start_connection

    async def scenario() -> None:
        async with Scripted(lambda n: b"") as slow_to_open, Scripted(lambda n: OK if n == 1 else b"") as kept:

            async def start(addresses: Any, *args: Any, **kwargs: Any) -> socket.socket:
                if addresses[0][4][1] == slow_to_open.port:
                    await asyncio.sleep(0.8)
                return await real_start(addresses, *args, **kwargs)

            monkeypatch.setattr(aiohappyeyeballs, "start_connection", start)
            client = Http1Client(1.0)
            loop = asyncio.get_running_loop()
            ended: dict[str, float] = {}

            async def timed(name: str, url: str) -> None:
                with pytest.raises(TransportFailure, match="Timeout"):
                    await post(client, url)
                ended[name] = loop.time() - started

            try:
                assert (await post(client, kept.url)).status == 200  # a connection to keep
                started = loop.time()
                first = asyncio.ensure_future(timed("slow_to_open", slow_to_open.url))
                await asyncio.sleep(0.4)
                await asyncio.wait_for(asyncio.gather(first, timed("kept", kept.url)), 5)
            finally:
                await client.aclose()
            # uvloop's clock counts whole milliseconds: a timer may end a rounding error early.
            assert 0.998 <= ended["slow_to_open"] < 1.3 < 1.398 <= ended["kept"]

    run(scenario)


@pytest.mark.parametrize(
    "new_loop", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
def test_a_client_times_out_requests_in_each_event_loop_it_serves(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """A loop may stop with the client's timer set (a request answered) or with a request still
    waiting for its answer (a loop stopped, or closed, under it): either way the next loop's
    requests time out. The timer of a loop that no longer runs never fires, and they could wait
    for ever."""
    client = Http1Client(0.3)

    async def once(answer: bytes) -> str:
        async with Scripted(lambda n: answer) as server:
            try:
                return str((await asyncio.wait_for(post(client, server.url), 5)).status)
            except TransportFailure as exc:
                return exc.code

    first, second = new_loop(), new_loop()
    try:
        assert first.run_until_complete(once(OK)) == "200"
        assert second.run_until_complete(once(b"")) == "Timeout"

        async def left_waiting() -> tuple[asyncio.Task[Reply], Scripted]:
            server = await Scripted(lambda n: b"").__aenter__()
            waiting = asyncio.ensure_future(post(client, server.url))
            await asyncio.sleep(0.1)  # the request waits for its answer; its loop stops under it
            return waiting, server

        waiting, server = first.run_until_complete(left_waiting())
        try:
            assert second.run_until_complete(once(b"")) == "Timeout"
        finally:
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                first.run_until_complete(waiting)
            first.run_until_complete(server.__aexit__(None, None, None))
    finally:
        first.close()
        second.close()


def test_a_deadline_due_at_once_is_kept_on_either_loop(run: Run[Any]) -> None:
    """A deadline already past when its answer is awaited (a connect that ended in its last
    millisecond): uvloop then gives a plain `Handle`, with no `when()`, for the timer. The next
    request's deadline is still kept, and both connections are timed out."""

    async def scenario() -> None:
        deadlines, loop = _Deadlines(), asyncio.get_running_loop()
        due, later = _Connection(), _Connection()
        deadlines.add(due, loop.time())
        deadlines.add(later, loop.time() + 0.05)
        await asyncio.sleep(0.2)
        assert not due.open
        assert not later.open

    run(scenario)
