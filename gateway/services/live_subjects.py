"""Whether a delivery round's users are still live, asked by each send just before it starts.

An erasure answered (in any process) while a round is under way must stop the round's sends
still to start: they hold the user's tokens and the push's content. Each send asks the
directory, past its cache. Asked one at a time, that was a statement a send: a read transaction
begun and ended, ~2.5 µs on the Intel host of run AW and 17–20 µs on the AMD host of run AY,
where it was 6% of the served worker's samples. The sends a turn of the event loop lets start (a
round's first wave all at once, then those that each batch of answers frees a connection for)
are answered together, by one `IN` read in the next turn. Each send still waits for its answer
before it starts, so an erasure committed before the read stops it.
"""

from __future__ import annotations

import asyncio
import logging

from storage.store import Store

__all__ = ["LiveSubjects"]

log = logging.getLogger("gateway.dispatch")


class LiveSubjects:
    """One directory read per turn of the event loop for the sends that asked in it."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._asking: _Asked | None = None  # the sends of this turn, answered in the next

    def ask(self, subject_id: str) -> asyncio.Future[bool | None]:
        """Whether the subject is live: True or False, or None if the directory could not be read
        (the sends of that read wait for their pushes' next claim). A future of its own each, so
        that a send cancelled while it waits (the loop shutting down) cancels no other's."""
        loop = asyncio.get_running_loop()
        asking = self._asking
        if asking is None or asking.loop is not loop:  # not one left by a loop that stopped
            asking = self._asking = _Asked(loop)
            loop.call_soon(self._answer, asking)
        answer: asyncio.Future[bool | None] = loop.create_future()
        asking.sends.append((subject_id, answer))
        return answer

    def _answer(self, asked: _Asked) -> None:
        if self._asking is asked:
            self._asking = None
        live: set[str] | None = None
        try:
            live = self._store.directory.holding(sid for sid, _ in asked.sends)
        except Exception as exc:
            # Raised into the round's sends, it would leave the round unrecorded, and the sends
            # already made would be made again at its lease's end.
            self._store.after_failure(exc)  # a damaged page: the readers are renewed
            log.error("sends' subjects could not be read", extra={"exc_type": type(exc).__name__})
        finally:
            # Answered whatever happened above: a send left waiting would hold its connection,
            # and its round, for good.
            for subject_id, answer in asked.sends:
                if not answer.done():
                    answer.set_result(None if live is None else subject_id in live)


class _Asked:
    __slots__ = ("loop", "sends")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sends: list[tuple[str, asyncio.Future[bool | None]]] = []
