"""The data subject's rights: access and portability (export) and erasure.

The export is everything held about the subject, decrypted: besides preferences, consents,
devices and location, their complaints, every push recorded for them with its content and its
delivery to each of their devices, the mutes their complaints set and their engagement events.
Each part is read and decrypted by the same functions as the `/v1/me/...` route that shows it,
but in full where that route is bounded.

Erasure is crypto-shredding: the subject directory row — internal id mapping and wrapped
data key — is deleted in one transaction and a tombstone left, then the subject's rows are
deleted from the data file and both WALs are truncated. The ledger keeps its events (sealed
under the destroyed key, hence unreadable, and keyed by an internal id nothing links to any
more) and still verifies, because its chain covers ciphertexts.

The key's destruction is durable before anything else happens, so crypto-shredding never waits
on the data file. What follows is another file's transactions (a slice of pushes each, then the
subject's rows and the ledger event), so a crash can come between: the tombstone then still
holds the subject id (`PendingErasure`), and the cleanup is finished by the user's retried
`DELETE /v1/me` (in slices again) or at the next start (`finish_pending_erasures`, in one
transaction: nothing else is served yet). The cleanup may
run again after it committed (a crash before the tombstone forgets the id): its deletions find
nothing, and it records `subject.erased` only if the ledger has no such event for that id yet.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

import msgspec

from gateway.clock import Clock, rfc3339, rfc3339_text, rfc3339_text_or_none
from gateway.schemas.me import (
    ConsentAnswer,
    ExportDelivery,
    ExportDevice,
    ExportEvent,
    ExportHistoryEvent,
    ExportMute,
    ExportNotification,
    ExportRead,
    LocationRead,
)
from gateway.schemas.pushes import WireReason
from gateway.services.complaints import complaint_read
from gateway.services.preferences import PreferenceCenter, consent_event, stored_answer
from storage import ledger
from storage.connections import Connection
from storage.directory import PendingErasure, SubjectKey
from storage.failures import is_corrupt
from storage.repositories import complaints, consents, deliveries, devices, locations, preferences, pushes
from storage.repositories import erasure as erasure_repo
from storage.repositories.pushes import PushRow
from storage.store import Store

__all__ = ["RightsService", "erase_subject_data"]

log = logging.getLogger("gateway.rights")

ERASE_SLICE = 1_000
"""Pushes an erasure forgets in one writer unit: tens of milliseconds of the loop each."""


class RightsService:
    def __init__(self, store: Store, clock: Clock, preferences_center: PreferenceCenter) -> None:
        self._store = store
        self._clock = clock
        self._center = preferences_center

    async def export(self, subject_ref: str) -> ExportRead:
        """Off the event loop: a user with years of pushes and consent changes exports tens of
        megabytes, seconds of reads and decryption that held every other request back."""
        return await asyncio.to_thread(self._export, subject_ref)

    def _export(self, subject_ref: str) -> ExportRead:
        now = self._clock()
        key = self._store.directory.resolve(subject_ref)
        if key is None:
            return ExportRead(
                subject_ref=subject_ref, exported_at=rfc3339(now), held=False,
                preferences=self._center.read(subject_ref), consent_history=[], receipts=[],
                devices=[], location=None, complaints=[], notifications=[], mutes=[], events=[],
                history=[],
            )  # fmt: skip
        # One snapshot: its reads agree with each other (the current consents with their history,
        # a push with its deliveries), whatever is written while they are made.
        with self._store.data.snapshot() as conn:
            sid = key.subject_id
            history = list(ledger.events_of_subject(conn, sid))
            place = locations.get(conn, key)
            mutes = complaints.mutes_for_subject(conn, sid)
            return ExportRead(
                subject_ref=subject_ref,
                exported_at=rfc3339(now),
                held=True,
                preferences=self._center.view(
                    subject_ref, preferences.load(conn, key), consents.current(conn, key.subject_id), mutes
                ),
                consent_history=[consent_event(e, key) for e in history if e.kind.startswith("consent.")],
                receipts=_receipts(history, key),
                devices=[
                    ExportDevice(
                        device_id=d.device_id,
                        platform=d.platform,
                        token=d.token,
                        status=d.status,
                        created_at=rfc3339_text(d.created_at),
                        disabled_at=rfc3339_text_or_none(d.disabled_at),
                        registered_at=rfc3339_text_or_none(d.registered_at),
                    )
                    for d in devices.list_for(conn, key)
                ],
                location=None
                if place is None
                else LocationRead(place[0], len(place[0]), rfc3339_text(place[1])),
                # `GET /v1/me/complaints`'s own mapping: one for both, not a copy.
                complaints=[complaint_read(row, key) for row in complaints.list_for_subject(conn, sid)],
                notifications=_notifications(conn, key),
                mutes=[ExportMute(m.topic, rfc3339_text(m.until), m.source) for m in mutes],
                events=[
                    ExportEvent(e.push_id, e.type, rfc3339_text(e.at))
                    for e in complaints.events_for_subject(conn, sid)
                ],
                history=[_history_event(e, key) for e in history if not e.kind.startswith("consent.")],
            )

    async def erase(self, subject_ref: str, actor: str) -> None:
        directory = self._store.directory
        # This user's last erasure, if a crash or a failed write cut it short: this is its retry.
        # Finished first also because the tombstone holds one pending cleanup, and the user may
        # have come back since, to be erased again below.
        cut_short = directory.pending_erasure(subject_ref)
        if cut_short is not None:
            try:
                await self._finish(cut_short)
            except Exception as exc:
                if not is_corrupt(exc) or directory.resolve(subject_ref) is None:
                    raise  # one that passes (a held lock) is retried; or there is nothing else to erase
                # They came back since, and their new data key must not outlive this request for an
                # old cleanup that cannot be done (its rows on a damaged page): the tombstone's one
                # pending cleanup becomes the new one, the old one is given up (its key went then).
                log.error(
                    "an earlier erasure's cleanup could not be finished; given up to erase the one since",
                    extra={"exc_type": type(exc).__name__},
                )
        if directory.resolve(subject_ref) is None:
            return
        now = self._clock()
        # Off the loop, as the other steps below: each ends with a WAL truncation that a reader
        # in progress may hold back, retried for up to ~0.3 s (`Database.checkpoint`).
        subject_id = await asyncio.to_thread(directory.erase, subject_ref, now, actor)
        if subject_id is not None:
            await self._finish(PendingErasure(subject_ref, subject_id, now, actor))

    def finish_pending_erasures(self) -> int:
        """At start: finish the erasures a crash cut short after their key was destroyed; returns
        how many. One read of an index that is empty unless something is pending. One whose rows
        sit on a damaged page stays pending and is logged: it kept the gateway from starting at
        all, every start, while the rest of the file served."""
        finished = 0
        for erasure in self._store.directory.pending_erasures():
            try:
                self._store.data.writer.run_sync(partial(erase_subject_data, erasure=erasure))
            except Exception as exc:
                if not is_corrupt(exc):
                    raise  # one that passes (a held lock, a full disk): the next start finishes it
                log.error(
                    "an erasure cut short could not be finished; it stays pending",
                    extra={"exc_type": type(exc).__name__},
                )
                continue
            self._store.directory.erasure_done(erasure)
            finished += 1
        if finished:
            self._store.data.checkpoint()
        return finished

    async def _finish(self, erasure: PendingErasure) -> None:
        """The data file's half a slice of pushes a unit (`ERASE_SLICE`), the loop free between
        them: in one unit, on the loop as the writer's SQL is, a user with 20,000 pushes held
        every other request for 0.7-1.3 s. A crash or failure between slices leaves the erasure
        pending (its key already gone), for the user's retry or the next start to finish."""
        writer = self._store.data.writer
        pushes = erasure_repo.subject_pushes(self._store.data.reader(), erasure.subject_id)
        for start in range(0, len(pushes), ERASE_SLICE):
            await writer.run(partial(erasure_repo.forget_pushes, rowids=pushes[start : start + ERASE_SLICE]))
        await writer.run(partial(erase_subject_data, erasure=erasure, forgotten=frozenset(pushes)))
        # Durable now (`run` answers after the fsync): the tombstone may forget the subject id.
        await asyncio.to_thread(self._store.directory.erasure_done, erasure)
        await asyncio.to_thread(self._store.data.checkpoint)


