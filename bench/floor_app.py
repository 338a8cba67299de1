"""The floor: a bare Litestar app whose POST decodes a ~300-byte JSON body into a msgspec Struct.

Served exactly like the gateway (uvicorn, uvloop, httptools, one worker on core 0), it is the most
a Litestar POST can do on this machine; the gateway's figures are read against it.
"""

from __future__ import annotations

import msgspec
from litestar import Litestar, post


class Item(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    idempotency_key: str
    user_id: str
    topic: str
    title: str
    body: str
    data: dict[str, str] = {}
    ttl_seconds: int | None = None


class Answer(msgspec.Struct):
    ok: bool
    topic: str


@post("/echo", status_code=200)
async def echo(data: Item) -> Answer:
    return Answer(ok=True, topic=data.topic)


app = Litestar(route_handlers=[echo], logging_config=None, openapi_config=None)
