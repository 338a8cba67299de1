"""Complaints close the loop from a user's "stop this" to the marketer's numbers.

Filing a complaint acts at once, inside the same writer unit, each action recorded in the
ledger with the complaint as its source: the push's topic is muted for the user, `too_frequent`
lowers the weekly cap to 1, `no_consent` withdraws marketing consent (with a receipt) and flags
the complaint for review. Queued pushes the actions affect are stopped by the re-decision at
dispatch. A campaign whose complaint rate crosses the policy's threshold is paused, with the
numbers that paused it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from gateway.clock import Clock, rfc3339, rfc3339_text, rfc3339_text_or_none
from gateway.errors import Conflict, NotFound
from gateway.metrics import Metrics
from gateway.schemas.complaints import ComplaintCreate, ComplaintCreated, ComplaintRead, EventRecorded
from gateway.services.campaign_rule import judge_campaign
from gateway.services.policy import PolicySource
from gateway.services.preferences import PreferenceCenter
from policies.catalog import is_marketing
from storage import ledger
from storage.connections import Connection
from storage.directory import SubjectKey
from storage.repositories import complaints as repo
from storage.repositories import consents, deliveries, preferences, pushes
from storage.repositories.complaints import ComplaintRow, text_aad
from storage.store import Store

__all__ = ["ComplaintService", "complaint_read", "maybe_pause_campaign"]


def maybe_pause_campaign(conn: Connection, campaign_id: str, source: PolicySource, now: datetime) -> bool:
    """`judge_campaign` under the policy in force (`source`): called at each complaint of the
    campaign (deliveries are judged by `count_deliveries`)."""
    return judge_campaign(conn, campaign_id, source.settings, now)


class ComplaintService:
    def __init__(
        self, store: Store, clock: Clock, policy: PolicySource, center: PreferenceCenter, metrics: Metrics
    ) -> None:
        self._store = store
        self._clock = clock
        self._policy = policy
        self._center = center
        self._metrics = metrics

    async def file(self, subject_ref: str, body: ComplaintCreate, actor: str) -> ComplaintCreated:
        complaint_id = repo.new_id()

        def unit(conn: Connection, key: SubjectKey) -> ComplaintCreated:
            # In the unit: its events' times (a consent withdrawn, a topic muted) follow their
            # order in the ledger, as a consent change's do (`PreferenceCenter.set_consent`).
            now = self._clock()
            comment = (
                None
                if body.comment is None
                else key.cipher.seal(body.comment.encode(), text_aad(complaint_id, "comment", key))
            )
            return self._file(conn, key, complaint_id, body, comment, actor, now)

        # About a push of theirs, the user exists already: none is made for it (`must_exist`).
        unknown = None if body.push_id is None else NotFound("no such push of yours", "push_id")
        created = await self._store.write_as(subject_ref, self._clock(), unit, must_exist=unknown)
        self._metrics.complaints.labels(body.reason).inc()
        return created

    def _file(
        self,
        conn: Connection,
        key: SubjectKey,
        complaint_id: str,
        body: ComplaintCreate,
        comment: bytes | None,
        actor: str,
        now: datetime,
    ) -> ComplaintCreated:
        push = None if body.push_id is None else pushes.get(conn, body.push_id)
        # A push of theirs the user was sent or is to be sent (as their notifications list them),
        # or one a device of theirs got: not one refused before it was ever meant for them (its
        # id is in the export), which muted its topic for 30 days and counted against its campaign.
        if body.push_id is not None and (
            push is None
            or push.subject_id != key.subject_id
            or (push.status not in pushes.ACCEPTED and not deliveries.reached(conn, push.push_id))
        ):
            raise NotFound("no push sent to you, or to be sent, with this id", "push_id")
        self._policy.refresh(conn)  # the mute's length and the campaign rule: as in force now
        source = f"complaint:{complaint_id}"
        actions: list[str] = []
        mute_days = self._policy.settings.complaint_mute_days
        if push is not None and is_marketing(push.topic) and mute_days > 0:  # 0: no mute to say was made
            wanted = now + timedelta(days=mute_days)
            until = repo.mute(conn, key.subject_id, push.topic, wanted, source)
            self._log(
                conn,
                key,
                "complaint.topic_muted",
                actor,
                source,
                now,
                {"topic": push.topic, "until": rfc3339(until)},
            )
            actions.append("topic_muted")
        if body.reason == "too_frequent":
            doc = preferences.load(conn, key)
            if doc.max_per_week is None or doc.max_per_week > 1:
                preferences.save(conn, key, msgspec.structs.replace(doc, max_per_week=1), now)
                self._log(
                    conn, key, "preferences.changed", actor, source, now, {"frequency": {"max_per_week": 1}}
                )
                actions.append("weekly_cap_lowered")
        flagged = body.reason == "no_consent"
        if flagged:
            marketing = consents.current(conn, key.subject_id).get("marketing")
            if marketing is not None and marketing.granted:
                self._center.record_consent(
                    conn, key, "marketing", False, marketing.notice_version, actor=actor, source=source,
                    now=now,
                )  # fmt: skip
                actions.append("marketing_consent_withdrawn")
            actions.append("flagged_for_review")
        repo.insert(
            conn,
            ComplaintRow(
                complaint_id=complaint_id, subject_id=key.subject_id, push_id=body.push_id,
                topic=None if push is None else push.topic,
                campaign_id=None if push is None else push.campaign_id,
                variant=None if push is None else push.variant, reason=body.reason, comment=comment,
                status="open", flagged=int(flagged), actions=msgspec.json.encode(actions).decode(),
                created_at=now.isoformat(), acknowledged_at=None, resolved_at=None, resolution=None,
            ),
        )  # fmt: skip
        self._log(
            conn, key, "complaint.filed", actor, source, now, {"reason": body.reason, "actions": actions}
        )
        if push is not None and push.campaign_id is not None:
            maybe_pause_campaign(conn, push.campaign_id, self._policy, now)
        return ComplaintCreated(complaint_id, actions)

    def _log(
        self,
        conn: Connection,
        key: SubjectKey,
        kind: str,
        actor: str,
        source: str,
        now: datetime,
        detail: object,
    ) -> None:
        ledger.append(
            conn,
            at=now,
            subject=key,
            kind=kind,
            actor=actor,
            source=source,
            content=msgspec.json.encode(detail),
        )

    def list_own(self, subject_ref: str) -> list[ComplaintRead]:
        key = self._store.directory.resolve(subject_ref)
        if key is None:
            return []
        return [
            complaint_read(row, key)
            for row in repo.list_for_subject(self._store.data.reader(), key.subject_id)
        ]

    async def acknowledge(self, complaint_id: str) -> ComplaintRead:
        return await self._step(complaint_id, "acknowledged", None)

    async def resolve(self, complaint_id: str, resolution: str) -> ComplaintRead:
        return await self._step(complaint_id, "resolved", resolution)

    async def _step(self, complaint_id: str, status: str, resolution: str | None) -> ComplaintRead:
        now = self._clock()
        before = {"acknowledged": "open", "resolved": "acknowledged"}[status]

        def unit(conn: Connection) -> ComplaintRead:
            row = repo.get(conn, complaint_id)
            if row is None:
                raise NotFound("no such complaint", "complaint_id")
            if row.status != before:
                raise Conflict(
                    f"the complaint is {row.status}; only an {before} one can become {status}", "status"
                )
            key = self._store.directory.by_subject_id(row.subject_id)
            sealed = None
            if resolution is not None and key is not None:
                sealed = key.cipher.seal(resolution.encode(), text_aad(complaint_id, "resolution", key))
            repo.set_status(conn, complaint_id, status, now, sealed)
            updated = repo.get(conn, complaint_id)
            assert updated is not None
            return complaint_read(updated, key)

        return await self._store.data.writer.run(unit)

    async def record_event(self, subject_ref: str, push_id: str, event: str) -> EventRecorded:
        """Written as the live subject (`Store.write_as`): through a process still trusting its
        cached key after an erasure made through another, an event would be recorded for the
        erased user's push after `subject.erased`, and counted in its campaign's statistics."""
        now = self._clock()

        def unit(conn: Connection, key: SubjectKey) -> EventRecorded:
            push = pushes.get(conn, push_id)
            # A push still `sending` to another device may be on this one already: what the user
            # did with it counts (stats count it once the push ends `delivered`, as it will).
            if (
                push is None
                or push.subject_id != key.subject_id
                or (push.status != "delivered" and not deliveries.reached(conn, push_id))
            ):
                raise _not_delivered()
            return EventRecorded(push_id, event, repo.record_event(conn, push_id, event, now))

        return await self._store.write_as(subject_ref, now, unit, must_exist=_not_delivered())


def _not_delivered() -> NotFound:
    return NotFound("no push delivered to you with this id", "push_id")


def complaint_read(row: ComplaintRow, key: SubjectKey | None) -> ComplaintRead:
    """`key` None (the subject was erased) leaves the sealed texts out."""
    return ComplaintRead(
        complaint_id=row.complaint_id,
        push_id=row.push_id,
        topic=row.topic,
        campaign_id=row.campaign_id,
        reason=row.reason,  # type: ignore[arg-type]
        comment=None if key is None else row.open_text(key, "comment"),
        status=row.status,  # type: ignore[arg-type]
        flagged_for_review=bool(row.flagged),
        actions_taken=msgspec.json.decode(row.actions, type=list[str]),
        created_at=rfc3339_text(row.created_at),
        acknowledged_at=rfc3339_text_or_none(row.acknowledged_at),
        resolved_at=rfc3339_text_or_none(row.resolved_at),
        resolution=None if key is None else row.open_text(key, "resolution"),
        complainant_erased=key is None,
    )
