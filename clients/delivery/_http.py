"""The HTTP/1.1 client the webhook, FCM and Web Push adapters share, and how every HTTP adapter
turns an answer or a network failure into a `DeliveryResult`.

The client is ours: keep-alive connections on asyncio, each answer parsed by httptools (the C
parser uvicorn uses, from the uvloop authors). It only ever POSTs a body it holds in memory to a
provider and reads a short answer, and for that it costs ~40 µs of CPU per request at 64 in flight
on our bench machine, against ~130 µs for aiohttp and ~1.7 ms for httpx (docs/performance.md,
"The delivery client"); at the delivery target of 5,000 pushes/s that is a third of the core.
APNs stays on httpx: Apple speaks only HTTP/2.

What it does not do, on purpose: follow redirects (a push goes to the configured or allowed
host or nowhere: a redirect is a `failed` answer, not an invitation), use proxies from the
environment, keep cookies, or read an answer longer than `MAX_ANSWER_BYTES`. Its timeout runs
from when a connection is free until the answer is read, so waiting for one of the
`CONNECTIONS` slots does not eat a send's time.

Each provider adds its own invalid-token rules first; what is left is classified the same way
everywhere, so the worker's retry and breaker behaviour does not depend on the provider.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Mapping
from functools import lru_cache
from typing import NamedTuple, cast
from urllib.parse import quote, urlencode, urlsplit

import httptools
import msgspec

from clients.delivery.base import Clock, DeliveryResult
from clients.delivery.retry import parse_retry_after

__all__ = [
    "Http1Client",
    "Reply",
    "TransportFailure",
    "classify_status",
    "invalid_token",
    "transport_failure",
    "ttl_seconds",
]

_TRANSIENT = frozenset({408, 425, 429})
CONNECTIONS = 64
"""The worker's default round (CGW_WORKER_CONCURRENCY) in flight at once, one connection each."""
MAX_ANSWER_BYTES = 1 << 20
"""A provider answers with a status and at most a short JSON error; a longer answer is refused."""
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00\r\n]")
_URL_KEEP = "".join(map(chr, range(0x21, 0x7F)))
"""Printable ASCII stays as it is in a request line (escapes included); anything else is %-escaped."""


class Reply(msgspec.Struct, frozen=True):
    """A provider's answer, whichever client carried it; `headers` look up by lower-case name."""

    status: int
    headers: Mapping[str, str]
    content: bytes


class TransportFailure(Exception):
    """No answer: refused, reset, timed out. `code` is a class of failure, safe to log and count."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class _Unheard(TransportFailure):
    """The connection closed before a byte of the answer: on a kept-alive connection, the server
    most likely closed it while it was idle, so the request is worth one more try on a new one."""

    def __init__(self) -> None:
        super().__init__("ServerDisconnected")


class _Target(NamedTuple):
    """Where a URL's POST goes: the connection it may reuse (`key`) and its request line."""

    key: tuple[bool, str, int]
    host_header: str
    path: str


@lru_cache(maxsize=1024)
def _target(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port out of range, an unbalanced IPv6 bracket
        raise TransportFailure("InvalidURL") from None
    host = parts.hostname
    netloc = parts.netloc.rpartition("@")[2]
    if parts.scheme not in ("http", "https") or not host or not netloc.isprintable() or " " in netloc:
        raise TransportFailure("InvalidURL")
    tls = parts.scheme == "https"
    path = quote(parts.path or "/", safe=_URL_KEEP)
    if parts.query:
        path += "?" + quote(parts.query, safe=_URL_KEEP)
    return _Target((tls, host, port or (443 if tls else 80)), netloc, path)


def _request(target: _Target, headers: Mapping[str, str], body: bytes) -> bytes:
    """The request's bytes. A header that could split the request (a line break in a value, say
    from a token a provider handed us) is refused rather than sent."""
    head = [f"POST {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\nContent-Length: {len(body)}\r\n"]
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name) or _BAD_VALUE.search(value):
            raise TransportFailure("InvalidHeader")
        head.append(f"{name}: {value}\r\n")
    head.append("User-Agent: consent-gateway\r\n\r\n")
    try:
        return "".join(head).encode("latin-1") + body
    except UnicodeEncodeError:
        raise TransportFailure("InvalidHeader") from None


