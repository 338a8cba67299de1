"""The delivery worker loop: claim, dispatch, sleep briefly when idle. Runs inside
`consent-gateway serve` by default, or alone as `consent-gateway worker`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket

from gateway.services.dispatch import Dispatcher, Settling, SlowRound

__all__ = ["Worker"]

log = logging.getLogger("gateway.worker")
IDLE_SECONDS = 0.2
FAILING_WAIT_SECONDS = 5.0  # the longest wait between failing rounds (doubling from IDLE_SECONDS)
# A round whose sends take longer than this goes on alone while the next rounds are claimed: one
# provider that hangs (each send up to its 10 s timeout) must not hold back the pushes to the
# others. Rounds take milliseconds otherwise, and go one after another as before.
SLOW_ROUND_SECONDS = 1.0
MAX_SLOW_ROUNDS = 8  # past this many going on alone, the worker waits for one to end


class Worker:
    def __init__(self, dispatcher: Dispatcher, batch: int) -> None:
        self._dispatcher = dispatcher
        self._batch = batch
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._stop = asyncio.Event()
        self._unrecorded = 0  # rounds whose recording failed and is being tried again

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        log.info("delivery worker started", extra={"owner": self.owner})
        settling: Settling | None = None  # the last round's results, being recorded
        slow: set[asyncio.Task[None]] = set()  # rounds going on alone
        failed = 0  # rounds failed in a row
        while not self._stop.is_set():
            if self._unrecorded and slow:
                # A slow round's results are not recorded yet: claiming now could take its pushes
                # back once their leases end (this worker is their owner still) and send them again.
                await asyncio.wait(slow, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                claimed, next_settling = await self._dispatcher.start_round(
                    self.owner, self._batch, SLOW_ROUND_SECONDS
                )
                if isinstance(next_settling, SlowRound):
                    going_on = asyncio.ensure_future(self._settled_later(next_settling))
                    slow.add(going_on)
                    going_on.add_done_callback(slow.discard)
                    next_settling = None
                    if len(slow) >= MAX_SLOW_ROUNDS:
                        await asyncio.wait(slow, return_when=asyncio.FIRST_COMPLETED)
            except Exception:  # keep delivering: a failed round is retried after its lease expires
                # A full disk or a held lock fails every round until it passes: said once, with
                # what raised, and tried again less and less often, not logged five times a second.
                if not failed:
                    log.exception("delivery round failed; retrying, and saying so once it works")
                failed += 1
                claimed, next_settling = 0, None
            else:
                if failed:
                    log.warning("delivery rounds work again", extra={"failed_rounds": failed})
                failed = 0
            await self._settled(settling)
            settling = next_settling
            if claimed == 0:
                wait = min(FAILING_WAIT_SECONDS, IDLE_SECONDS * 2 ** min(failed, 8))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), wait)
        await self._settled(settling)
        if slow:
            await asyncio.wait(slow)
        log.info("delivery worker stopped", extra={"owner": self.owner})

    async def _settled_later(self, round_: SlowRound) -> None:
        """A slow round's results recorded once its sends end, as any round's are."""
        await self._settled(await round_.settling)

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
