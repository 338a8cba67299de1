"""Gathers what the policy pipeline needs to know about subjects, from their rows.

Runs inside the writer's transaction when deciding for real, so what it reads (consents,
pushes already planned) cannot change before the decisions are written. It reads many
subjects at once — a handful of queries per 500 subjects rather than seven per push — because
batches and campaigns decide thousands of pushes in one unit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta

import msgspec

from policies.context import Scheduled, SubjectState
from policies.engine import StateParts
from policies.settings import PolicySettings
from storage.connections import Connection, in_chunks
from storage.directory import SubjectKey
from storage.repositories import campaigns, locations, preferences
from storage.repositories.preferences import PreferenceDoc
from storage.repositories.pushes import ACCEPTED, WAITING

__all__ = ["PLANNED_MARKETING", "SCHEDULE_HORIZON", "choices_stamp", "load_many"]

SCHEDULE_HORIZON = timedelta(days=8)
# What the caps count: the subjects' marketing pushes planned in a window. The topic test is
# written `(topic = 'transactional') = 0`, as the subject index states it (migration 0024), so
# that each subject is one seek to its marketing pushes in the window, however many
# transactional pushes it has.
PLANNED_MARKETING = (
    "SELECT subject_id, planned_at, topic, status, campaign_id, rowid, push_id, expires_at "  # noqa: S608
    "FROM pushes WHERE subject_id IN ({marks}) AND planned_at >= ? AND planned_at <= ? "
    f"AND (topic = 'transactional') = 0 AND status IN ({','.join('?' * len(ACCEPTED))})"
)


def load_many(
    conn: Connection,
    keys: Sequence[SubjectKey],
    now: datetime,
    policy: PolicySettings,
    default_tz: str,
    parts: StateParts,
    claimed: Collection[str] = (),
    active_devices: Mapping[str, int] | None = None,
) -> dict[str, SubjectState]:
    """subject id → state, for every key given, with the `parts` the pushes' rules read
    (`policies.state_parts_for`) and the others at their defaults: status and devices always.
    `claimed`: the pushes a dispatch round reading this holds the leases of, and decides again
    (a retry among them is still waiting). `active_devices`: each subject's count of active
    devices, read already in this transaction by a caller that needed the rows (dispatch), so
    not counted again."""
    by_id = {k.subject_id: k for k in keys}
    docs: dict[str, bytes] = {}
    granted: dict[str, set[str]] = defaultdict(set)
    places: dict[str, tuple[bytes, str]] = {}
    mutes: dict[str, dict[str, datetime]] = defaultdict(dict)
    device_counts: dict[str, int] = dict(active_devices or {})
    planned: dict[str, list[Scheduled]] = defaultdict(list)
    for marks, ids in in_chunks(list(by_id)):
        if StateParts.PREFERENCES in parts:
            for sid, doc in conn.execute(
                f"SELECT subject_id, doc FROM preferences WHERE subject_id IN ({marks})",  # noqa: S608
                ids,
            ):
                docs[sid] = bytes(doc)
        if StateParts.CONSENTS in parts:
            for sid, purpose in conn.execute(
                f"SELECT subject_id, purpose FROM consents WHERE granted = 1 AND subject_id IN ({marks})",  # noqa: S608
                ids,
            ):
                granted[sid].add(purpose)
        if StateParts.LOCATION in parts:
            for sid, sealed, at in conn.execute(
                f"SELECT subject_id, geohash, at FROM locations WHERE subject_id IN ({marks})",  # noqa: S608
                ids,
            ):
                places[sid] = (bytes(sealed), at)
        if StateParts.MUTES in parts:
            for sid, topic, until in conn.execute(
                f"SELECT subject_id, topic, until FROM mutes WHERE subject_id IN ({marks})",  # noqa: S608
                ids,
            ):
                mutes[sid][topic] = datetime.fromisoformat(until)
        # Counted here: the GROUP BY aggregate cost ~0.6 µs a subject more than a row each.
        if active_devices is None:
            for (sid,) in conn.execute(
                f"SELECT subject_id FROM devices WHERE status = 'active' AND subject_id IN ({marks})",  # noqa: S608
                ids,
            ):
                device_counts[sid] = device_counts.get(sid, 0) + 1
        if StateParts.SCHEDULE in parts:
            for sid, item in _planned(conn, marks, ids, now, claimed):
                planned[sid].append(item)
    states = {}
    for sid, key in by_id.items():
        doc = (
            msgspec.json.decode(key.cipher.open(docs[sid], preferences.doc_aad(key)), type=PreferenceDoc)
            if sid in docs
            else PreferenceDoc()
        )
        place = places.get(sid)
        geohash = None if place is None else key.cipher.open(place[0], locations.geohash_aad(key)).decode()
        states[sid] = SubjectState(
            status="active",
            consents=frozenset(granted.get(sid, ())),
            topics_off=frozenset(t for t, on in doc.topics.items() if not on),
            timezone=doc.timezone or default_tz,
            quiet_start=doc.quiet_start or policy.quiet_start,
            quiet_end=doc.quiet_end or policy.quiet_end,
            max_per_week=doc.max_per_week if doc.max_per_week is not None else policy.max_per_week,
            active_devices=device_counts.get(sid, 0),
            location_geohash=geohash,
            location_at=None if place is None else datetime.fromisoformat(place[1]),
            muted_until=mutes.get(sid, {}),
            scheduled=tuple(planned.get(sid, ())),
        )
    return states


def _planned(
    conn: Connection, marks: str, ids: Sequence[str], now: datetime, claimed: Collection[str]
) -> list[tuple[str, Scheduled]]:
    """The marketing pushes the caps count for these subjects (`PLANNED_MARKETING`), each with
    its subject id."""
    start, end = (now - SCHEDULE_HORIZON).isoformat(), (now + SCHEDULE_HORIZON).isoformat()
    found: list[tuple[str, Scheduled]] = []
    of_campaigns: list[tuple[str, Scheduled, str, int]] = []
    rows = conn.execute(PLANNED_MARKETING.format(marks=marks), (*ids, start, end, *ACCEPTED)).fetchall()
    retrying = _retrying(conn, [r[6] for r in rows if r[3] == "sending"], now, claimed)
    for sid, at, topic, status, campaign_id, rowid, push_id, expires in rows:
        waiting = status in WAITING or push_id in retrying
        if waiting and datetime.fromisoformat(expires) <= now:
            continue  # its next claim ends it `expired`, however late the worker runs
        # A retry is decided again when its outbox row is next due, not when first sent.
        planned = datetime.fromisoformat(at)
        when = max(planned, retrying[push_id]) if push_id in retrying else None
        item = Scheduled(
            when or planned,
            topic,
            waiting,
            datetime.fromisoformat(expires) if waiting else None,
            push_id,
            rowid,
            planned if when is not None and when != planned else None,
        )
        if item.waiting and campaign_id is not None:
            of_campaigns.append((sid, item, campaign_id, rowid))
        else:
            found.append((sid, item))
    stopping = {c: campaigns.get(conn, c) for c in {campaign for _, _, campaign, _ in of_campaigns}}
    for sid, item, campaign_id, rowid in of_campaigns:
        # A campaign paused since the push was decided stops it at dispatch: it holds no cap.
        campaign = stopping.get(campaign_id)
        if campaign is None or not campaign.stops(rowid):
            found.append((sid, item))
    return found


def _retrying(
    conn: Connection, sending: list[str], now: datetime, claimed: Collection[str]
) -> dict[str, datetime]:
    """The `sending` pushes among these that no device has and no worker holds, with when each is
    next due: waiting out a retry's backoff, they are decided again when next claimed, as queued
    ones are, so they are waiting too (a pause or a topic switched off since stops them then,
    quiet hours by then defer them, a next try at their expiry ends them). Rare, so asked apart.
    One the reading round has `claimed` is waiting too: that round decides it again."""
    found: dict[str, datetime] = {}
    stamp = now.isoformat()
    for marks, chunk in in_chunks(sending):
        for push_id, due_at, held in conn.execute(
            f"SELECT o.push_id, o.due_at, o.lease_owner IS NOT NULL AND o.lease_until >= ? FROM outbox o "  # noqa: S608
            f"WHERE o.push_id IN ({marks}) AND NOT EXISTS (SELECT 1 FROM deliveries d "
            "WHERE d.push_id = o.push_id AND d.status = 'delivered')",
            (stamp, *chunk),
        ):
            if not held or push_id in claimed:
                found[str(push_id)] = datetime.fromisoformat(due_at)
    return found


def choices_stamp(conn: Connection, subject_ids: Collection[str]) -> dict[str, str]:
    """subject id → a stamp of its consents, preferences and complaints (which set its mutes),
    for those of `subject_ids` with any: what a push's decision read of its subject besides its
    devices and planned pushes, and any change to them changes it. Of what the rows hold, not of
    when they were stamped: a preference document is sealed anew each time it is saved (its tag
    differs), whatever the clocks of the processes that wrote it say."""
    parts: dict[str, list[str]] = defaultdict(list)
    for marks, chunk in in_chunks(sorted(set(subject_ids))):
        for sid, part in conn.execute(
            "SELECT subject_id, purpose || ':' || granted || ':' || updated_at FROM consents "  # noqa: S608
            f"WHERE subject_id IN ({marks}) "
            "UNION ALL SELECT subject_id, hex(substr(doc, -16)) FROM preferences "
            f"WHERE subject_id IN ({marks}) "
            f"UNION ALL SELECT subject_id, complaint_id FROM complaints WHERE subject_id IN ({marks})",
            chunk * 3,
        ):
            parts[sid].append(part)
    return {sid: "|".join(sorted(found)) for sid, found in parts.items()}
