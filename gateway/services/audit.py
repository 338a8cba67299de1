"""The Audit API's reads: consent events, one subject's consent state at any moment, the
decision log, complaints, and the access log that records every one of these reads.

Auditors see subject_refs, never user_ids: a `user_id` filter is pseudonymized on the way in
and only its subject_ref is ever logged. Sealed fields (event bodies, push content, complaint
text) are never opened — what a consent event means is in its kind, purpose and notice
version, which the ledger keeps in clear. The ledger's integrity side (verification,
checkpoints, proofs, exports) is `AuditLedger`, reachable as `AuditService.ledger`.

Each read runs in one of two threads of their own (`_off_the_loop`), through that thread's own
connection (`Database.reader` keeps one per thread): a filter few rows match (`reason=`,
`outcome=`, a time window past most rows) scans the decisions from the cursor on, and on the
event loop 125,000 pushes held every other request, security alerts and the delivery worker's
rounds included, for 0.2-0.5 s, growing with the table. Not the loop's default threads: a
dashboard's scans would queue ahead of a new user's first write, which waits on one of those.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import msgspec

from gateway.clock import Clock, rfc3339, rfc3339_text, rfc3339_text_or_none, stored_time
from gateway.errors import InvalidInput, NotFound
from gateway.schemas.audit import (
    AccessLogEntry,
    AccessLogPage,
    AdminLogEntry,
    AdminLogPage,
    AuditEvent,
    ComplaintPage,
    ComplaintRead,
    DecisionPage,
    DecisionRead,
    EventPage,
    ExportRead,
    PurposeState,
    SubjectRead,
)
from gateway.services.audit_ledger import AuditLedger
from gateway.signing import Signer
from policies.catalog import PURPOSES
from storage import b64url, ledger
from storage.repositories import admin_log, audit
from storage.repositories.audit import Filter
from storage.store import Store

__all__ = ["AuditService", "audit_event", "aware", "read_cursor", "time_bound"]

P = ParamSpec("P")
R = TypeVar("R")
_READS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cgw-audit-read")


def _off_the_loop(
    read: Callable[Concatenate[AuditService, P], R],
) -> Callable[Concatenate[AuditService, P], Awaitable[R]]:
    @functools.wraps(read)
    async def in_a_thread(service: AuditService, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.get_running_loop().run_in_executor(
            _READS, functools.partial(read, service, *args, **kwargs)
        )

    return in_a_thread


FILTER_VALUE_MAX = 256
POSITION_DIGITS = 18  # positions are SQLite rowids and sequence numbers: below 2**63
CURSOR_KINDS = frozenset({"events", "decisions", "complaints", "access", "admin"})
_NO_MATCH = "no such subject"


def aware(value: datetime, name: str) -> datetime:
    """A query-string time in UTC; a time without an offset is ambiguous, so it is refused."""
    if value.tzinfo is None:
        raise InvalidInput(f"{name}: give an RFC 3339 time with an offset, e.g. 2026-11-23T10:00:00Z", name)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is in year 0 in UTC, which datetime cannot hold
        raise InvalidInput(f"{name}: out of range once converted to UTC", name) from None


def time_bound(value: datetime | None, name: str) -> str | None:
    """A time filter in the stored text form, which compares as time does."""
    return None if value is None else aware(value, name).isoformat()


def _window(start: datetime | None, end: datetime | None) -> tuple[str | None, str | None]:
    low, high = time_bound(start, "from"), time_bound(end, "to")
    if start and end and start > end:
        raise InvalidInput("from: must not be after `to`", "from")
    return low, high


def _encode_cursor(kind: str, position: int) -> str:
    return b64url.encode(f"{kind}:{position}".encode())


def read_cursor(cursor: str) -> tuple[str, int] | None:
    """The listing and position a cursor names, or None if the gateway gave out no such cursor."""
    try:
        text = b64url.decode(cursor).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    kind, _, position = text.partition(":")
    if (
        kind in CURSOR_KINDS
        and position.isascii()
        and position.isdigit()
        and len(position) <= POSITION_DIGITS
    ):
        return kind, int(position)
    return None


def _decode_cursor(kind: str, cursor: str | None) -> int:
    """The position after which a page starts; cursors are only good for the route that gave them."""
    if cursor is None:
        return 0
    read = read_cursor(cursor)
    if read is None or read[0] != kind:
        raise InvalidInput("cursor: not a cursor this listing gave out", "cursor")
    return read[1]


def _next_cursor(kind: str, positions: list[int], limit: int) -> str | None:
    """A cursor after the last row of a full page; a short page means the listing is read to its end."""
    return _encode_cursor(kind, positions[limit - 1]) if len(positions) > limit else None


def _first_time(events: list[ledger.LedgerEvent]) -> datetime | None:
    """The first event's time that reads as one; a tampered row's is skipped (verify names it)."""
    return next((at for event in events if (at := stored_time(event.at)) is not None), None)


def audit_event(event: ledger.LedgerEvent, subject_ref: str | None) -> AuditEvent:
    kind = event.kind
    return AuditEvent(
        seq=event.seq,
        at=rfc3339_text(event.at),
        subject_ref=subject_ref,
        purpose=event.purpose,
        action=kind.removeprefix("consent.") if kind.startswith("consent.") else kind,
        notice_version=event.notice_version,
        actor=event.actor,
        source=event.source,
        prev_hash=event.prev_hash.hex(),
        hash=event.hash.hex(),
    )


class AuditService:
    def __init__(self, store: Store, clock: Clock, signer: Signer) -> None:
        self._store = store
        self._clock = clock
        self.ledger = AuditLedger(store, clock, signer)

    def _subject_id(self, subject_ref: str | None, user_id: str | None = None) -> str | None:
        """The live subject id both filters name, `_NO_MATCH` when there is none, None if unfiltered."""
        pseudonym = None if user_id is None else self._store.pseudonyms.subject_ref(user_id)
        refs = {ref for ref in (subject_ref, pseudonym) if ref is not None}
        if not refs:
            return None
        if len(refs) > 1:
            return _NO_MATCH
        key = self._store.directory.resolve(refs.pop())
        return _NO_MATCH if key is None else key.subject_id

    @_off_the_loop
    def consent_events(
        self,
        *,
        subject_ref: str | None,
        user_id: str | None,
        purpose: str | None,
        start: datetime | None,
        end: datetime | None,
        cursor: str | None,
        limit: int,
    ) -> EventPage:
        low, high = _window(start, end)
        after = _decode_cursor("events", cursor)
        subject_id = self._subject_id(subject_ref, user_id)
        if subject_id == _NO_MATCH:
            return EventPage([], None)
        filters = Filter(equal={"subject_id": subject_id, "purpose": purpose}, start=low, end=high)
        page = audit.ledger_page(self._store.data.reader(), filters, after, limit + 1)
        refs = self._store.directory.refs_for(e.subject_id for e in page[:limit])
        return EventPage(
            [audit_event(e, refs.get(e.subject_id)) for e in page[:limit]],
            _next_cursor("events", [e.seq for e in page], limit),
        )

    @_off_the_loop
    def subject(self, subject_ref: str, at: datetime | None) -> SubjectRead:
        """Consent per purpose as of `at` (default now), replayed from the ledger, and the full history."""
        now = self._clock()
        moment = now if at is None else aware(at, "at")
        key = self._store.directory.resolve(subject_ref)
        # A tombstone keeps only the day of an erasure, the midnight after it (`erasure_day`):
        # the erasure was before then, and before now, when its tombstone is there to be read.
        erased_at = self._store.directory.erased_at(subject_ref)
        if key is None:
            if erased_at is None:
                raise NotFound("no subject with this subject_ref", "subject_ref")
            # From the erasure on, no consent is held. Before it, the history that would say is
            # unlinked and unreadable: `null`, unknown, rather than a `false` that would claim the
            # subject had not agreed.
            granted = False if moment >= min(erased_at, now) else None
            return SubjectRead(
                subject_ref=subject_ref,
                status="erased",
                as_of=rfc3339(moment),
                consents={p: PurposeState(granted, None, None) for p in PURPOSES},
                history=[],
                erased_at=rfc3339(erased_at),
            )
        history = list(ledger.consent_events_of_subject(self._store.data.reader(), key.subject_id))
        # A user who erased their data and came back is a new subject: before that erasure the
        # history lies with the old one, unlinked and unreadable, so what was held is unknown.
        # From the new subject's first consent event on, the erasure is known to be past: its
        # time is read in the unit that writes it, after the erasure's. (Not the subject's
        # creation: a request that read the time before the erasure may create it after.)
        before = erased_at is not None and moment < min(erased_at, now, _first_time(history) or now)
        state: dict[str, PurposeState] = {
            p: PurposeState(None if before else False, None, None) for p in PURPOSES
        }
        for event in history:
            if event.purpose not in state:
                continue
            at = stored_time(event.at)
            if at is None:  # a tampered row: what it said is unknown
                state[event.purpose] = PurposeState(None, None, None)
            elif at <= moment:
                granted = event.kind == "consent.given"
                state[event.purpose] = PurposeState(granted, event.notice_version, rfc3339_text(event.at))
        return SubjectRead(
            subject_ref=subject_ref,
            status="active",
            as_of=rfc3339(moment),
            consents=state,
            history=[audit_event(e, subject_ref) for e in history],
            erased_at=None if erased_at is None else rfc3339(erased_at),
        )

    @_off_the_loop
    def decisions(
        self,
        *,
        push_id: str | None,
        campaign_id: str | None,
        subject_ref: str | None,
        outcome: str | None,
        reason: str | None,
        start: datetime | None,
        end: datetime | None,
        cursor: str | None,
        limit: int,
    ) -> DecisionPage:
        low, high = _window(start, end)
        after = _decode_cursor("decisions", cursor)
        subject_id = self._subject_id(subject_ref)
        if subject_id == _NO_MATCH:
            return DecisionPage([], None)
        filters = Filter(
            equal={
                "push_id": push_id,
                "campaign_id": campaign_id,
                "subject_id": subject_id,
                "outcome": outcome,
            },
            start=low,
            end=high,
        )
        rows = audit.decision_page(self._store.data.reader(), filters, reason, after, limit + 1)
        refs = self._store.directory.refs_for(r.subject_id for r in rows[:limit] if r.subject_id)
        return DecisionPage(
            [
                DecisionRead(
                    push_id=r.push_id,
                    subject_ref=refs.get(r.subject_id or ""),
                    topic=r.topic,
                    campaign_id=r.campaign_id,
                    variant=r.variant,
                    outcome=r.outcome,
                    status=r.status,
                    reasons=msgspec.json.decode(r.reasons),
                    final_reasons=msgspec.json.decode(r.final_reasons) if r.final_reasons else [],
                    final_policy_version=r.final_policy_version,
                    policy_version=r.policy_version,
                    created_at=rfc3339_text(r.created_at),
                )
                for r in rows[:limit]
            ],
            _next_cursor("decisions", [r.cursor for r in rows], limit),
        )

    @_off_the_loop
    def complaints(
        self,
        *,
        status: str | None,
        reason: str | None,
        campaign_id: str | None,
        start: datetime | None,
        end: datetime | None,
        cursor: str | None,
        limit: int,
    ) -> ComplaintPage:
        low, high = _window(start, end)
        after = _decode_cursor("complaints", cursor)
        filters = Filter(
            equal={"status": status, "reason": reason, "campaign_id": campaign_id}, start=low, end=high
        )
        rows = audit.complaint_page(self._store.data.reader(), filters, after, limit + 1)
        refs = self._store.directory.refs_for(r.subject_id for r in rows[:limit])

        return ComplaintPage(
            [
                ComplaintRead(
                    complaint_id=r.complaint_id,
                    subject_ref=refs.get(r.subject_id),
                    push_id=r.push_id,
                    topic=r.topic,
                    campaign_id=r.campaign_id,
                    variant=r.variant,
                    reason=r.reason,
                    has_comment=r.has_comment,
                    status=r.status,
                    flagged=r.flagged,
                    actions=msgspec.json.decode(r.actions, type=list[object]),
                    created_at=rfc3339_text(r.created_at),
                    acknowledged_at=rfc3339_text_or_none(r.acknowledged_at),
                    resolved_at=rfc3339_text_or_none(r.resolved_at),
                    has_resolution=r.has_resolution,
                )
                for r in rows[:limit]
            ],
            _next_cursor("complaints", [r.cursor for r in rows], limit),
        )

    async def export(self, start: datetime | None, end: datetime | None) -> tuple[ExportRead, int]:
        return await self.ledger.export(*_window(start, end))

    def access_log(self, cursor: str | None, limit: int) -> AccessLogPage:
        rows = audit.access_page(self._store.data.reader(), _decode_cursor("access", cursor), limit + 1)
        return AccessLogPage(
            [
                AccessLogEntry(
                    id=r.id,
                    at=r.at,
                    key_id=r.key_id,
                    route=r.route,
                    result_count=r.result_count,
                    filters=msgspec.json.decode(r.filters, type=dict[str, str]),
                )
                for r in rows[:limit]
            ],
            _next_cursor("access", [r.id for r in rows], limit),
        )

    def admin_log(self, cursor: str | None, limit: int) -> AdminLogPage:
        rows = admin_log.page(self._store.data.reader(), _decode_cursor("admin", cursor), limit + 1)
        return AdminLogPage(
            [
                AdminLogEntry(
                    id=r.id,
                    at=rfc3339_text(r.at),
                    actor=r.actor,
                    action=r.action,
                    target=r.target,
                    detail=msgspec.json.decode(r.detail, type=dict[str, Any]),
                )
                for r in rows[:limit]
            ],
            _next_cursor("admin", [r.id for r in rows], limit),
        )

    async def log_access(self, key_id: str, route: str, filters: dict[str, str], result_count: int) -> None:
        """One access-log row. A `user_id` filter is logged as its subject_ref, never as itself."""
        logged = {name: value[:FILTER_VALUE_MAX] for name, value in filters.items() if name != "user_id"}
        if "user_id" in filters:
            logged["user_id_subject_ref"] = self._store.pseudonyms.subject_ref(filters["user_id"])
        at, text = rfc3339(self._clock()), msgspec.json.encode(logged, order="sorted").decode()
        await self._store.data.writer.run(
            lambda conn: audit.insert_access(
                conn, at=at, key_id=key_id, route=route, filters=text, result_count=result_count
            )
        )
