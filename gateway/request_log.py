"""The request line and count of every request, with its request id; never personal data.

Request logging names the route template (`/v1/me/devices/{device_id}`), not the raw path,
and never the query string, so ids and lookups stay out of the logs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

from litestar._asgi.utils import wrap_in_exception_handler
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, ReceiveMessage, Scope, Send

from gateway.metrics import Metrics

__all__ = ["CLIENT_CLOSED", "method_label", "request_id_of", "request_log"]

_LOGGED = "cgw.request_id"  # in the scope's state: the id of a request the middleware logs
CLIENT_CLOSED = 499
"""The status logged and counted for a request whose client went away before its answer began
(nginx's "client closed request"). Litestar answers a body cut short with a 500, which no one
receives: counted as one, a flaky mobile upload read as a server fault in 5xx alerts. A client
that gave up while its request was decided or written (a timeout under load, which the SDK then
sends again) was counted by the answer no one got, a 200: under load, logs and metrics showed
clean answers while clients had none. What was written stays written; a retry gets its answer.
Whatever the app answered (a 503 too), 499 is what is logged: no one received it."""
LISTEN_AFTER = 0.5
"""Seconds a request runs before the middleware listens for its client leaving: a task for every
request would cost the fast ones, and a client rarely gives up on one answered sooner."""


def request_id_of(scope: Scope) -> str | None:
    """The request's id, as its request line and `x-request-id` give it: for the error handlers'
    own lines, which would otherwise be matched to a request only by their time."""
    found = scope.get("state", {}).get(_LOGGED)
    return found if isinstance(found, str) else None


def request_log(metrics: Metrics) -> tuple[Any, Callable[[Message, Scope], Awaitable[None]]]:
    """Logs and counts each request with the status its client got, and sets `x-request-id`:
    a middleware for the requests a route takes, and a `before_send` hook for those none does.

    Litestar runs app middleware per route handler, so a request the router refuses (404, 405)
    never reaches the middleware: a scan of paths or methods left no line, no count and no
    request id. The hook, which every answer passes, logs those (route `unmatched`, no timing:
    it sees only the answer) and skips what the middleware marked as its own.

    What runs inside may raise before any response starts: the authentication middleware's
    401 does. Litestar makes the response for such an exception only in its handler outside all
    middleware, so our `send` never saw it and the line said 500, without a request id. So the
    inner app is wrapped in Litestar's own exception handling (the app's handlers, the same
    answers), as Litestar itself does between a route and its middleware; the import is private,
    which the `litestar<3` pin keeps stable."""
    log = logging.getLogger("gateway.http")
    # Unique per process start and cheap per request (uuid4 was 5% of a push in the profile).
    prefix = secrets.token_hex(4) + "-"
    counter = itertools.count(1)
    # Each metric's child by its label values, asked of prometheus_client once: its `labels` takes
    # a lock and builds a key each time (~2% of a single push). The values are bounded: route
    # templates, the methods `method_label` keeps, statuses.
    requests = cache(metrics.requests.labels)
    request_seconds = cache(metrics.request_seconds.labels)

    def factory(app: ASGIApp) -> ASGIApp:
        handled = wrap_in_exception_handler(app)

        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            request_id = f"{prefix}{next(counter):x}"
            status = 500
            started = time.perf_counter()
            scope.setdefault("state", {})[_LOGGED] = request_id
            gone = False
            read = _bodiless(scope)  # the app has the whole body: what the server says next is a leave
            due = False  # LISTEN_AFTER has passed
            # A bodiless request's one message, heard by `listen` before the app asked for it. One:
            # HTTP/1.1 framing (`_bodiless`), where the server sends nothing more but a disconnect.
            unread: ReceiveMessage | None = None
            listening: asyncio.Task[None] | None = None

            async def receive_noting_disconnect() -> ReceiveMessage:
                nonlocal gone, read, unread
                if unread is not None:
                    message, unread = unread, None
                    return message
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone = True
                elif not message.get("more_body", False):
                    read = True
                    if due:
                        start_listening()
                return message

            async def listen() -> None:
                nonlocal gone, unread
                while not gone:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        gone = True
                    else:
                        unread = message

            def start_listening() -> None:
                """Once due and once the app has its body: before, the app's own reads see a leave."""
                nonlocal due, listening
                due = True
                if read and listening is None:
                    listening = asyncio.create_task(listen())

            timer = asyncio.get_running_loop().call_later(LISTEN_AFTER, start_listening)

            def stop_listening() -> None:
                timer.cancel()
                if listening is not None:
                    listening.cancel()

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    stop_listening()  # the server says `http.disconnect` once the answer is sent
                    status = CLIENT_CLOSED if gone else message["status"]
                    message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                await send(message)

            try:
                await handled(scope, receive_noting_disconnect, send_with_id)
            finally:
                stop_listening()
                elapsed = time.perf_counter() - started
                method = scope["method"]  # read once answered: a HEAD is routed as GET (gateway.head)
                route = str(scope.get("path_template") or "unmatched")
                requests(method, route, str(status)).inc()
                request_seconds(method, route).observe(elapsed)
                log.info(
                    "request",
                    extra={
                        "request_id": request_id, "method": method, "route": route,
                        "status": status, "ms": round(elapsed * 1000, 2),
                    },
                )  # fmt: skip

        return middleware

    async def unrouted(message: Message, scope: Scope) -> None:
        if (
            message["type"] != "http.response.start"
            or scope["type"] != ScopeType.HTTP
            or scope.get("state", {}).get(_LOGGED)
        ):
            return
        request_id = f"{prefix}{next(counter):x}"
        message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
        method = method_label(scope["method"])
        status = message["status"]
        requests(method, "unmatched", str(status)).inc()
        log.info(
            "request",
            extra={"request_id": request_id, "method": method, "route": "unmatched", "status": status},
        )

    return factory, unrouted


def _bodiless(scope: HTTPScope) -> bool:
    """A request that declares no body: the server's first message to the app is all of it."""
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return False
    return True


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


def method_label(method: str) -> str:
    """A request's method as logs and metric labels name it: a standard one, or OTHER, since the
    client spells it (an unbounded label, or text of its choosing in a log line)."""
    return method if method in _METHODS else "OTHER"