def erase_subject_data(
    conn: Connection, erasure: PendingErasure, forgotten: frozenset[int] = frozenset()
) -> bool:
    """The data file's half of an erasure, or its last unit: the subject's rows go, what their
    pushes tell of them is forgotten (but for the pushes `forgotten` already), and the ledger
    records `subject.erased` unless it already has (this half may run again after a crash).
    Returns whether it recorded the event. Each statement's why is in `storage.repositories.erasure`."""
    sid = erasure.subject_id
    erasure_repo.delete_subject_rows(conn, sid)
    erasure_repo.forget_pushes(
        conn, [p for p in erasure_repo.subject_pushes(conn, sid) if p not in forgotten]
    )
    if ledger.erasure_recorded(conn, sid):
        return False
    ledger.append(
        conn,
        at=erasure.erased_at,
        subject=SubjectKey.shredded(erasure.subject_ref, sid),
        kind="subject.erased",
        actor=erasure.actor,
        source="preference_center",
    )
    return True


def _history_event(event: ledger.LedgerEvent, key: SubjectKey) -> ExportHistoryEvent:
    content = event.open_body(key)
    return ExportHistoryEvent(
        seq=event.seq,
        at=rfc3339_text(event.at),
        kind=event.kind,
        source=event.source,
        detail=None if content is None else msgspec.json.decode(content, type=dict[str, Any]),
    )


