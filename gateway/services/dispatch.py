"""Dispatch: from a claimed outbox row to the user's devices, deciding again on the way.

For each claimed push:
1. In one writer unit — serialized with consent changes, erasure and complaints — decide the
   push again with the subject's current state (the push itself left out of the caps and the
   remaining TTL as its TTL). Rejected: the push ends `rejected` with the new reasons. Deferred
   (its time has not come): back to the outbox for then. Past expiry: `expired`. Otherwise it
   is marked `sending` and its not-yet-delivered devices are read. A withdrawal committed before
   this unit therefore stops the push; one committed after it stops the sends not yet started,
   each of which asks, as it starts, whether what the decision read still holds (`SendChecks`).
   A push deferred before that can now only be refused for its timing (quiet hours reaching
   past its expiry) ends `expired`, as the spec's TTL rule says. A push already delivered to
   one of its devices is never ended rejected, expired or erased: the user has it, so it ends
   `delivered` (the new reasons kept) and keeps counting against the caps; no more is sent.
   Nor is it deferred: when its retry to its other devices meets quiet hours, it keeps its
   status and planned time, and only its outbox row waits for the window's end. A push whose
   judgment the round still sending could change (`start_round`'s `after`) is put back unsent,
   as if it had not been claimed.
2. Send to each device through its platform's adapter, unless that provider's circuit is open.
3. In a second unit, record each device's result (invalid tokens disable the device) and either
   end the push (`delivered`, or `failed` after the last attempt) or reschedule it with backoff.

Steps 1 and 3 only read and conclude: each push's conclusion is a `PushWrites`, and the round's
are written together, one statement per kind of write (`dispatch_writes`).

A crash between 2 and 3 leaves the lease to expire; the push is claimed again and devices not
recorded as delivered are sent again with the same idempotency key. The lost round counts as an
attempt (`outbox.claim`): a push claimed with its attempts spent ends `failed` in step 1, unsent.

What step 1 reads is read for the whole round at once (`Round`): the push rows, their subjects'
keys, states, devices and delivery records, a few `IN` queries per round instead of a dozen
queries per push. Within the round the snapshot is kept true to what step 1 concludes: a push
that ends or is deferred no longer counts (or counts at its new time) against its subject's caps.
(Should that push's write then fail, it stays as it was and is decided again when its lease
expires, with the round's other pushes counted by then.) When the round's read fails, each push
is read alone from the database, and written before the next one is read; its subject is read
only after its expiry is checked, so a push whose subject's data does not open still expires.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache, partial
from typing import NamedTuple, TypeVar

import msgspec

from clients.delivery import (
    EXPIRED_UNSENT,
    LONGEST_SEND_SECONDS,
    CircuitBreaker,
    DeliveryAdapter,
    DeliveryMessage,
    DeliveryResult,
    SeveralProviders,
    backoff_delay,
    is_provider_failure,
)
from clients.delivery.slots import Slots
from gateway.clock import Clock
from gateway.metrics import Metrics
from gateway.services import dispatch_writes
from gateway.services.dispatch_inflight import Holding, Sending, Settling
from gateway.services.dispatch_reads import Round, Send, already_delivered
from gateway.services.dispatch_writes import PushWrites
from gateway.services.policy import PolicySource
from gateway.services.pushes import policy_request, wire_reasons
from gateway.services.send_checks import Asked, SendChecks, Stop
from gateway.settings import Settings
from policies import (
    Decision,
    PushNeeds,
    PushRequest,
    Reason,
    StateParts,
    check_expiry,
    decide,
    state_parts_for,
)
from policies.catalog import is_marketing
from policies.frequency import SEND_LAG
from policies.reasons import EXPIRED, NO_DEVICE, QUIET_HOURS, SUBJECT_ERASED
from storage import outbox
from storage.connections import Connection, savepoint
from storage.failures import is_corrupt
from storage.outbox import Claim, Reschedule
from storage.repositories.deliveries import DeliveryRecord
from storage.repositories.devices import DeviceRow
from storage.repositories.pushes import PushContent, PushRow, StatusChange
from storage.store import Store

__all__ = ["Dispatcher"]

T = TypeVar("T")
log = logging.getLogger("gateway.dispatch")

END_STATES = frozenset({"rejected", "delivered", "failed", "expired"})
CIRCUIT_OPEN = "CircuitOpen"
LEASE_ENDING = "LeaseEnding"
ERASED_UNSENT = "SubjectErased"
UNREAD_UNSENT = "SubjectUnread"  # the directory's row could not be read just before the send
QUIET_UNSENT = "QuietHoursBegun"  # the user's quiet hours began after the claim, before the send
PAUSED_UNSENT = "CampaignPaused"  # the push's campaign was paused after the claim, before the send
DEVICE_UNSENT = "DeviceGone"  # removed, disabled or taken by another user after the claim
CHANGED_UNSENT = "ChoicesChanged"  # the user's consents, preferences or complaints, after the claim
_STOPPED: dict[Stop, str] = {
    "erased": ERASED_UNSENT, "paused": PAUSED_UNSENT, "device": DEVICE_UNSENT, "changed": CHANGED_UNSENT,
    "unread": UNREAD_UNSENT,
}  # fmt: skip
# Provider codes of sends never started: not an attempt, nor a delivery record.
NOT_SENT = frozenset({CIRCUIT_OPEN, LEASE_ENDING, EXPIRED_UNSENT, *_STOPPED.values(), QUIET_UNSENT})
ADAPTER_ERROR = "AdapterError"
BACKOFF_CAP_SECONDS = 15 * 60.0
_ENDING = frozenset({EXPIRED_UNSENT, ERASED_UNSENT, PAUSED_UNSENT})  # sends whose push's next claim ends it
_SETTLED = frozenset({"delivered", "failed"})  # a device's delivery states that are final
UNREADABLE_WAIT = timedelta(hours=1)  # a push whose data fails its check, until tried again


class Dispatcher:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: Settings,
        policy: PolicySource,
        metrics: Metrics,
        adapters: Mapping[str, DeliveryAdapter],
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._clock = clock
        self._settings = settings
        self._policy = policy
        self._metrics = metrics
        # Each metric's child by label values, asked of prometheus_client once: its `labels` takes
        # a lock and builds the key on every call, three times a delivered push.
        self._ends = cache(metrics.dispatch_ends.labels)
        self._decision_reasons = cache(metrics.decision_reasons.labels)
        self._attempts = cache(metrics.deliveries.labels)
        self._send_seconds = cache(metrics.delivery_seconds.labels)
        self._open_circuits = cache(metrics.open_breakers.labels)
        self._adapters = adapters
        # By provider: an adapter's name, or for one of `SeveralProviders` each service it sends
        # to, made as first met. Which adapters those are is asked once: an `isinstance` of a
        # runtime-checkable protocol costs ~7 us, 3% of a push's delivery.
        self._breakers: dict[str, CircuitBreaker] = {}
        self._several = {a.name: a for a in adapters.values() if isinstance(a, SeveralProviders)}
        # As many sends in flight per provider as its client keeps connections (adapters.py).
        self._slots = {a.name: Slots(settings.worker_concurrency) for a in adapters.values()}
        self._checks = SendChecks(store)
        self._rand = rand
        self._show_circuits()  # each provider at 0 from the start, as before any round

    async def run_once(self, owner: str, limit: int) -> int:
        """Claim up to `limit` due pushes and dispatch them; returns how many were claimed once
        their results are recorded."""
        claimed, sending = await self.start_round(owner, limit)
        if sending is not None:
            await sending.sent
            await sending.settle().recorded
        return claimed

    async def start_round(
        self, owner: str, limit: int, after: Sending | None = None
    ) -> tuple[int, Sending | None]:
        """Claim up to `limit` due pushes and start sending them; returns how many were claimed
        (those put back not counted), and the round's sends under way (`Sending`), once the claim
        is durable.

        A round costs two writer units whatever its size — claim and re-decide together, then
        settle together — and its sends run concurrently in between. The worker queues a round's
        settling (`Sending.settle`) just before it claims another round, so the writer runs both
        in one commit: one commit and one sync fewer per round. That claim and its decisions see
        the settled round's results as if each had its own commit (a campaign paused, a device
        disabled, a push ended or rescheduled, whatever its lease says).

        `after`: the round this worker is still sending (`Worker`), whose results this claim
        cannot see. The pushes claimed now that those results could change are put back unsent,
        in their place in the queue (the claim's attempt undone), for a round that sees them
        (`Holding`): so a push to a device that has just answered 410 is not sent, none overtakes
        an earlier push to its subject, and a campaign those deliveries pause stops where it
        would have.
        """
        now = self._clock()
        lease = timedelta(seconds=self._settings.worker_lease_seconds)

        claimed: list[Claim] = []

        def claim_and_prepare(
            conn: Connection,
        ) -> tuple[list[tuple[Claim, Send | None]], list[PushWrites], int]:
            claims = claimed[:] = outbox.claim(conn, owner, now, lease, limit)
            if not claims:
                return [], [], 0
            self._policy.refresh(conn)  # this process may not be the one that changed it
            try:
                snapshot: Round | None = self._snapshot(conn, claims, now)
            except Exception as exc:
                if is_corrupt(exc):  # the writer undoes the unit; see `_set_aside_damaged`
                    raise
                # One push whose data cannot be read must not hold back the round: read per push.
                log.exception("dispatch round read failed; reading each push alone")
                snapshot = None
            steps: dict[str, tuple[PushWrites, Send | None]] = {}
            written: list[PushWrites] = []
            # Read alone, a push reads the round's pushes written before it as they are (one being
            # sent is held, so counts as sent), and the rest, whose step is still to come or failed
            # (left to its lease), as waiting. Kept only then: with a snapshot it went unused, and
            # building it for each push cost a round of 256 pushes 65,536 steps.
            unwritten = dict.fromkeys(c.push_id for c in claims) if snapshot is None else {}
            held = Holding(conn, after, self._policy.settings)
            for c in claims:
                prepare = partial(self._prepare, conn, c, now, snapshot, list(unwritten), held)
                step = self._step("prepare", c.push_id, prepare)
                if step is None:
                    continue
                steps[c.push_id] = step
                if snapshot is None:  # read from the database: the next push must find this one written
                    for w in self._write(conn, owner, "prepare", [step[0]], now):
                        written.append(w)
                        del unwritten[w.push_id]
            if snapshot is not None:
                written = self._write(conn, owner, "prepare", [w for w, _ in steps.values()], now)
            done = {w.push_id for w in written}
            put_back = sum(w.put_back for w in written)
            prepared = [(c, steps[c.push_id][1] if c.push_id in done else None) for c in claims]
            return prepared, _counted(written), put_back

        try:
            prepared, counted, put_back = await self._store.data.writer.run(claim_and_prepare)
        except Exception as exc:
            if is_corrupt(exc):  # the writer has renewed the readers (`Store.after_failure`)
                await self._set_aside_damaged(owner, now + lease, claimed, now)
            raise
        self._count(counted)
        taken = len(prepared) - put_back
        sends = [(c, s) for c, s in prepared if s is not None]
        if not sends:
            self._show_circuits()
            return taken, None
        # The last moment a send may start and still end within the lease: a round's sends wait
        # for connections, and one started later could still be running when another worker
        # claims the push and sends it again. (A lease under twice a send's longest keeps half
        # of itself for sending, and is warned of at start.)
        last_start = now + lease - min(timedelta(seconds=LONGEST_SEND_SECONDS), lease / 2)
        starts = Starts(now + RECHECK_AFTER, last_start)
        sent = asyncio.gather(*(self._send_all(s, starts) for _, s in sends))
        # Only where every send ends within its lease (`last_start` keeps a send's longest inside
        # it from a lease of twice that): with a shorter one, a claim made while this round still
        # sends could take back its pushes, their leases run out, while their first sends run.
        overlaps = lease >= 2 * timedelta(seconds=LONGEST_SEND_SECONDS)
        return taken, Sending(partial(self._settling, owner, sends), sent, sends, overlaps)

    def _settling(
        self, owner: str, sends: list[tuple[Claim, Send]], results: list[list[DeliveryResult]]
    ) -> Settling:
        """The recording of a round's results, queued in the writer."""
        done = self._clock()

        def settle(pushes: Sequence[int], conn: Connection) -> list[PushWrites]:
            chosen = [(sends[i], results[i]) for i in pushes]
            held = outbox.held_among(conn, [c.push_id for (c, _), _ in chosen], owner)
            settled = (
                self._step("settle", c.push_id, partial(self._settle, c, s, r, c.push_id in held, done))
                for (c, s), r in chosen
            )
            return _counted(self._write(conn, owner, "settle", [w for w in settled if w is not None], done))

        def set_aside(pushes: Sequence[int], conn: Connection) -> list[str]:
            """Pushes whose results cannot be recorded: one a device took, with none to try again
            (the others refused it for good), is not sent again, its status left `sending`; the
            others are tried again after `UNREADABLE_WAIT` (one no device took must not stay
            `sending`, which counts against the caps)."""
            taken = [
                i
                for i in pushes
                if any(r.status == "delivered" for r in results[i])
                and all(r.status != "retry" for r in results[i])
            ]
            outbox.finish_many(conn, [sends[i][0].push_id for i in taken], owner)
            kept = set(taken)
            later = [sends[i][0].push_id for i in pushes if i not in kept]
            outbox.postpone(conn, later, done + UNREADABLE_WAIT)
            return [sends[i][0].push_id for i in taken]

        self._show_circuits()
        push_ids = [c.push_id for c, _ in sends]
        return Settling(self._store.data.writer, settle, set_aside, push_ids, self._count)

    def _count(self, written: list[PushWrites]) -> None:
        """Counted once durable: a unit the writer failed may be run again (`Settling.again`).
        A verdict's reasons join submission's: location is judged here only (`policies.decide`)."""
        for w in written:
            if w.ended is not None:
                self._ends(w.ended).inc()
            for code in w.reasons:
                self._decision_reasons(code).inc()

    def _step(self, step: str, push_id: str, work: Callable[[], T]) -> T | None:
        """One push's step, which only reads: one that fails is logged and left to its lease (it
        is claimed again later) without holding back the round."""
        try:
            return work()
        except Exception as exc:
            if is_corrupt(exc):  # the connection keeps that error: the unit cannot go on
                raise
            log.exception("dispatch step failed", extra={"step": step, "push_id": push_id})
            return None

    def _write(
        self, conn: Connection, owner: str, step: str, writes: list[PushWrites], now: datetime
    ) -> list[PushWrites]:
        """Write the round's steps together; returns those written. Should that fail (one
        push's row refused), each push is written alone, and the one that fails is left to its
        lease without undoing the rest of the round."""
        failed = _undoable(conn, partial(dispatch_writes.write, conn, owner, writes, now, self._policy))
        written = writes
        if failed is not None and len(writes) == 1:
            log.error(
                "dispatch step failed", extra={"step": step, "push_id": writes[0].push_id}, exc_info=failed
            )
            written = []
        elif failed is not None:
            log.error(
                "dispatch round write failed; writing each push alone", extra={"step": step}, exc_info=failed
            )
            written = []
            for w in writes:
                failed = _undoable(conn, partial(dispatch_writes.write, conn, owner, [w], now, self._policy))
                if failed is None:
                    written.append(w)
                else:
                    log.error(
                        "dispatch step failed", extra={"step": step, "push_id": w.push_id}, exc_info=failed
                    )
        return written

    async def _set_aside_damaged(
        self, owner: str, until: datetime, claims: list[Claim], now: datetime
    ) -> None:
        """A round met a page that fails SQLCipher's check (`is_corrupt`), and the writer undid it,
        claims included. The earliest due pushes are claimed first, so its pushes would come back
        in every round and fail it: nothing would be delivered to anyone. Each push's step is tried
        alone (`_try_alone`), in a unit of its own (the writer fails only the one that meets the
        page); those that meet it, reading or writing, are set aside for `UNREADABLE_WAIT`,
        logged, and the rest go in the next round. None is dropped: once the file is mended (a
        backup restored), they go."""
        writer = self._store.data.writer
        trials = await asyncio.gather(
            *(writer.run(partial(self._try_alone, owner, until, claim, now)) for claim in claims),
            return_exceptions=True,
        )
        damaged = [
            claim.push_id
            for claim, trial in zip(claims, trials, strict=True)
            if isinstance(trial, BaseException) and is_corrupt(trial)
        ]
        if not damaged:
            return
        await writer.run(partial(outbox.postpone, push_ids=damaged, due_at=now + UNREADABLE_WAIT))
        for push_id in damaged:
            log.error(
                "push unreadable: a page it needs fails its check; set aside, tried again later",
                extra={"push_id": push_id, "due_at": (now + UNREADABLE_WAIT).isoformat()},
            )

    def _try_alone(self, owner: str, until: datetime, claim: Claim, now: datetime, conn: Connection) -> None:
        """A round's step 1 for one push, reads and writes, then undone (`_Undone`). One that meets
        the page has the writer renew the readers before the next trial runs."""
        outbox.hold(conn, claim.push_id, owner, until)
        writes, _ = self._prepare(conn, claim, now, self._snapshot(conn, [claim], now), [])
        self._write(conn, owner, "prepare", [writes], now)
        raise _Undone

    # -- step 1: decide again, inside the writer ---------------------------------------------

    def _snapshot(self, conn: Connection, claims: list[Claim], now: datetime) -> Round:
        snapshot = Round(conn, claims)
        self._read_subjects(conn, snapshot, now)
        return snapshot

    def _read_subjects(self, conn: Connection, snapshot: Round, now: datetime) -> None:
        snapshot.read_subjects(conn, self._store, now, self._settings.timezone, self._policy.settings)

    def _prepare(
        self,
        conn: Connection,
        claim: Claim,
        now: datetime,
        snapshot: Round | None,
        claimed: list[str],
        held: Callable[[PushRow], bool] = lambda row: False,
    ) -> tuple[PushWrites, Send | None]:
        alone = snapshot is None
        snapshot = snapshot or Round(conn, [claim], claimed)
        row = snapshot.rows.get(claim.push_id)
        if row is None or row.status in END_STATES:
            return PushWrites(push_id=claim.push_id, finish=True), None
        expires = datetime.fromisoformat(row.expires_at)
        if (expired := check_expiry(expires, now)) is not None:
            return self._end(row, snapshot, "expired", [expired], claim.attempts), None
        remaining = math.ceil((expires - now).total_seconds())
        if claim.attempts >= self._settings.delivery_max_attempts:
            # Its attempts were spent by rounds that lost their lease (a worker killed or hung
            # mid-send): the dead-letter end the last refused attempt would have given it.
            return self._end(row, snapshot, "failed", None, claim.attempts), None
        if held(row):  # put back, in its place, as if not claimed (`start_round`)
            back = Reschedule(row.push_id, datetime.fromisoformat(claim.due_at), claim.attempts)
            return PushWrites(push_id=row.push_id, reschedule=back, put_back=True), None
        if alone:
            # Read alone, its subject is read only now: a push past its expiry ends `expired` even
            # when its subject's data does not open, rather than being claimed again at each lease.
            self._read_subjects(conn, snapshot, now)
        key = snapshot.key(row)
        content = None if key is None else row.open_content(key)
        if key is None or content is None:
            return self._end(row, snapshot, "rejected", [Reason(SUBJECT_ERASED)], claim.attempts), None
        # Accepted under the rule's code and settings in force, its content passed the very rule
        # that would judge it now: not scanned again.
        cleared = row.content_key is not None and row.content_key == self._policy.content_key
        state = snapshot.state_for(row, key.subject_id)
        request = policy_request(row.topic, row.campaign_id, content, remaining, content_cleared=cleared)
        decision = decide(
            request,
            state,
            snapshot.campaign(row),
            now,
            self._policy.settings,
            snapshot.unit,
        )
        late = _too_late(decision, expires)
        if late and _was_deferred(row):
            return self._end(row, snapshot, "expired", [Reason(EXPIRED)], claim.attempts), None
        if decision.outcome == "rejected" or late:
            return self._end(row, snapshot, "rejected", list(decision.reasons), claim.attempts), None
        if decision.outcome == "deferred" and decision.deliver_after is not None:
            if already_delivered(row, snapshot):
                # A device has it: it stays the push the user has (its status, its planned time in
                # their notifications and caps); only its retry to the other devices waits.
                wait = Reschedule(row.push_id, decision.deliver_after, claim.attempts)
                return PushWrites(push_id=row.push_id, reschedule=wait), None
            snapshot.replan(row, decision.deliver_after)
            # Its time and reasons are shown as a deferral at submission shows them.
            deferred = PushWrites(
                push_id=row.push_id,
                status=StatusChange(
                    push_id=row.push_id,
                    status="deferred",
                    planned_at=decision.deliver_after,
                    deliver_after=decision.deliver_after,
                    reasons=msgspec.json.encode(wire_reasons(decision.reasons)).decode(),
                    policy_version=self._policy.version.version,
                ),
                reschedule=Reschedule(row.push_id, decision.deliver_after, claim.attempts),
                reasons=tuple(r.code for r in decision.reasons),
            )
            return deferred, None
        recorded = snapshot.recorded[row.push_id]
        # A device that has it, or that refused it for good (`failed`), is not sent it again. Those
        # never tried go first: a round cut short (its lease ending, a circuit open) sends the
        # first devices only, and one retried each round would spend the push's attempts while
        # the others waited unsent.
        pending = sorted(
            (d for d in snapshot.devices[key.subject_id] if recorded.get(d.device_id) not in _SETTLED),
            key=lambda d: d.device_id in recorded,
        )
        # A deferral at dispatch left its reasons as dispatch's verdict; sending it ends that verdict.
        deferred_here = row.final_reasons is not None
        # Until a device has it, the push counts against the caps (and shows in the user's
        # notifications) when it is sent, not when it was planned: one sent a day late after an
        # outage would otherwise leave the day it arrives a push short. To the minute: moving
        # the planned time rewrites the push's entry in the subject index, 3-10% more CPU per
        # delivery (three pairs, a loaded host) were it done for every push on time too. A
        # transactional push, which no cap counts, keeps its planned time and has its `sent_at`
        # set instead, in no index: a backlog of them drained after an outage moved every one.
        sent_at = None
        if _late(row, now) and not already_delivered(row, snapshot):
            sent_at = now
        if row.planned_at is not None:
            snapshot.replan(row, sent_at or datetime.fromisoformat(row.planned_at), sending=True)
        capped = is_marketing(row.topic)
        sending = PushWrites(
            push_id=row.push_id,
            status=StatusChange(
                push_id=row.push_id,
                status="sending",
                planned_at=sent_at if capped else None,
                sent_at=None if capped else sent_at,
                clear_final_reasons=deferred_here,
            ),
        )
        return sending, Send(
            tuple(_message(row, d, content, expires) for d in pending),
            recorded,
            row.campaign_id,
            expires,
            key.subject_id,
            snapshot.unit.quiet.window(state, self._policy.settings) if capped else None,
            snapshot.order[row.push_id],
            snapshot.stamp(conn, key.subject_id) if _reads_choices(request) else None,
            {d.device_id: d.registered_at for d in pending},
        )

    def _end(
        self,
        row: PushRow,
        snapshot: Round,
        status: str,
        reasons: list[Reason] | None,
        attempts: int,
    ) -> PushWrites:
        """End the push with step 1's verdict, unless a device already has it: then the user has
        received it, so it ends `delivered` (the verdict's reasons kept, nothing more sent) and
        still counts against the caps at its planned time, as the snapshot goes on counting it.
        No `reasons` for a dead letter: like one that ends after the provider's last refusal.
        `attempts` are the claim's, so a round lost mid-send (its worker killed before the
        answers were written) stays counted: its sends may have reached the user, and a push
        ending `rejected` or `expired` with no attempt would read as one never sent."""
        reached = already_delivered(row, snapshot)
        status = "delivered" if reached else status
        if not reached:
            snapshot.replan(row, None)
        change = StatusChange(
            push_id=row.push_id,
            status=status,
            reasons=None if reasons is None else msgspec.json.encode(wire_reasons(reasons)).decode(),
            # the version step 1 judged by
            policy_version=None if reasons is None else self._policy.version.version,
            attempts=attempts,
        )
        # A campaign's delivered push is counted as step 3 counts it at delivery.
        counted = row.campaign_id if reached else None
        return PushWrites(
            push_id=row.push_id,
            status=change,
            finish=True,
            campaign_delivered=counted,
            ended=status,
            reasons=tuple(r.code for r in reasons or ()),
        )

    # -- step 2: send ------------------------------------------------------------------------

    def _send_all(self, send: Send, starts: Starts) -> asyncio.Future[list[DeliveryResult]]:
        """A push's sends, one per device, their tasks made now: a round's sends start, and take
        the provider's slots, in the order its pushes were claimed (earliest due first). Most
        pushes have one device, sent without a gather of its own (a gathering future less)."""
        if len(send.messages) == 1:
            return asyncio.ensure_future(self._send_one(send.messages[0], send, starts))
        return asyncio.gather(*(self._send(m, send, starts) for m in send.messages))

    async def _send_one(self, message: DeliveryMessage, send: Send, starts: Starts) -> list[DeliveryResult]:
        return [await self._send(message, send, starts)]

    async def _send(self, message: DeliveryMessage, send: Send, starts: Starts) -> DeliveryResult:
        """One send, asked of the breaker only once a connection is free for it: a round holds
        up to ten sends per push, and asked at the round's start, every send queued behind the
        first failing wave would still go to a provider known to be down, a timeout each. Nor
        started past `starts.last`: not sent, it waits for the push's next claim. Nor once the
        push has expired, which it may have while the send waited for a connection: the round's
        claim checked its expiry, but a round's sends may wait most of a lease. Nor once its
        user is erased: a round's later sends start seconds after its claim decided them, and
        an erasure answered meanwhile (in any process) must stop them, not see the user's token
        and content sent after it (`SendChecks`); the push's next claim ends it erased. Nor once
        its campaign is paused, by an operator or the complaint-rate rule: its next claim ends
        it `campaign_paused`. Nor once its device was removed, disabled or registered by another
        user, nor once the user's consents, preferences or complaints changed, if its decision
        read them, when it starts more than `RECHECK_AFTER` after its claim: its next claim
        decides again. Nor, for a marketing push, once the user's
        quiet hours have begun: claimed at 20:59:50, a send could start at 21:00:30; its next
        claim defers it."""
        adapter = self._adapters[message.platform]
        async with self._slots[adapter.name]:
            now = self._clock()
            if now > starts.last:
                return DeliveryResult(status="retry", provider_code=LEASE_ENDING)
            if now >= message.expires_at:
                return DeliveryResult(status="retry", provider_code=EXPIRED_UNSENT)
            if send.quiet is not None and send.quiet.contains(now):
                return DeliveryResult(status="retry", provider_code=QUIET_UNSENT)
            campaign = None if send.campaign_id is None else (send.campaign_id, send.rowid)
            # Within a second of the claim its decision is that fresh: its device and the user's
            # choices are asked about again only after (a read per wave of sends was 7% of the
            # served worker's CPU in run BJ, its sends waiting milliseconds for a connection).
            device = None if now < starts.fresh else (message.device_id, send.registered[message.device_id])
            seen = None if now < starts.fresh else send.seen
            stop = await self._checks.ask(Asked(send.subject_id, device, campaign, seen))
            if stop is not None:
                return DeliveryResult(status="retry", provider_code=_STOPPED[stop])
            return await self._send_now(adapter, message)

    async def _send_now(self, adapter: DeliveryAdapter, message: DeliveryMessage) -> DeliveryResult:
        circuit = self._circuit(adapter, message)
        breaker = self._breaker(circuit)
        if not breaker.allow(self._clock().timestamp()):
            return DeliveryResult(status="retry", provider_code=CIRCUIT_OPEN)
        started = time.perf_counter()  # a duration: not thrown by the wall clock's steps
        try:
            result = await adapter.send(message)
        except Exception as exc:
            # An adapter broke its contract (it must answer with a result). Raised into the
            # round's gather it would leave every push of the round `sending` and unrecorded, to be
            # sent again at each lease expiry; as a retry it costs one attempt of this push only.
            # Logged by push, adapter and exception type, without the exception: its text or its
            # traceback may hold the token or the content.
            log.error(
                "delivery adapter raised",
                extra={"push_id": message.push_id, "adapter": adapter.name, "exc_type": type(exc).__name__},
            )
            result = DeliveryResult(status="retry", provider_code=ADAPTER_ERROR)
        was = breaker.state
        if result.asked_provider:
            breaker.record(not is_provider_failure(result), self._clock().timestamp(), result.retry_after)
        else:  # nothing learnt of the provider: not a probe's answer, nor a success that closes it
            breaker.release()
        # An outage and its end, said once each: not a failed probe (half open to open again).
        named = {"adapter": adapter.name, "circuit": circuit}
        if (was, breaker.state) == ("closed", "open"):
            log.warning("provider circuit opened: pushes to it wait", extra=named)
        elif (was, breaker.state) == ("half_open", "closed"):
            log.info("provider circuit closed: delivering again", extra=named)
        self._attempts(adapter.name, result.status).inc()
        self._send_seconds(adapter.name).observe(time.perf_counter() - started)
        if was == "half_open" and breaker.state == "open":
            # A probe the provider failed: the outage goes on, and the push waits as those the open
            # circuit held back do, spending no attempt. Counted, one probe each cool-down ended a
            # small backlog `failed` within minutes of an outage, with hours of TTL left.
            return DeliveryResult(status="retry", provider_code=CIRCUIT_OPEN)
        return result

    def _circuit(self, adapter: DeliveryAdapter, message: DeliveryMessage) -> str:
        """The circuit breaker a send is judged by: its provider's."""
        several = self._several.get(adapter.name)
        return adapter.name if several is None else several.breaker_key(message)

    def _show_circuits(self) -> None:
        """Open circuits by provider, each provider shown, 0 while its circuits are closed: which
        provider is down is what an operator paged by this gauge asks first."""
        shown = dict.fromkeys((adapter.name for adapter in self._adapters.values()), 0)
        for circuit, breaker in self._breakers.items():
            provider = circuit.split(" ", 1)[0]  # `SeveralProviders.breaker_key`: the name first
            if breaker.state != "closed" and provider in shown:  # a label only ever a provider's name
                shown[provider] += 1
        for provider, count in shown.items():
            self._open_circuits(provider).set(count)

    def _breaker(self, circuit: str) -> CircuitBreaker:
        breaker = self._breakers.get(circuit)
        if breaker is None:
            settings = self._settings
            breaker = self._breakers[circuit] = CircuitBreaker(
                settings.delivery_breaker_threshold, settings.delivery_breaker_cooldown_seconds
            )
        return breaker

    # -- step 3: record ----------------------------------------------------------------------

    def _settle(
        self, claim: Claim, send: Send, results: list[DeliveryResult], held: bool, now: datetime
    ) -> PushWrites:
        """What one push's results write: their records, and the push ended or rescheduled."""
        retry_after, reopen = 0.0, 0.0
        attempted = False
        states = dict(send.recorded)
        delivered: list[DeliveryRecord] = []
        disable: list[str] = []
        for message, result in zip(send.messages, results, strict=True):
            sender = self._adapters[message.platform]
            adapter = sender.name
            if result.provider_code == CIRCUIT_OPEN:
                # Not sent: the provider's circuit is open. Not an attempt; come back when it may close.
                reopen = max(
                    reopen, self._breaker(self._circuit(sender, message)).reopens_in(now.timestamp())
                )
                continue
            if result.provider_code in NOT_SENT:
                continue  # not sent, not an attempt: the next claim sends it, or ends it `expired` or erased
            attempted = True
            delivered.append(
                DeliveryRecord(
                    message.push_id, message.device_id, adapter, result.status, result.provider_code
                )
            )
            states[message.device_id] = result.status
            if result.status == "invalid_token":
                disable.append(message.device_id)
            retry_after = max(retry_after, result.retry_after or 0.0)
        writes = PushWrites(push_id=claim.push_id, delivered=tuple(delivered), disable=tuple(disable))
        if not held:
            return (
                writes  # the lease expired mid-send: the facts are recorded, the push is another worker's now
            )
        attempts = claim.attempts + int(attempted)
        skipped = any(r.provider_code in NOT_SENT for r in results)
        # Waiting on this round's devices only: a device removed or disabled since its last
        # `retry` is no longer sent to, and its old record must not keep the push waiting.
        waiting = skipped or any(states[m.device_id] == "retry" for m in send.messages)
        # Expired, erased or its campaign paused before a send could start: due at once (at its
        # expiry), its next claim ends it `expired`, erased or `campaign_paused`, or `delivered`
        # if a device has it, even when its attempts are spent.
        ending = any(r.provider_code in _ENDING for r in results)
        if waiting and (attempts < self._settings.delivery_max_attempts or ending):
            left = (send.expires - now).total_seconds()
            delay = (
                backoff_delay(
                    attempts, self._settings.delivery_backoff_seconds, BACKOFF_CAP_SECONDS, self._rand,
                    retry_after or None, left,
                )
                if attempted
                else max(reopen, 0.0) + self._rand()
            )  # fmt: skip
            writes.status = StatusChange(push_id=claim.push_id, status="sending", attempts=attempts)
            # Never past the push's expiry (a provider may ask for any Retry-After): due then, it
            # ends `expired` at its next claim instead of waiting in `sending`.
            due = now + timedelta(seconds=delay) if delay < left else send.expires
            writes.reschedule = Reschedule(claim.push_id, due, attempts)
            return writes
        reached = any(s == "delivered" for s in states.values())
        status = "delivered" if reached else "failed"
        refused = not reached and not states  # no device to send it to
        reasons = msgspec.json.encode(wire_reasons([Reason(NO_DEVICE)])).decode() if refused else None
        version = None if reasons is None else self._policy.version.version
        writes.status = StatusChange(
            push_id=claim.push_id, status=status, attempts=attempts, reasons=reasons, policy_version=version
        )
        writes.finish = True
        writes.ended = status
        writes.reasons = (NO_DEVICE,) if refused else ()
        # Counted in the unit that makes the push `delivered`, and judged at each delivery.
        writes.campaign_delivered = send.campaign_id if reached else None
        return writes


class _Undone(Exception):
    """Raised by a unit to have the writer undo it: it was a trial (`Dispatcher._try_alone`)."""


def _counted(written: list[PushWrites]) -> list[PushWrites]:
    return [w for w in written if w.ended is not None or w.reasons]


def _undoable(conn: Connection, work: Callable[[], object]) -> Exception | None:
    """Run `work` in a savepoint; if it raises, undo its writes alone and return the error. An
    error that took the whole transaction with it is re-raised (`savepoint`), and so is a
    damaged page's, which the writer must see to fail this unit and not the next."""
    try:
        with savepoint(conn, "dispatch"):
            work()
    except Exception as exc:
        if not conn.in_transaction or is_corrupt(exc):  # the connection keeps a damaged page's error
            raise
        return exc
    return None


RECHECK_AFTER = timedelta(seconds=1)
"""How long after its round's claim a send starts on the device and choices its decision read:
asked about them again past that (`SendChecks`), as a send waiting for a slow provider is."""


class Starts(NamedTuple):
    """When a round's sends start as decided (`fresh`), and the last moment any may start."""

    fresh: datetime
    last: datetime


def _reads_choices(request: PushRequest) -> bool:
    """Whether the push's decision read its subject's consents, preferences or mutes (a marketing
    push's, a personalized or `near` one's), which its sends then ask about again."""
    needs = PushNeeds(request.topic, request.personalized, request.near_geohash is not None)
    return bool(state_parts_for([needs]) & _CHOICES)


_CHOICES = StateParts.CONSENTS | StateParts.PREFERENCES | StateParts.MUTES


def _late(row: PushRow, now: datetime) -> bool:
    """Sent more than a minute after the time it is counted at."""
    return row.planned_at is not None and now - datetime.fromisoformat(row.planned_at) > SEND_LAG


def _too_late(decision: Decision, expires: datetime) -> bool:
    """Only timing stands in the way: rejected for quiet hours alone (their end is not before
    the expiry), or deferred to or past the expiry."""
    if decision.outcome == "rejected":
        return all(r.code == QUIET_HOURS for r in decision.reasons)
    return decision.deliver_after is not None and decision.deliver_after >= expires


def _was_deferred(row: PushRow) -> bool:
    """Deferred at submission or by an earlier round: only a deferral sets `deliver_after` (a
    planned time later than the creation may be a late send's, `_late`)."""
    return row.status == "deferred" or row.outcome == "deferred" or row.deliver_after is not None


def _message(row: PushRow, device: DeviceRow, content: PushContent, expires: datetime) -> DeliveryMessage:
    return DeliveryMessage(
        push_id=row.push_id,
        device_id=device.device_id,
        platform=device.platform,  # type: ignore[arg-type]
        token=device.token,
        topic=row.topic,
        title=content.title,
        body=content.body,
        data=content.data,
        campaign_id=row.campaign_id,
        variant=row.variant,
        expires_at=expires,
    )
