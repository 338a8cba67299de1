"""`HEAD` is answered wherever `GET` is, with GET's headers and no body (RFC 9110, section 9.3.2:
every general-purpose server supports both). Load balancers and uptime checks ask
`HEAD /healthz`; they got a 405.

Litestar serves `HEAD` only from handlers declared for it, and refuses such a handler if it
returns a body, so the request is routed as the `GET` it stands for: the whole app (guards, the
audit access log, the handler) runs as for that GET, and only the body is dropped. The request
is a `HEAD` again from its answer's first message on, so the hooks, the request log and the
server see the method the client sent; the server then sends the GET's `Content-Length` with no
body after it.
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

__all__ = ["allow_header", "answer_head_as_get"]


def answer_head_as_get(app: ASGIApp) -> ASGIApp:
    """`app` (Litestar's handler, inside its `before_send` hooks) answering `HEAD` as `GET`."""

    async def head_as_get(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["method"] == "HEAD":
            await _as_get(app, scope, receive, send)
        else:
            await app(scope, receive, send)

    return head_as_get


async def _as_get(app: ASGIApp, scope: HTTPScope, receive: Receive, send: Send) -> None:
    scope["method"] = "GET"

    async def without_body(message: Message) -> None:
        if message["type"] == "http.response.start":
            scope["method"] = "HEAD"
        elif message["type"] == "http.response.body":
            message["body"] = b""
        await send(message)

    try:
        await app(scope, receive, without_body)
    finally:
        scope["method"] = "HEAD"


def allow_header(methods: set[str]) -> bytes:
    """An `Allow` value for a path serving `methods`: with `HEAD` wherever `GET` is."""
    if "GET" in methods:
        methods = methods | {"HEAD"}
    return ", ".join(sorted(methods)).encode()
