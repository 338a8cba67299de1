"""Sends in flight to one provider, at most so many, the others waiting their turn.

`asyncio.Semaphore` would do, but on CPython 3.11 each `acquire` walks every waiter (its
`locked()` asks each whether it was cancelled, gh-97545): with a delivery round's sends queued
behind the last round's, 256 waiters, that was ~4% of the worker's CPU, and anyio's semaphore
cost more still. Here taking a free slot does not wait at all, and a slot given back goes
straight to the first waiter.
"""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import suppress

__all__ = ["Slots"]


class Slots:
    __slots__ = ("_free", "_waiting")

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError("at least one slot")
        self._free = count
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.cancelled():  # cancelled while waiting: no slot was given to it
                with suppress(ValueError):  # a release may have passed it over already
                    self._waiting.remove(turn)
            else:  # given a slot, then cancelled before it ran: the slot goes on
                self._give_back()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._give_back()

    def _give_back(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():  # not cancelled meanwhile
                turn.set_result(None)
                return
        self._free += 1
