"""A local webhook receiver for the delivery benchmark: answers 200 at once, verifies nothing.

A raw ASGI app (no framework) served by uvicorn with uvloop and httptools; `GET /count` says
how many deliveries it has taken, which is how the benchmark measures pushes per second.
"""

from __future__ import annotations

from typing import Any

_count = 0

Scope = dict[str, Any]


async def app(scope: Scope, receive: Any, send: Any) -> None:
    global _count
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    if scope["method"] == "GET":
        body = str(_count).encode()
    else:
        _count += 1
        body = b"{}"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
