"""The HTTP/1.1 client the webhook, FCM and Web Push adapters share, and how every HTTP adapter
turns an answer or a network failure into a `DeliveryResult`.

The client is ours: keep-alive connections on asyncio, each answer parsed by httptools (the C
parser uvicorn uses, from the uvloop authors). It only ever POSTs a body it holds in memory to a
provider and reads a short answer, and for that it costs ~45 µs of CPU per request at 64 in flight
on our bench machine, against ~150 µs for aiohttp and ~1.7 ms for httpx (docs/performance-history.md,
"The delivery client"); at the delivery target of 5,000 pushes/s that is half the core.
APNs stays on httpx: Apple speaks only HTTP/2.

Its timeouts are one timer per client, not one per request: `asyncio.timeout` schedules and
cancels a timer handle around every request, ~7 µs each on the bench machine and more with a
round's 256 of them in the loop's heap. An answer is waited for under a deadline the client
keeps (`_Deadlines`); only a new connection, which keep-alive makes rare, is made under
`asyncio.timeout_at` with the same deadline.

What it does not do, on purpose: follow redirects (a push goes to the configured or allowed
host or nowhere: a redirect is a `failed` answer, not an invitation), use proxies from the
environment, keep cookies, accept a compressed answer, or read an answer longer than
`MAX_ANSWER_BYTES`. Its timeout runs from when one of its connection slots is free until the
answer is read, so waiting for a slot does not eat a send's time. A connection idle for longer
than `IDLE_SECONDS` is not reused: a NAT or firewall may have dropped it without a word. A new
connection races the host's addresses (Happy Eyeballs, by aiohappyeyeballs, which works on uvloop
too, where `create_connection` has no such option).

A request whose kept-alive connection closes before a byte of the answer is sent once more on a
new connection: the server most likely closed the connection while it was idle. It may instead
have taken the request and died; the worker would send it again then anyway (the idempotency
key, Web Push's `Topic` and the relay's dedupe are there for repeats).

Each provider adds its own invalid-token rules first; what is left is classified the same way
everywhere, so the worker's retry and breaker behaviour does not depend on the provider.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import socket
import ssl
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, NamedTuple, cast
from urllib.parse import quote, unquote, urlencode, urlsplit

import aiohappyeyeballs
import httptools
import msgspec

from clients.delivery.base import Clock, DeliveryResult
from clients.delivery.slots import Slots
from clients.retry_after import parse_retry_after

__all__ = [
    "MAX_ANSWER_BYTES",
    "Http1Client",
    "Reply",
    "TransportFailure",
    "classify_status",
    "invalid_token",
    "refused_alike",
    "transport_failure",
    "ttl_seconds",
]

_TRANSIENT = frozenset({408, 425, 429})
CONNECTIONS = 256
"""Requests in flight at once, one connection each, unless the caller says: the gateway gives its
adapters CGW_WORKER_CONCURRENCY, the pushes of a round, whose default this is."""
MAX_ANSWER_BYTES = 1 << 20
"""A provider answers with a status and at most a short JSON error; a longer answer is refused."""
IDLE_SECONDS = 15.0
"""How long a kept connection may wait for its next request (aiohttp's default too)."""
HAPPY_EYEBALLS_SECONDS = 0.25
"""RFC 8305's delay before the next address is tried while one still connects: a host whose
first address (often IPv6) is black-holed costs this much, not a whole timeout."""
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00\r\n]")
_OURS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "user-agent", "accept-encoding"}
)
_URL_KEEP = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in '"<>\\^`{|}')
"""What stays as it is in a request line (escapes included); anything else is %-escaped."""


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
    """The connection closed before a byte of the answer (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__("ServerDisconnected")


class _Target(NamedTuple):
    """Where a URL's POST goes: the connection it may reuse (`key`) and its request's head."""

    key: tuple[bool, str, int]
    head: str
    """The request line and the headers the URL gives (`Host`, `Authorization` from its userinfo)."""


@lru_cache(maxsize=1024)
def _literal(host: str, port: int) -> list[tuple[int, int, int, str, tuple[Any, ...]]] | None:
    """An IP address needs no resolving: asyncio's `getaddrinfo` would still queue it on a thread."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 4:
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
    return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port, 0, 0))]


