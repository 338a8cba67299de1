"""Requests that join one writer unit while it waits to run, and are handled in it together.

Deciding one push alone costs about ten times what it costs inside a batch: the policy version,
the directory's read, the subject state's queries and the unit's own writes are paid once per
submission, whatever its size (docs/performance-history.md, "Run X and a single push taken
apart"). The writer runs what was queued at the next turn of the loop, or, while a commit waits
for its fsync, when that fsync is done: under load, requests queue there anyway. So the first
request of a group queues one unit, and those that come before it runs join it; nobody waits
for company, and a request that comes alone runs as soon as it would have alone.

Each caller still gets its own outcome: the function handling a group answers one per item,
and an item's exception is raised to that item's caller only. An exception from the unit
itself (storage failing, say) reaches every caller of the group.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Generic, TypeVar

from storage.connections import Connection
from storage.failures import is_corrupt, raisable
from storage.writer import Writer

__all__ = ["SharedUnit"]

I = TypeVar("I")  # noqa: E741 - the item, as R is the result
R = TypeVar("R")


class SharedUnit(Generic[I, R]):
    def __init__(
        self, writer: Writer, handle: Callable[[Connection, list[I]], Sequence[R | Exception]]
    ) -> None:
        self._writer = writer
        self._handle = handle
        # Held only to join or close a group: a writer serving another loop runs units on a
        # thread (`Writer.submit`), which closes the group while this loop may be joining it.
        self._lock = threading.Lock()
        # One open group per loop: a group's answers are set where its unit settles, on the
        # loop of the request that queued it, and would not wake a caller waiting on another.
        self._open: dict[asyncio.AbstractEventLoop, list[tuple[I, asyncio.Future[R]]]] = {}

    async def submit(self, item: I) -> R:
        """`item`'s outcome, handled in one unit with the items that join it before it runs;
        answered once that unit's commit is durable."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        with self._lock:
            group = self._open.get(loop)
            first = group is None
            if group is None:
                group = self._open[loop] = []
            group.append((item, future))
        if first:
            unit = self._writer.submit(partial(self._run, loop, group))
            unit.add_done_callback(partial(self._settle, loop, group))
        return await future

    def _close(self, loop: asyncio.AbstractEventLoop, group: list[tuple[I, asyncio.Future[R]]]) -> None:
        with self._lock:
            if self._open.get(loop) is group:
                del self._open[loop]

    def _run(
        self, loop: asyncio.AbstractEventLoop, group: list[tuple[I, asyncio.Future[R]]], conn: Connection
    ) -> list[R | Exception]:
        self._close(loop, group)  # who comes now starts the next unit
        outcomes = list(self._handle(conn, [item for item, _ in group]))
        if len(outcomes) != len(group):  # else some callers would wait forever
            raise RuntimeError(f"{len(outcomes)} outcomes for {len(group)} items")
        return outcomes

    def _settle(
        self,
        loop: asyncio.AbstractEventLoop,
        group: list[tuple[I, asyncio.Future[R]]],
        unit: asyncio.Future[list[R | Exception]],
    ) -> None:
        self._close(loop, group)  # a unit refused before it ran (a failed writer) never closed it
        if unit.cancelled():
            for _, future in group:
                future.cancel()
            return
        failure = unit.exception()
        if failure is not None and is_corrupt(failure) and len(group) > 1:
            self._each_alone(group)
            return
        for index, (_, future) in enumerate(group):
            if future.done():  # its caller has gone (a client that hung up)
                continue
            outcome = failure if failure is not None else unit.result()[index]
            if isinstance(outcome, BaseException):
                # An item's own StopIteration (a `next()` on nothing in a defect) would make
                # `set_exception` raise here and leave this caller and the rest unanswered.
                future.set_exception(raisable(outcome))
            else:
                future.set_result(outcome)

    def _each_alone(self, group: list[tuple[I, asyncio.Future[R]]]) -> None:
        """One item met a damaged page, which fails the unit and so every item in it (the handler
        lets SQLite's errors through): each is done again in a unit of its own, so that only
        the one that needs the page fails (`Writer._redo_without`)."""
        for item, future in group:
            if not future.done():
                alone = self._writer.submit(partial(self._run_alone, item))
                alone.add_done_callback(partial(_pass_on, future))

    def _run_alone(self, item: I, conn: Connection) -> R:
        (outcome,) = self._handle(conn, [item])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def _pass_on(future: asyncio.Future[R], done: asyncio.Future[R]) -> None:
    if future.done():  # its caller has gone
        return
    if done.cancelled():
        future.cancel()
    elif (failure := done.exception()) is not None:
        future.set_exception(failure)
    else:
        future.set_result(done.result())
