"""Whether a delivery round's sends may still start, asked by each send just before it starts.

A round decides its pushes at its claim, but its sends wait for the provider's connections and
may start most of a lease later. What the user or an operator did meanwhile, answered in any
process, must stop the sends still to start:
- an erasure (they hold the user's tokens and the push's content);
- a campaign's pause, by an operator or by the complaint-rate rule (an operator who sees
  `paused` expects the campaign to stop, not a round of it to go on);
- the device removed, disabled, or registered since by another user, whose phone it now is (a
  review found the last user's push reaching the new one's phone seconds after the handover),
  or again by its user, maybe with new keys the message was not encrypted for;
- for a push whose decision read them (a marketing push's consent, topic switch and mutes, a
  personalized push's consent), its subject's consents, preferences or complaints changed since
  it was decided: a withdrawal or a topic switched off was answered, and the push still went.
  Such a send waits, and its push's next claim decides it again on what the user chose.
Each send asks past every cache. Asked one at a time, that was a statement a send: a read
transaction begun and ended, ~2.5 µs on the Intel host of run AW and 17–20 µs on the AMD host of
run AY, where it was 6% of the served worker's samples. The sends a turn of the event loop lets
start (a round's first wave all at once, then those that each batch of answers frees a
connection for) are answered together, by `IN` reads of the directory, the devices and the
changes, and one read per campaign among them, in the next turn. Each send still waits for its
answer before it starts, so what was committed before the read stops it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal, NamedTuple

from storage.repositories import campaigns, devices, subject_state
from storage.store import Store

__all__ = ["Asked", "SendChecks", "Stop"]

log = logging.getLogger("gateway.dispatch")

Stop = Literal["erased", "paused", "device", "changed", "unread"]
"""Why a send may not start: its user is erased, its campaign paused since the push was decided,
its device no longer the user's active one, the user's choices changed since the push was
decided, or what says so could not be read (the send waits for its push's next claim)."""


class Asked(NamedTuple):
    """One send's question. `campaign`: the push's campaign and its rowid in `pushes`, which a
    pause's mark is compared with. `device`: its id and when its token was last registered, as
    the claim read them. `seen`: the subject's `choices_stamp` as its push's decision read it, if
    that decision read its consents, preferences or mutes (None for one that read only the
    devices, as most transactional pushes' do). Either None: not asked about (a send starting
    right after its claim)."""

    subject_id: str
    device: tuple[str, str | None] | None
    campaign: tuple[str, int] | None
    seen: str | None


class SendChecks:
    """One read per turn of the event loop for the sends that asked in it."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._asking: _Asking | None = None  # the sends of this turn, answered in the next

    def ask(self, send: Asked) -> asyncio.Future[Stop | None]:
        """None if the send may start, else why not. A future of its own each, so that a send
        cancelled while it waits (the loop shutting down) cancels no other's."""
        loop = asyncio.get_running_loop()
        asking = self._asking
        if asking is None or asking.loop is not loop:  # not one left by a loop that stopped
            asking = self._asking = _Asking(loop)
            loop.call_soon(self._answer, asking)
        answer: asyncio.Future[Stop | None] = loop.create_future()
        asking.sends.append((send, answer))
        return answer

    def _answer(self, asking: _Asking) -> None:
        if self._asking is asking:
            self._asking = None
        read: _Read | None = None
        try:
            sends = [send for send, _ in asking.sends]
            reader = self._store.data.reader()
            wanted = {send.campaign[0] for send in sends if send.campaign is not None}
            read = _Read(
                live=self._store.directory.holding(send.subject_id for send in sends),
                owners=devices.active_owners(reader, [send.device[0] for send in sends if send.device]),
                stamps=subject_state.choices_stamp(
                    reader, {s.subject_id for s in sends if s.seen is not None}
                ),
                stopping={cid: campaigns.get(reader, cid) for cid in wanted},
            )
        except Exception as exc:
            # Raised into the round's sends, it would leave the round unrecorded, and the sends
            # already made would be made again at its lease's end.
            self._store.after_failure(exc)  # a damaged page: the readers are renewed
            log.error(
                "sends' subjects, devices or campaigns could not be read",
                extra={"exc_type": type(exc).__name__},
            )
        finally:
            # Answered whatever happened above: a send left waiting would hold its connection,
            # and its round, for good.
            for send, answer in asking.sends:
                if not answer.done():
                    answer.set_result("unread" if read is None else read.verdict(send))


class _Read(NamedTuple):
    live: set[str]
    owners: dict[str, tuple[str, str | None]]
    stamps: dict[str, str]
    stopping: dict[str, campaigns.CampaignRow | None]

    def verdict(self, send: Asked) -> Stop | None:
        if send.subject_id not in self.live:
            return "erased"
        if send.device is not None and self.owners.get(send.device[0]) != (send.subject_id, send.device[1]):
            return "device"
        if send.seen is not None and self.stamps.get(send.subject_id, "") != send.seen:
            return "changed"
        if send.campaign is None:
            return None
        row = self.stopping.get(send.campaign[0])
        return "paused" if row is not None and row.stops(send.campaign[1]) else None


class _Asking:
    __slots__ = ("loop", "sends")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sends: list[tuple[Asked, asyncio.Future[Stop | None]]] = []
