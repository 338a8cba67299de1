"""Answers that rest on a read wait until what was read is on disk.

Readers can see a commit in the short time before the sync thread has made it durable
(`storage.db`). A client shown such data, say a ledger event an auditor then checkpoints,
could see it vanish in a power cut. So before a response starts, a request that wrote
nothing waits for the commits made so far; one that wrote was answered after its own
commit's fsync already, which covers everything it read.
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from storage.db import wrote_in_context

__all__ = ["durable_answers"]


def durable_answers(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        store = scope["litestar_app"].state.runtime.store
        wrote_in_context.set(False)

        async def send_durably(message: Message) -> None:
            if message["type"] == "http.response.start" and not wrote_in_context.get():
                await store.durable()
            await send(message)

        await app(scope, receive, send_durably)

    return middleware