class _Connection(asyncio.Protocol):
    """One connection, one request at a time, kept alive between requests when the server allows."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._answer: asyncio.Future[Reply] | None = None
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._heard = False
        self._head_done = False
        self._refusal: str | None = None
        self.open = True

    async def exchange(self, request: bytes) -> Reply:
        assert self._transport is not None
        assert self._answer is None
        self._answer = asyncio.get_running_loop().create_future()
        self._heard = False
        self._transport.write(request)
        return await self._answer

    def close(self) -> None:
        self.open = False
        if self._transport is not None:
            self._transport.close()

    # -- asyncio's side ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio's subclasses

    def data_received(self, data: bytes) -> None:
        self._heard = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(TransportFailure(self._refusal or "ProtocolError"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self._head_done and self._refusal is None and self._unframed():
            # An answer with neither a length nor chunks ends when the connection does.
            self._complete(self._parser.get_status_code())
        else:
            self._fail(TransportFailure("ServerDisconnected") if self._heard else _Unheard())

    def _unframed(self) -> bool:
        return "content-length" not in self._headers and "transfer-encoding" not in self._headers

    # -- httptools' side -----------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        self._head_done = True

    def on_body(self, body: bytes) -> None:
        if len(self._body) + len(body) > MAX_ANSWER_BYTES:
            self._refusal = "AnswerTooLarge"
            raise OverflowError  # stops the parser; data_received turns it into the failure
        self._body += body

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self._headers, self._head_done = {}, False
            return
        if not self._parser.should_keep_alive():
            self.close()
        self._complete(status)

    def _complete(self, status: int) -> None:
        reply = Reply(status, self._headers, bytes(self._body))
        self._headers, self._body, self._head_done = {}, bytearray(), False
        answer, self._answer = self._answer, None
        if answer is None:  # an answer to no request: the connection cannot be trusted
            self.close()
        elif not answer.done():
            answer.set_result(reply)

    def _fail(self, failure: TransportFailure) -> None:
        self.close()
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_exception(failure)


class Http1Client:
    """Up to `CONNECTIONS` requests in flight, over connections kept per host for the next ones.
    Made outside the event loop that uses it; opens nothing until the first request."""

    def __init__(self, timeout: float, tls: ssl.SSLContext | None = None) -> None:
        self._timeout = timeout
        self._tls = tls
        self._slots = asyncio.Semaphore(CONNECTIONS)
        self._idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        self._idle_count = 0

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        *,
        content: bytes | None = None,
        form: Mapping[str, str] | None = None,
    ) -> Reply:
        target = _target(url)
        if form is not None:
            content = urlencode(form).encode()
            headers = {**headers, "content-type": "application/x-www-form-urlencoded"}
        request = _request(target, headers, content or b"")
        async with self._slots:
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._exchange(target, request)
            except TimeoutError:
                raise TransportFailure("Timeout") from None

    async def send(self, url: str, headers: Mapping[str, str], body: bytes, now: Clock) -> DeliveryResult:
        """One POST to a provider for which 404 and 410 mean the device is gone (the wallet's relay,
        Web Push services), classified."""
        try:
            reply = await self.post(url, headers, content=body)
        except TransportFailure as exc:
            return transport_failure(exc.code)
        if reply.status in (404, 410):
            return invalid_token(reply, None)
        return classify_status(reply, now)

    async def aclose(self) -> None:
        for kept in self._idle.values():
            for conn in kept:
                conn.close()
        self._idle.clear()
        self._idle_count = 0

    async def _exchange(self, target: _Target, request: bytes) -> Reply:
        kept = self._take(target)
        if kept is not None:
            try:
                return self._keep(target, kept, await kept.exchange(request))
            except _Unheard:
                pass  # closed by the server while idle: once more, on a new connection
            except BaseException:
                kept.close()
                raise
        conn = await self._connect(target)
        try:
            return self._keep(target, conn, await conn.exchange(request))
        except BaseException:
            conn.close()  # timed out or cancelled mid-answer: what comes next on it is unknown
            raise

    async def _connect(self, target: _Target) -> _Connection:
        tls, host, port = target.key
        context = None
        if tls:
            context = self._tls = self._tls or ssl.create_default_context()
        try:
            _, conn = await asyncio.get_running_loop().create_connection(_Connection, host, port, ssl=context)
        except ssl.SSLError:
            raise TransportFailure("TLSError") from None
        except OSError:
            raise TransportFailure("ConnectError") from None
        return conn

    def _take(self, target: _Target) -> _Connection | None:
        kept = self._idle.get(target.key)
        while kept:
            conn = kept.pop()
            self._idle_count -= 1
            if conn.open:
                return conn
        return None

    def _keep(self, target: _Target, conn: _Connection, reply: Reply) -> Reply:
        if not conn.open:
            return reply
        if self._idle_count >= CONNECTIONS:
            conn.close()
        else:
            self._idle.setdefault(target.key, []).append(conn)
            self._idle_count += 1
        return reply


def classify_status(reply: Reply, now: Clock, code: str | None = None) -> DeliveryResult:
    """2xx delivered; 408/425/429 and 5xx retry (honouring Retry-After); any other status failed."""
    status = reply.status
    if 200 <= status < 300:
        return DeliveryResult(status="delivered", provider_status=status, provider_code=code)
    if status in _TRANSIENT or status >= 500:
        retry_after = parse_retry_after(reply.headers.get("retry-after"), now())
        return DeliveryResult(
            status="retry", retry_after=retry_after, provider_status=status, provider_code=code
        )
    return DeliveryResult(status="failed", provider_status=status, provider_code=code)


def transport_failure(code: str) -> DeliveryResult:
    """Timeouts, refused connections, protocol errors: transient."""
    return DeliveryResult(status="retry", provider_code=code)


def invalid_token(reply: Reply, code: str | None) -> DeliveryResult:
    return DeliveryResult(status="invalid_token", provider_status=reply.status, provider_code=code)


def ttl_seconds(expires_at: float, now: float) -> int:
    """Whole seconds left to live, never negative (0 = deliver now or drop)."""
    return max(0, int(expires_at - now))
