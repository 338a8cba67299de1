"""The delivery worker loop: claim, dispatch, sleep briefly when idle. Runs inside
`consent-gateway serve` by default, or alone as `consent-gateway worker`.

Rounds overlap by one: the worker claims and decides the next round while the last one's sends
still run, then waits for those sends and queues their results, which the claim after joins in
one commit. Waiting instead for each round's slowest answers left the core idle for up to a
tenth of the time, and the provider idle while the next round was decided
(docs/performance-history.md, "Rounds that overlap"). The pushes whose judgment the last round's
results could change (to the same subjects; of a campaign those deliveries could pause) are put
back for the round after (`Dispatcher.start_round`'s `after`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket

from gateway.services.dispatch import Dispatcher
from gateway.services.dispatch_inflight import Sending, Settling

__all__ = ["Worker"]

log = logging.getLogger("gateway.worker")
IDLE_SECONDS = 0.2
FAILING_WAIT_SECONDS = 5.0  # the longest wait between failing rounds (doubling from IDLE_SECONDS)
# A round whose sends take longer than this once the next round is claimed goes on alone while
# later rounds are claimed: one provider that hangs (each send up to its 10 s timeout) must not
# hold back the pushes to the others. Rounds take milliseconds otherwise. A slow round holds
# nothing back: pushes to its subjects go in the rounds after it, as they did before rounds
# overlapped.
SLOW_ROUND_SECONDS = 1.0
MAX_SLOW_ROUNDS = 8  # past this many going on alone, the worker waits for one to end


class Worker:
    def __init__(self, dispatcher: Dispatcher, batch: int) -> None:
        self._dispatcher = dispatcher
        self._batch = batch
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._stop = asyncio.Event()
        self._unrecorded = 0  # rounds whose recording failed and is being tried again
        self._slow: set[asyncio.Future[None]] = set()  # rounds going on alone

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        log.info("delivery worker started", extra={"owner": self.owner})
        settling: Settling | None = None  # the last round's results, being recorded
        sending: Sending | None = None  # the last round, its sends running while the next is claimed
        failed = 0  # rounds failed in a row
        while not self._stop.is_set():
            if self._unrecorded and self._slow:
                # A slow round's results are not recorded yet: claiming now could take its pushes
                # back once their leases end (this worker is their owner still) and send them again.
                await asyncio.wait(self._slow, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                claimed, current = await self._dispatcher.start_round(self.owner, self._batch, sending)
            except Exception:  # keep delivering: a failed round is retried after its lease expires
                # A full disk or a held lock fails every round until it passes: said once, with
                # what raised, and tried again less and less often, not logged five times a second.
                if not failed:
                    log.exception("delivery round failed; retrying, and saying so once it works")
                failed += 1
                claimed, current = 0, None
            else:
                if failed:
                    log.warning("delivery rounds work again", extra={"failed_rounds": failed})
                failed = 0
            await self._settled(settling)
            settling = None
            if sending is not None:
                settling = await self._sent(sending)
            sending = current
            if sending is not None and not sending.overlaps:
                settling = await self._sent(sending)  # a short lease: see `Dispatcher.start_round`
                sending = None
            # Idle, unless a round was just waited for: its results go in with the next claim,
            # which may find the pushes put back for it due.
            if claimed == 0 and sending is None and settling is None:
                wait = min(FAILING_WAIT_SECONDS, IDLE_SECONDS * 2 ** min(failed, 8))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), wait)
        await self._settled(settling)
        if sending is not None:
            await self._settled(await self._sent(sending))
        if self._slow:
            await asyncio.wait(self._slow)
        log.info("delivery worker stopped", extra={"owner": self.owner})

    async def _sent(self, round_: Sending) -> Settling | None:
        """The round's results, queued once its sends end. Where the lease lets rounds overlap,
        sends that outlast `SLOW_ROUND_SECONDS` go on alone instead, recorded once they end,
        while the next rounds are claimed."""
        await asyncio.wait([round_.sent], timeout=SLOW_ROUND_SECONDS if round_.overlaps else None)
        if round_.sent.done():
            return self._settling(round_)
        going_on = asyncio.ensure_future(self._settled_later(round_))
        self._slow.add(going_on)
        going_on.add_done_callback(self._slow.discard)
        if len(self._slow) >= MAX_SLOW_ROUNDS:
            await asyncio.wait(self._slow, return_when=asyncio.FIRST_COMPLETED)
        return None

    async def _settled_later(self, round_: Sending) -> None:
        """A slow round's results recorded once its sends end, as any round's are."""
        await asyncio.wait([round_.sent])
        await self._settled(self._settling(round_))

    def _settling(self, round_: Sending) -> Settling | None:
        """Sends do not raise (an adapter that does is a retry, `Dispatcher._send_now`); should
        that break, the round's pushes are left to their leases and the worker goes on."""
        try:
            return round_.settle()
        except Exception:
            log.exception("a delivery round's sends failed; its pushes are left to their leases")
            return None

    async def _settled(self, settling: Settling | None) -> None:
        """Wait for a round's results to be recorded, recording them again while that fails, and
        claiming nothing meanwhile: the sends happened, and left to their leases the pushes would
        be sent again. A worker told to stop tries once more, then leaves them to their leases."""
        if settling is None:
            return
        failed = 0
        try:
            while True:
                try:
                    await settling.recorded
                except Exception:
                    if not failed:
                        log.exception("recording a delivery round's results failed; trying again")
                        self._unrecorded += 1
                    failed += 1
                    if self._stop.is_set() and failed > 1:
                        return
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            self._stop.wait(), min(FAILING_WAIT_SECONDS, IDLE_SECONDS * 2**failed)
                        )
                    settling.again()
                else:
                    if failed:
                        log.warning("a delivery round's results are recorded", extra={"failed_tries": failed})
                    return
        finally:
            if failed:
                self._unrecorded -= 1
