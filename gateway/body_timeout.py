"""A request body that stops arriving is answered 408, not waited for.

uvicorn times out an idle connection between requests, not a request whose body is slow: a
client that sent its headers and one byte of a declared hundred held its connection, and a task,
for as long as it liked, and on SIGTERM held `serve` up with it (the delivery worker still sending
meanwhile). Each wait for the next part of a body now has `seconds`; a body still moving, however
slowly, is not cut. Nothing is decided before the whole body is read, so a 408 leaves nothing
written, and it closes the connection, whose rest is never read.
"""

from __future__ import annotations

import asyncio

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from gateway.errors import RequestTimeout

__all__ = ["read_bodies_in_time"]


def read_bodies_in_time(app: ASGIApp, seconds: float) -> ASGIApp:
    """`app` with each of its requests' body parts due within `seconds` of asking."""

    async def in_time(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        complete = False

        async def receive_in_time() -> ReceiveMessage:
            nonlocal complete
            if complete:  # later waits are for a disconnect, which may rightly never come
                return await receive()
            try:
                async with asyncio.timeout(seconds):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(f"the request body stopped arriving for {seconds:g} s", "body") from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await app(scope, receive_in_time, send)

    return in_time
