"""Gathers what the policy pipeline needs to know about one subject, from its rows.

Runs inside the writer's transaction when deciding for real, so what it reads (consents,
pushes already planned) cannot change before the decision is written.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from policies.context import Scheduled, SubjectState
from policies.settings import PolicySettings
from storage.db import Connection
from storage.directory import SubjectKey
from storage.repositories import consents, devices, locations, preferences, pushes

__all__ = ["SCHEDULE_HORIZON", "load"]

SCHEDULE_HORIZON = timedelta(days=8)


def load(
    conn: Connection,
    key: SubjectKey,
    now: datetime,
    policy: PolicySettings,
    default_tz: str,
    exclude_push: str | None = None,
) -> SubjectState:
    """`exclude_push` leaves a push out of `scheduled`: re-deciding a push at dispatch must not
    count the push itself against the caps."""
    doc = preferences.load(conn, key)
    granted = frozenset(p for p, row in consents.current(conn, key.subject_id).items() if row.granted)
    place = locations.get(conn, key)
    mutes = conn.execute("SELECT topic, until FROM mutes WHERE subject_id = ?", (key.subject_id,))
    planned = pushes.scheduled_around(
        conn, key.subject_id, now - SCHEDULE_HORIZON, now + SCHEDULE_HORIZON, exclude_push
    )
    return SubjectState(
        status="active",
        consents=granted,
        topics_off=frozenset(t for t, on in doc.topics.items() if not on),
        timezone=doc.timezone or default_tz,
        quiet_start=doc.quiet_start or policy.quiet_start,
        quiet_end=doc.quiet_end or policy.quiet_end,
        max_per_week=doc.max_per_week if doc.max_per_week is not None else policy.max_per_week,
        active_devices=devices.count_active(conn, key.subject_id),
        location_geohash=None if place is None else place[0],
        location_at=None if place is None else datetime.fromisoformat(place[1]),
        muted_until={str(t): datetime.fromisoformat(u) for t, u in mutes},
        scheduled=tuple(Scheduled(datetime.fromisoformat(at), topic) for at, topic in planned),
    )
