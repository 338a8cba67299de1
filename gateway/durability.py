"""Answers that rest on a read wait until what was read is on disk.

Readers can see a commit in the short time before the sync thread has made it durable
(`storage.wal`). A client shown such data, say a ledger event an auditor then checkpoints,
could see it vanish in a power cut. So before a response starts, a request that wrote
nothing waits for the commits made so far; one that wrote was answered after its own
commit's fsync already, which covers everything it read. If the disk has failed, what was
read may never be kept, so the answer becomes the same 503 a failed write gets.
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import storage_refusal_messages
from storage.failures import StorageFailedError
from storage.writer import wrote_in_context

__all__ = ["durable_answers"]


def durable_answers(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        store = scope["litestar_app"].state.runtime.store
        wrote_in_context.set(False)
        refused = False

        async def send_durably(message: Message) -> None:
            nonlocal refused
            if refused:  # the app's own answer, replaced below
                return
            if (
                message["type"] == "http.response.start"
                and message["status"] < 500  # an error shows nothing it read
                and not wrote_in_context.get()
            ):
                try:
                    await store.durable()
                except StorageFailedError as exc:
                    refused = True
                    for answer in storage_refusal_messages(exc, scope):
                        await send(answer)
                    return
            await send(message)

        await app(scope, receive, send_durably)

    return middleware
