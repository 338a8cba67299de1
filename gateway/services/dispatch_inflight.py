"""A round's life after its claim: its sends under way (`Sending`), which pushes the next claim
holds back for them (`Holding`), and the recording of their results (`Settling`). The worker
claims the next round while one still sends (`gateway.worker`); see `Dispatcher.start_round`."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial

from clients.delivery import DeliveryResult
from gateway.services.campaign_rule import may_pause_at_delivery
from gateway.services.dispatch_reads import Send
from gateway.services.dispatch_writes import PushWrites
from policies import PolicySettings
from storage.connections import Connection
from storage.failures import is_corrupt
from storage.outbox import Claim
from storage.repositories.pushes import PushRow
from storage.writer import Writer

__all__ = ["Holding", "Sending", "Settling"]

log = logging.getLogger("gateway.dispatch")


class Sending:
    """A round's sends under way (`Dispatcher.start_round`). Once `sent` is done, `settle` queues
    the recording of their results. `subjects` are those of its pushes, `campaigns` their
    campaigns with how many of the pushes each (`Holding`).
    `overlaps` says whether the lease lets the worker claim the next round before these sends
    end."""

    def __init__(
        self,
        settling: Callable[[list[list[DeliveryResult]]], Settling],
        sent: asyncio.Future[list[list[DeliveryResult]]],
        sends: list[tuple[Claim, Send]],
        overlaps: bool,
    ) -> None:
        self._settling = settling
        self.sent = sent
        self.subjects = frozenset(s.subject_id for _, s in sends)
        self.campaigns = Counter(s.campaign_id for _, s in sends if s.campaign_id is not None)
        self.overlaps = overlaps

    def settle(self) -> Settling:
        return self._settling(self.sent.result())


class Holding:
    """Which of a claim's pushes wait for the round still sending (`after`), being judged
    otherwise without its results: a push to a subject among its sends (a device may have
    answered that its token is gone), and a push of a campaign among them that their deliveries
    could pause (`may_pause_at_delivery`, asked once per campaign and claim). A subject with a
    push held has its later pushes in the claim held too, so none overtakes it."""

    def __init__(self, conn: Connection, after: Sending | None, policy: PolicySettings) -> None:
        self._conn, self._after, self._policy = conn, after, policy
        self._subjects = set() if after is None else set(after.subjects)
        self._pausable: dict[str, bool] = {}

    def __call__(self, row: PushRow) -> bool:
        if self._after is None:
            return False
        if row.subject_id in self._subjects:
            return True
        campaign_id = row.campaign_id
        deliveries = 0 if campaign_id is None else self._after.campaigns.get(campaign_id, 0)
        if campaign_id is None or not deliveries:
            return False
        if campaign_id not in self._pausable:
            self._pausable[campaign_id] = may_pause_at_delivery(
                self._conn, campaign_id, deliveries, self._policy
            )
        if self._pausable[campaign_id] and row.subject_id is not None:
            self._subjects.add(row.subject_id)
        return self._pausable[campaign_id]


class Settling:
    """A round's results on their way to the database. The sends happened: should the writer's
    unit fail (a full disk, the write lock held elsewhere, an I/O error), the worker records them
    again (`again`) rather than leave the pushes to their leases, which would send each again at
    every lease and spend an attempt, until a push the provider took ended `failed`. The unit only
    writes if it commits, so running it again is safe; what was recorded is not recorded again.

    A page that fails its check (`is_corrupt`) is not an error that passes: recorded again whole,
    the round failed for good, and the worker with it, which claims nothing while it records.
    Then each push is recorded alone, and those whose recording meets the page are set aside
    (`set_aside`): left to their leases they were sent again at every lease, to the same people."""

    def __init__(
        self,
        writer: Writer,
        work: Callable[[Sequence[int], Connection], list[PushWrites]],
        set_aside: Callable[[Sequence[int], Connection], list[str]],
        push_ids: list[str],
        count: Callable[[list[PushWrites]], None],
    ) -> None:
        self._writer, self._work, self._set_aside, self._count = writer, work, set_aside, count
        self._push_ids = push_ids
        self._left = list(range(len(push_ids)))  # the round's pushes not recorded yet, by index
        self.recorded = self._submit(self._left)

    def again(self) -> None:
        failure = None if self.recorded.cancelled() else self.recorded.exception()
        if failure is not None and is_corrupt(failure):
            self.recorded = asyncio.ensure_future(self._each_alone())
        else:
            self.recorded = self._submit(self._left)

    def _submit(self, pushes: Sequence[int]) -> asyncio.Future[list[PushWrites]]:
        chosen = list(pushes)
        recorded = self._writer.submit(partial(self._work, chosen))
        recorded.add_done_callback(partial(self._counted, chosen))
        return recorded

    def _counted(self, chosen: list[int], recorded: asyncio.Future[list[PushWrites]]) -> None:
        if not recorded.cancelled() and recorded.exception() is None:
            recorded_now = set(chosen)
            self._left = [i for i in self._left if i not in recorded_now]
            self._count(recorded.result())

    async def _each_alone(self) -> list[PushWrites]:
        alone = [(i, self._submit([i])) for i in self._left]
        await asyncio.wait([recorded for _, recorded in alone])
        written: list[PushWrites] = []
        damaged: list[int] = []
        failure: BaseException | None = None
        for i, recorded in alone:
            exc = recorded.exception()
            if exc is None:
                written += recorded.result()
            elif is_corrupt(exc):
                damaged.append(i)
            else:
                failure = failure or exc
        if damaged:
            # Should this fail too (the outbox's own page), `again` tries these again: the outbox
            # damaged stops delivery until the file is restored, whatever is done here.
            taken = await self._writer.submit(partial(self._set_aside, damaged))
            gone = set(damaged)
            self._left = [i for i in self._left if i not in gone]
            for i in damaged:
                push_id = self._push_ids[i]
                then = "taken, none to try again: not sent again" if push_id in taken else "tried again later"
                log.error(
                    f"a push's results could not be recorded: a page they need fails its check; {then}",
                    extra={"push_id": push_id},
                )
        if failure is not None:
            raise failure  # one that passes (a full disk): `again` records what is left
        return written