def _target(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port out of range, an unbalanced IPv6 bracket
        raise TransportFailure("InvalidURL") from None
    host = parts.hostname
    netloc = parts.netloc.rpartition("@")[2]
    if parts.scheme not in ("http", "https") or not host or not netloc.isascii() or not netloc.isprintable():
        raise TransportFailure("InvalidURL")
    if " " in netloc:
        raise TransportFailure("InvalidURL")
    tls = parts.scheme == "https"
    path = quote(parts.path or "/", safe=_URL_KEEP)
    if parts.query:
        path += "?" + quote(parts.query, safe=_URL_KEEP)
    head = f"POST {path} HTTP/1.1\r\nHost: {netloc}\r\n"
    if parts.username is not None:  # a relay's credentials in its URL, as aiohttp sent them
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        head += f"Authorization: Basic {base64.b64encode(credentials).decode()}\r\n"
    return _Target((tls, host, port or (443 if tls else 80)), head)


@lru_cache(maxsize=256)
def _allowed_name(name: str) -> bool:
    """A header name an adapter may send: a token, and not one of ours. Adapters send a few fixed
    names, so each is checked once, not once a request: a third of building a request's bytes."""
    return _HEADER_NAME.fullmatch(name) is not None and name.lower() not in _OURS


def _request(target: _Target, headers: Mapping[str, str], body: bytes) -> bytes:
    """The request's bytes. A header that could split the request (a line break in a value, say
    from a token a provider handed us) or repeat one of ours is refused rather than sent."""
    head = [target.head, f"Content-Length: {len(body)}\r\n"]
    for name, value in headers.items():
        if not _allowed_name(name) or _BAD_VALUE.search(value):
            raise TransportFailure("InvalidHeader")
        head.append(f"{name}: {value}\r\n")
    head.append("Accept-Encoding: identity\r\nUser-Agent: consent-gateway\r\n\r\n")
    try:
        return "".join(head).encode("latin-1") + body
    except UnicodeEncodeError:
        raise TransportFailure("InvalidHeader") from None


class _Connection(asyncio.Protocol):
    """One connection, one request at a time, kept alive between requests when the server allows.
    Bytes that come when no request is waiting (a second answer, a goodbye) end the connection:
    they must never be taken for the next request's answer."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._answer: asyncio.Future[Reply] | None = None
        self._headers: dict[str, str] = {}  # repeated ones joined with ", " as they come
        self._body = bytearray()
        self._received = 0
        self._head_done = False
        self._refusal: str | None = None
        self.open = True
        self.idle_since = 0.0
        self.on_lost: Callable[[_Connection], None] | None = None

    async def exchange(self, request: bytes) -> Reply:
        if not self.open or self._transport is None or self._transport.is_closing():
            raise _Unheard()  # closed between its making (or its last answer) and now
        self._answer = asyncio.get_running_loop().create_future()
        self._received = 0
        try:
            self._transport.write(request)
        except RuntimeError:  # uvloop: the transport closed a moment ago
            self.abort()
            raise _Unheard() from None
        return await self._answer

    def close(self) -> None:
        """After a whole answer: the server asked to close, or the pool is done with it."""
        self.open = False
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """After a failure: no goodbye (over TLS, `close` would wait for the peer's)."""
        self.open = False
        if self._transport is not None:
            self._transport.abort()

    def time_out(self) -> None:
        """The answer's deadline passed: the request fails, and the connection with it."""
        self._fail(TransportFailure("Timeout"))

    # -- asyncio's side ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio's subclasses

    def data_received(self, data: bytes) -> None:
        if self._answer is None:
            self._fail(TransportFailure("ProtocolError"))
            return
        self._received += len(data)
        if self._received > MAX_ANSWER_BYTES:
            self._fail(TransportFailure("AnswerTooLarge"))
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self._fail(TransportFailure(self._refusal or "ProtocolError"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.on_lost is not None:
            self.on_lost(self)
        if exc is None and self._head_done and self._unframed():
            # An answer with neither a length nor chunks ends when the connection does, cleanly.
            self._complete(self._parser.get_status_code())
        else:
            self._fail(TransportFailure("ServerDisconnected") if self._received else _Unheard())

    def _unframed(self) -> bool:
        return "content-length" not in self._headers and "transfer-encoding" not in self._headers

    # -- httptools' side -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._answer is None:  # a second answer after the one asked for
            self._refusal = "ProtocolError"
            raise RuntimeError  # stops the parser; data_received turns it into the failure

    def on_header(self, name: bytes, value: bytes) -> None:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        self._head_done = True
        # Asked for identity; a coding we would not decode. Of transfer-codings the parser
        # decodes chunked alone: `gzip, chunked` came back as a reply of gzipped bytes, and a
        # provider's error detail in it (FCM's UNREGISTERED) went unread.
        coded = self._headers.get("transfer-encoding", "chunked").strip().lower() != "chunked"
        if coded or "content-encoding" in self._headers:
            self._refusal = "ProtocolError"
            raise RuntimeError

    def on_body(self, body: bytes) -> None:
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
        if answer is not None and not answer.done():
            answer.set_result(reply)

    def _fail(self, failure: TransportFailure) -> None:
        self.abort()
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_exception(failure)


class Http1Client:
    """Up to `connections` requests in flight, over connections kept per host for the next ones.
    Made outside the event loop that uses it; opens nothing until the first request."""

    def __init__(
        self, timeout: float, tls: ssl.SSLContext | None = None, *, connections: int = CONNECTIONS
    ) -> None:
        self._timeout = timeout
        self._tls = tls
        self._connections = connections
        self._slots = Slots(connections)
        self._idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        self._idle_count = 0
        self._closed = False
        # The last URL's target: a relay's or FCM's URL is the same for every send, and parsing it
        # cost ~5% of a delivered push. One entry only, since a Web Push endpoint names a device.
        self._last: tuple[str, _Target] | None = None
        self._deadlines = _Deadlines()

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        *,
        content: bytes | None = None,
        form: Mapping[str, str] | None = None,
    ) -> Reply:
        if self._last is not None and self._last[0] == url:
            target = self._last[1]
        else:
            target = _target(url)
            self._last = (url, target)
        if form is not None:
            content = urlencode(form).encode()
            headers = {**headers, "content-type": "application/x-www-form-urlencoded"}
        request = _request(target, headers, content or b"")
        async with self._slots:
            deadline = asyncio.get_running_loop().time() + self._timeout
            return await self._exchange(target, request, deadline)

    async def send(self, url: str, headers: Mapping[str, str], body: bytes, now: Clock) -> DeliveryResult:
        """One POST to a Web Push service, classified: there 404 and 410 mean the subscription is
        gone (RFC 8030, section 7.3; the endpoint's host is a known push service, never ours to
        misconfigure). The wallet's relay does not get this rule: see clients/delivery/webhook.py.
        A 401 or a 403 is our VAPID token refused, which every subscription on that service would
        meet alike: tried again and counted toward the circuit, not failed for the device. RFC
        8292 (section 4.2) answers a token absent with 401 and one invalid (a key rotated or
        mistyped, a clock far off, a subject refused) with 403, as Apple's service does
        (`BadJwtToken`); failed for the device, every push to that service was dead-lettered at
        its first attempt. A 403 can also be one subscription made for another application
        server key: that push spends its attempts and is dead-lettered, as it was at once."""
        try:
            reply = await self.post(url, headers, content=body)
        except TransportFailure as exc:
            return transport_failure(exc.code)
        if reply.status in (404, 410):
            return invalid_token(reply, None)
        if reply.status in (401, 403):
            return refused_alike(reply, now, None)
        return classify_status(reply, now)

    async def aclose(self) -> None:
        """Closes the kept connections; those of requests still running close when they end."""
        self._closed = True
        for kept in list(self._idle.values()):
            for conn in list(kept):
                conn.close()
        self._idle.clear()
        self._idle_count = 0

    async def _exchange(self, target: _Target, request: bytes, deadline: float) -> Reply:
        kept = self._take(target)
        if kept is not None:
            try:
                return self._keep(target, kept, await self._answer(kept, request, deadline))
            except _Unheard:
                pass  # closed by the server while idle, most likely: once more, on a new connection
            except BaseException:
                kept.abort()
                raise
        try:
            async with asyncio.timeout_at(deadline):
                conn = await self._connect(target)
        except TimeoutError:
            raise TransportFailure("Timeout") from None
        try:
            return self._keep(target, conn, await self._answer(conn, request, deadline))
        except BaseException:
            conn.abort()  # timed out or cancelled mid-answer: what comes next on it is unknown
            raise

    async def _answer(self, conn: _Connection, request: bytes, deadline: float) -> Reply:
        self._deadlines.add(conn, deadline)
        try:
            return await conn.exchange(request)
        finally:
            self._deadlines.discard(conn)

    async def _connect(self, target: _Target) -> _Connection:
        tls, host, port = target.key
        context = None
        if tls:
            context = self._tls = self._tls or ssl.create_default_context()
        loop = asyncio.get_running_loop()
        try:
            addresses = _literal(host, port) or await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            # Closes its own sockets when it fails or is cancelled.
            sock = await aiohappyeyeballs.start_connection(
                addresses, happy_eyeballs_delay=HAPPY_EYEBALLS_SECONDS
            )
        except (OSError, ValueError):  # ValueError: no address at all
            raise TransportFailure("ConnectError") from None
        # From here the loop owns the socket (both loops make the transport before they first
        # wait) and closes it on failure: closing it here too could close a later socket that
        # got its descriptor number, before uvloop's deferred close runs.
        try:
            _, conn = await loop.create_connection(
                _Connection, sock=sock, ssl=context, server_hostname=host if tls else None
            )
        except ssl.SSLError:
            raise TransportFailure("TLSError") from None
        except OSError:
            raise TransportFailure("ConnectError") from None
        return conn

    def _take(self, target: _Target) -> _Connection | None:
        kept = self._idle.get(target.key)
        now = asyncio.get_running_loop().time()
        while kept:
            conn = self._forget(kept.pop())
            if now - conn.idle_since <= IDLE_SECONDS:
                return conn
            conn.close()
        return None

    def _keep(self, target: _Target, conn: _Connection, reply: Reply) -> Reply:
        if not conn.open:
            return reply
        if self._closed or self._idle_count >= self._connections:
            conn.close()
            return reply
        conn.idle_since = asyncio.get_running_loop().time()
        conn.on_lost = self._lost
        self._idle.setdefault(target.key, []).append(conn)
        self._idle_count += 1
        return reply

    def _forget(self, conn: _Connection) -> _Connection:
        """`conn` leaves the idle lists (it was popped from its own list already)."""
        conn.on_lost = None
        self._idle_count -= 1
        return conn

    def _lost(self, conn: _Connection) -> None:
        """A kept connection closed by the server while idle leaves the pool at once: it must not
        hold one of the places of kept connections until its host is asked again."""
        for key, kept in self._idle.items():
            if conn in kept:
                kept.remove(conn)
                self._forget(conn)
                if not kept:
                    del self._idle[key]
                return


class _Deadlines:
    """The connections waiting for an answer, each with its deadline, and one timer, set for
    the earliest: it times out those past theirs and is set again for the earliest left. Adding
    and removing a connection is a dict's work. The timer is set when the first answer is awaited
    and cancelled when the last comes (once a delivery round, not once a request), or set earlier
    for a deadline before its own: one that waited to connect is older than those that did not.

    The time the timer is set for is kept here, not asked of its handle: uvloop hands back a plain
    `Handle`, with no `when()`, for a delay under half a millisecond. Its clock counts whole
    milliseconds, so a timer may fire a rounding error before its deadline: what is due within
    `_SLACK` of now is timed out then, rather than the timer being set again and again for nothing
    left to wait. A timer of a loop that is gone (closed with a request still waiting) is dropped
    with that loop's waiting connections, which nothing can answer any more."""

    _SLACK = 0.001

    def __init__(self) -> None:
        self._waiting: dict[_Connection, float] = {}
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, conn: _Connection, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._waiting, self._timer, self._loop = {}, None, loop
        self._waiting[conn] = deadline
        if self._timer is not None and deadline < self._timer_at:
            self._timer.cancel()
            self._timer = None
        if self._timer is None:
            self._set(deadline)

    def discard(self, conn: _Connection) -> None:
        self._waiting.pop(conn, None)
        if not self._waiting and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _set(self, deadline: float) -> None:
        assert self._loop is not None
        self._timer, self._timer_at = self._loop.call_at(deadline, self._fire), deadline

    def _fire(self) -> None:
        assert self._loop is not None
        due = self._loop.time() + self._SLACK
        for conn in [conn for conn, deadline in self._waiting.items() if deadline <= due]:
            del self._waiting[conn]
            conn.time_out()
        self._timer = None
        if self._waiting:
            self._set(min(self._waiting.values()))


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


# Refused here, before any connection: the provider was not asked, so its circuit learns nothing.
_REFUSED_BEFORE_SENDING = frozenset({"InvalidURL", "InvalidHeader"})


def transport_failure(code: str) -> DeliveryResult:
    """Timeouts, refused connections, protocol errors: transient."""
    asked = code not in _REFUSED_BEFORE_SENDING
    return DeliveryResult(status="retry", provider_code=code, asked_provider=asked)


def refused_alike(reply: Reply, now: Clock, code: str | None) -> DeliveryResult:
    """A refusal of ours, not the device's, which every push would meet alike: our own credential
    refused (a service-account key revoked or rotated, a signing key, key id or team mistyped, a
    clock far off), or a relay URL that names nothing (404). None is failed for it. A retry counts
    against the provider's circuit: after a few the circuit opens, and pushes wait unsent, spending
    no attempt, for the operator to mend it; those still within their TTL go out then."""
    retry_after = parse_retry_after(reply.headers.get("retry-after"), now())
    return DeliveryResult(
        status="retry", retry_after=retry_after, provider_status=reply.status, provider_code=code
    )


def invalid_token(reply: Reply, code: str | None) -> DeliveryResult:
    return DeliveryResult(status="invalid_token", provider_status=reply.status, provider_code=code)


def ttl_seconds(expires_at: float, now: float) -> int:
    """Whole seconds left to live, never negative (0 = deliver now or drop)."""
    return max(0, int(expires_at - now))
