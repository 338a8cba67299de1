"""Preferences and consent: what a user chose, with a signed receipt for every consent change.

Reads never create anything: a user seen for the first time gets the spec's defaults without
a row being written. Every change runs as one unit in the data writer — read, apply, write,
append the ledger event — so concurrent changes serialize and each leaves exactly one event.

A consent event's content is its receipt in `SignedParts` form (the signed receipt bytes once,
plus the JWS's header and signature segments); `stored_answer` is the one way to read it back.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import cast

import msgspec

from gateway.clock import Clock, rfc3339, rfc3339_text
from gateway.errors import InvalidInput
from gateway.schemas.me import (
    ConsentAnswer,
    ConsentEvent,
    ConsentReceipt,
    ConsentState,
    ConsentUpdate,
    Frequency,
    PreferencesRead,
    PreferencesUpdate,
    QuietHours,
)
from gateway.schemas.me import Controller as ReceiptController
from gateway.schemas.me import PurposeRef as ReceiptPurpose
from gateway.services.policy import PolicySource
from gateway.settings import Settings
from gateway.signing import SignedParts, Signer
from policies.catalog import PURPOSES, TOPIC_PURPOSES, TOPICS, Topic
from policies.quiet_hours import window_in_force
from policies.settings import PolicySettings, quiet_window_minutes
from storage import ledger
from storage.connections import Connection
from storage.directory import SubjectKey
from storage.repositories import complaints, consents, locations, preferences, pushes
from storage.repositories.complaints import Mute
from storage.repositories.consents import ConsentRow
from storage.repositories.preferences import PreferenceDoc
from storage.store import Store

__all__ = ["PURPOSE_DPV", "PreferenceCenter", "consent_event", "stored_answer"]

PURPOSE_DPV: dict[str, tuple[str, str]] = {
    "marketing": ("dpv:DirectMarketing", "promotional pushes: offers, sales, tips, surveys"),
    "personalization": (
        "dpv:PersonalisedAdvertising",
        "using behaviour or purchase history to tailor pushes",
    ),
    "location": ("dpv:ServicePersonalisation", "using the device's coarse location for nearby offers"),
}


class PreferenceCenter:
    def __init__(
        self, store: Store, clock: Clock, signer: Signer, settings: Settings, policy: PolicySource
    ) -> None:
        self._store = store
        self._clock = clock
        self._signer = signer
        self._settings = settings
        self._policy = policy

    # -- reading -----------------------------------------------------------------------------

    def read(self, subject_ref: str) -> PreferencesRead:
        key = self._store.directory.resolve(subject_ref)
        if key is None:
            return self.view(subject_ref, PreferenceDoc(), {}, [])
        conn = self._store.data.reader()
        return self.view(
            subject_ref,
            preferences.load(conn, key),
            consents.current(conn, key.subject_id),
            complaints.mutes_for_subject(conn, key.subject_id),
        )

    def view(
        self, subject_ref: str, doc: PreferenceDoc, granted: dict[str, ConsentRow], mutes: list[Mute]
    ) -> PreferencesRead:
        policy = self._newest_policy()
        now = self._clock()
        on = {p for p, row in granted.items() if row.granted}
        return PreferencesRead(
            subject_ref=subject_ref,
            timezone=doc.timezone or self._settings.timezone,
            locale=doc.locale,  # type: ignore[arg-type]
            consents={
                p: ConsentState(row.granted, rfc3339_text(row.updated_at), row.notice_version)
                if (row := granted.get(p))
                else ConsentState(False, None, None)
                for p in PURPOSES
            },
            topics={t: TOPIC_PURPOSES[t] <= on and doc.topics.get(t, True) for t in TOPICS},
            # The window pushes are held to, as `frequency` is the cap that applies.
            quiet_hours=QuietHours(
                *window_in_force(
                    doc.quiet_start or policy.quiet_start, doc.quiet_end or policy.quiet_end, policy
                )
            ),
            frequency=Frequency(
                min(
                    doc.max_per_week if doc.max_per_week is not None else policy.max_per_week,
                    policy.max_per_week,
                )
            ),
            paused_until={
                cast(Topic, m.topic): rfc3339_text(m.until)
                for m in mutes
                if datetime.fromisoformat(m.until) > now
            },
        )

    async def history(self, subject_ref: str) -> list[ConsentEvent]:
        """Off the event loop, as the export: a history grows with every change (600 an hour are
        allowed) and each event is decrypted, and 6,000 of them held every other request for
        180 ms. The thread reads through its own connection (`Database.reader`)."""
        return await asyncio.to_thread(self._history, subject_ref)

    def _history(self, subject_ref: str) -> list[ConsentEvent]:
        key = self._store.directory.resolve(subject_ref)
        if key is None:
            return []
        return [
            consent_event(event, key)
            for event in ledger.consent_events_of_subject(self._store.data.reader(), key.subject_id)
        ]

    # -- changing ----------------------------------------------------------------------------

    async def update(self, subject_ref: str, patch: PreferencesUpdate, actor: str) -> PreferencesRead:
        self._check_against_policy(patch)
        if patch == PreferencesUpdate():
            return self.read(subject_ref)  # nothing asked, nothing changed, nothing recorded
        changes = msgspec.json.encode(patch)

        def unit(conn: Connection, key: SubjectKey) -> PreferencesRead:
            now = self._clock()  # in the unit: events' times follow their order in the ledger
            before = preferences.load(conn, key)
            doc = apply_patch(before, patch)
            # A settings screen may send back every choice unchanged: the ledger keeps changes.
            if doc != before:
                preferences.save(conn, key, doc, now)
                ledger.append(
                    conn, at=now, subject=key, kind="preferences.changed", actor=actor,
                    source="preference_center", content=changes,
                )  # fmt: skip
            granted = consents.current(conn, key.subject_id)
            return self.view(subject_ref, doc, granted, complaints.mutes_for_subject(conn, key.subject_id))

        return await self._store.write_as(subject_ref, self._clock(), unit)

    async def set_consent(
        self, subject_ref: str, purpose: str, body: ConsentUpdate, *, actor: str, source: str
    ) -> ConsentAnswer:
        # The time is read in the unit, so receipts' and events' times follow the ledger's order:
        # read before, concurrent first changes of a new subject (each making it on its own
        # thread) could be written in another order than their times.
        return await self._store.write_as(
            subject_ref,
            self._clock(),
            lambda conn, key: self.record_consent(
                conn,
                key,
                purpose,
                body.granted,
                body.notice_version,
                actor=actor,
                source=source,
                now=self._clock(),
            ),
        )

    def record_consent(
        self,
        conn: Connection,
        key: SubjectKey,
        purpose: str,
        granted: bool,
        notice_version: str,
        *,
        actor: str,
        source: str,
        now: datetime,
    ) -> ConsentAnswer:
        """Change one consent inside the caller's writer unit: state, receipt and ledger event
        together. Also used when a complaint withdraws consent, with the complaint as source and
        the notice version stored: checked when it was given, not again against a PII gate made
        stricter since (which answered the complaint 500 and left the consent given)."""
        dpv, description = PURPOSE_DPV[purpose]
        last_seq, prev_hash = ledger.head(conn)
        receipt = ConsentReceipt(
            receipt_id=str(uuid.uuid4()),
            timestamp=rfc3339(now),
            jurisdiction=self._settings.jurisdiction,
            collection_method=source,
            subject_ref=key.subject_ref,
            controller=ReceiptController(self._settings.controller),
            purpose=ReceiptPurpose(purpose, dpv, description),  # type: ignore[arg-type]
            notice_version=notice_version,
            granted=granted,
            state="given" if granted else "withdrawn",
            ledger_seq=last_seq + 1,
            ledger_prev_hash=prev_hash[: ledger.WITNESS_BYTES].hex(),
        )
        signed = self._signer.sign_parts(receipt)
        answer = ConsentAnswer(receipt, signed.compact())
        consents.put(conn, key.subject_id, purpose, granted, notice_version, now)
        if purpose == "location" and not granted:
            locations.delete(conn, key.subject_id)
        if purpose == "marketing" and not granted:
            pushes.mark_opted_out(conn, key.subject_id)
        ledger.append(
            conn, at=now, subject=key, kind=f"consent.{receipt.state}", actor=actor, source=source,
            purpose=purpose, notice_version=notice_version, content=msgspec.json.encode(signed),
        )  # fmt: skip
        return answer

    def _newest_policy(self) -> PolicySettings:
        """The policy in force now: another process may have changed it (`PUT /v1/admin/policy`
        served by another `serve`), and this one may take no push that would have caught it up.
        Read, not caught up (`PolicySource.newest`): the export calls this from a thread."""
        return self._policy.newest(self._store.data.reader())

    def _check_against_policy(self, patch: PreferencesUpdate) -> None:
        policy = self._newest_policy()
        if isinstance(patch.frequency, Frequency) and patch.frequency.max_per_week > policy.max_per_week:
            raise InvalidInput(
                f"max_per_week may not exceed the system cap of {policy.max_per_week}",
                "frequency.max_per_week",
            )
        if isinstance(patch.quiet_hours, QuietHours) and policy.min_quiet_minutes:
            length = quiet_window_minutes(patch.quiet_hours.start, patch.quiet_hours.end)
            if length < policy.min_quiet_minutes:
                raise InvalidInput(
                    f"quiet hours must last at least {policy.min_quiet_minutes} minutes", "quiet_hours"
                )


def apply_patch(doc: PreferenceDoc, patch: PreferencesUpdate) -> PreferenceDoc:
    changes: dict[str, object] = {}
    if isinstance(patch.timezone, str):
        changes["timezone"] = patch.timezone
    if isinstance(patch.locale, str):
        changes["locale"] = patch.locale
    if isinstance(patch.topics, dict):
        topics: dict[str, bool] = dict(doc.topics)
        topics.update(patch.topics.items())
        changes["topics"] = topics
    if isinstance(patch.quiet_hours, QuietHours):
        changes["quiet_start"] = patch.quiet_hours.start
        changes["quiet_end"] = patch.quiet_hours.end
    if isinstance(patch.frequency, Frequency):
        changes["max_per_week"] = patch.frequency.max_per_week
    return msgspec.structs.replace(doc, **changes)


def stored_answer(content: bytes) -> ConsentAnswer:
    """A consent event's content as the answer its `PUT` gave: the receipt, decoded from the
    bytes that were signed, and the same compact JWS, rebuilt from its stored parts."""
    signed = msgspec.json.decode(content, type=SignedParts)
    return ConsentAnswer(msgspec.json.decode(signed.document, type=ConsentReceipt), signed.compact())


def consent_event(event: ledger.LedgerEvent, key: SubjectKey) -> ConsentEvent:
    content = event.open_body(key)
    answer = stored_answer(content) if content else None
    return ConsentEvent(
        seq=event.seq,
        at=rfc3339_text(event.at),
        kind=event.kind,
        purpose=event.purpose,
        granted=None if answer is None else answer.receipt.state == "given",
        notice_version=event.notice_version,
        source=event.source,
        receipt_id=None if answer is None else answer.receipt.receipt_id,
    )
