"""Whether a delivery round's sends may still start, asked by each send just before it starts.

A round decides its pushes at its claim, but its sends wait for the provider's connections and
may start most of a lease later. Two things answered meanwhile, in any process, must stop the
sends still to start: an erasure (they hold the user's tokens and the push's content), and a
campaign's pause, by an operator or by the complaint-rate rule (an operator who sees `paused`
expects the campaign to stop, not a round of it to go on). Each send asks past every cache.
Asked one at a time, that was a statement a send: a read transaction begun and ended, ~2.5 µs
on the Intel host of run AW and 17–20 µs on the AMD host of run AY, where it was 6% of the
served worker's samples. The sends a turn of the event loop lets start (a round's first wave
all at once, then those that each batch of answers frees a connection for) are answered
together, by one `IN` read of the directory and one read per campaign among them, in the next
turn. Each send still waits for its answer before it starts, so an erasure or a pause
committed before the read stops it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from storage.repositories import campaigns
from storage.store import Store

__all__ = ["SendChecks", "Stop"]

log = logging.getLogger("gateway.dispatch")

Stop = Literal["erased", "paused", "unread"]
"""Why a send may not start: its user is erased, its campaign paused since the push was decided,
or what says so could not be read (the send waits for its push's next claim)."""


class SendChecks:
    """One read per turn of the event loop for the sends that asked in it."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._asking: _Asked | None = None  # the sends of this turn, answered in the next

    def ask(self, subject_id: str, campaign: tuple[str, int] | None) -> asyncio.Future[Stop | None]:
        """None if the send may start, else why not. `campaign`: the push's campaign and its
        rowid in `pushes`, which a pause's mark is compared with. A future of its own each, so
        that a send cancelled while it waits (the loop shutting down) cancels no other's."""
        loop = asyncio.get_running_loop()
        asking = self._asking
        if asking is None or asking.loop is not loop:  # not one left by a loop that stopped
            asking = self._asking = _Asked(loop)
            loop.call_soon(self._answer, asking)
        answer: asyncio.Future[Stop | None] = loop.create_future()
        asking.sends.append((subject_id, campaign, answer))
        return answer

    def _answer(self, asked: _Asked) -> None:
        if self._asking is asked:
            self._asking = None
        live: set[str] | None = None
        stopping: dict[str, campaigns.CampaignRow | None] | None = None
        try:
            live = self._store.directory.holding(sid for sid, _, _ in asked.sends)
            wanted = {campaign[0] for _, campaign, _ in asked.sends if campaign is not None}
            reader = self._store.data.reader()
            stopping = {cid: campaigns.get(reader, cid) for cid in wanted}
        except Exception as exc:
            # Raised into the round's sends, it would leave the round unrecorded, and the sends
            # already made would be made again at its lease's end.
            self._store.after_failure(exc)  # a damaged page: the readers are renewed
            log.error(
                "sends' subjects or campaigns could not be read", extra={"exc_type": type(exc).__name__}
            )
        finally:
            # Answered whatever happened above: a send left waiting would hold its connection,
            # and its round, for good.
            for subject_id, campaign, answer in asked.sends:
                if not answer.done():
                    answer.set_result(_verdict(subject_id, campaign, live, stopping))


def _verdict(
    subject_id: str,
    campaign: tuple[str, int] | None,
    live: set[str] | None,
    stopping: dict[str, campaigns.CampaignRow | None] | None,
) -> Stop | None:
    if live is None:
        return "unread"
    if subject_id not in live:
        return "erased"
    if campaign is None:
        return None
    if stopping is None:
        return "unread"
    row = stopping.get(campaign[0])
    return "paused" if row is not None and row.stops(campaign[1]) else None


class _Asked:
    __slots__ = ("loop", "sends")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sends: list[tuple[str, tuple[str, int] | None, asyncio.Future[Stop | None]]] = []