def _notifications(conn: Connection, key: SubjectKey) -> list[ExportNotification]:
    """Every push recorded for the subject, each with its deliveries: two reads, not one a push."""
    sid = key.subject_id
    sent = _deliveries_for_subject(conn, sid)
    return [_notification(row, key, sent.get(row.push_id, [])) for row in pushes.all_for_subject(conn, sid)]


def _deliveries_for_subject(conn: Connection, subject_id: str) -> dict[str, list[ExportDelivery]]:
    """push id → the per-device delivery records of the subject's pushes (`deliveries.all_for_subject`:
    the subject's pushes alone, never another user's)."""
    found: dict[str, list[ExportDelivery]] = {}
    for d in deliveries.all_for_subject(conn, subject_id):
        found.setdefault(d.push_id, []).append(
            ExportDelivery(
                device_id=d.device_id,
                adapter=d.adapter,
                status=d.status,
                attempts=d.attempts,
                last_code=d.last_code,
                updated_at=rfc3339_text(d.updated_at),
            )
        )
    return found


def _notification(row: PushRow, key: SubjectKey, deliveries: list[ExportDelivery]) -> ExportNotification:
    """A push as `GET /v1/me/notifications` shows it (same decryption, same `at` and `why`),
    with what that list leaves out: the data, the variant, the decision's reasons and what
    became of it on each device."""
    content = row.open_content(key)
    return ExportNotification(
        push_id=row.push_id,
        status=row.status,
        topic=row.topic,
        campaign_id=row.campaign_id,
        variant=row.variant,
        title=None if content is None else content.title,
        body=None if content is None else content.body,
        data=None if content is None else content.data,
        created_at=rfc3339_text(row.created_at),
        at=rfc3339_text(row.shown_at),
        why=row.why(content),
        reasons=msgspec.json.decode(row.final_reasons or row.reasons, type=list[WireReason]),
        outcome=row.outcome,
        submitted_reasons=msgspec.json.decode(row.reasons, type=list[WireReason]),
        deliver_after=rfc3339_text_or_none(row.deliver_after),
        expires_at=rfc3339_text(row.expires_at),
        attempts=row.attempts,
        personalized=None if content is None else content.personalized,
        near_geohash=None if content is None else content.near_geohash,
        deliveries=deliveries,
    )


def _receipts(history: list[ledger.LedgerEvent], key: SubjectKey) -> list[ConsentAnswer]:
    return [
        stored_answer(content)
        for e in history
        if e.kind.startswith("consent.") and (content := e.open_body(key))
    ]
