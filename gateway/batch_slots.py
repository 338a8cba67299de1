"""A process reads and decides at most a few push batches at once; the others wait a little for a
slot, then are answered 503 with `Retry-After`, nothing read and nothing written.

A batch holds about 2.6 times its body in memory while it is read and decided (the body, 10,000
structs, their answers; a body may be 64 MiB), and nothing bounded how many ran together: a
review's eight clients uploading 35 MiB batches at once took a server from 87 to 805 MiB, and
a few more would have met the OOM killer, which loses every request in flight. More at once buys
no speed either: a batch's decisions hold the process's one event loop. A batch waiting for a
slot has not been read, so its bytes wait in its connection, not in the process.

The slot is taken after authentication and the route's own guard (a 401 or 403 reads no body
and waits for nothing) and before the body is read, and given back once the answer is sent or the
request ends otherwise (a 408 for a stalled body). So a batch holds its slot while its body
arrives: a service uploading 64 MiB over a slow link holds one for as long as that takes, and
two such uploads at once make every other batch wait, then retry. A body that stops is cut by
`CGW_BODY_TIMEOUT_SECONDS`; one still moving is not.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar.connection import ASGIConnection
from litestar.types import ASGIApp, Receive, Scope, Send

from gateway.errors import BatchesBusy
from gateway.routes.access import PUSHES_WRITE

__all__ = ["WAIT_SECONDS", "BatchSlots", "one_batch_slot"]

WAIT_SECONDS = 2.0
"""How long a batch waits for a slot before its 503: a few batches' decisions (~1.5 s for 10,000
on one core), short of a client's timeout, which would send it again while it still waited."""


class BatchSlots:
    def __init__(self, count: int, wait: float = WAIT_SECONDS) -> None:
        self._free = asyncio.Semaphore(count)
        self._count = count
        self._wait = wait

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """One slot for the block, or `BatchesBusy` once `wait` passes with none free."""
        try:
            async with asyncio.timeout(self._wait):
                await self._free.acquire()
        except TimeoutError:
            raise BatchesBusy(
                f"this server is deciding {self._count} batches already, its most at once; retry shortly",
                retry_after=math.ceil(self._wait),
            ) from None
        try:
            yield
        finally:
            self._free.release()


def one_batch_slot(app: ASGIApp) -> ASGIApp:
    """Route middleware: `app` (the batch route) run holding one of the runtime's batch slots."""

    async def in_slot(scope: Scope, receive: Receive, send: Send) -> None:
        # The route's guard first (Litestar runs it inside this): a key that may not submit is
        # refused at once, not after waiting for a slot, and holds none meanwhile.
        checked = PUSHES_WRITE.guard(ASGIConnection(scope), scope["route_handler"])
        if inspect.isawaitable(checked):
            await checked
        slots: BatchSlots = scope["litestar_app"].state.runtime.batch_slots
        async with slots.held():
            await app(scope, receive, send)

    return in_slot
