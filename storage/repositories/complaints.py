"""Complaints and their handling steps (open → acknowledged → resolved, each timed).

Comment and resolution text are sealed under the subject's key; everything an operator
needs to triage (reason, topic, campaign, status, flags, actions taken) is in the clear.
"""

from __future__ import annotations

import secrets
from datetime import datetime

import msgspec

from storage.connections import Connection
from storage.crypto import field_aad
from storage.directory import SubjectKey

__all__ = [
    "ComplaintRow",
    "Mute",
    "PushEvent",
    "count_for_campaign",
    "events_for_subject",
    "get",
    "insert",
    "list_for_subject",
    "mute",
    "mutes_for_subject",
    "record_event",
    "set_status",
]

_COLUMNS = (
    "complaint_id, subject_id, push_id, topic, campaign_id, variant, reason, comment, status, flagged, "
    "actions, created_at, acknowledged_at, resolved_at, resolution"
)


class ComplaintRow(msgspec.Struct, frozen=True, kw_only=True):
    complaint_id: str
    subject_id: str
    push_id: str | None
    topic: str | None
    campaign_id: str | None
    variant: str | None
    reason: str
    comment: bytes | None
    status: str
    flagged: int
    actions: str
    created_at: str
    acknowledged_at: str | None
    resolved_at: str | None
    resolution: bytes | None

    def open_text(self, key: SubjectKey, column: str) -> str | None:
        sealed = self.comment if column == "comment" else self.resolution
        if sealed is None:
            return None
        return key.cipher.open(sealed, text_aad(self.complaint_id, column, key)).decode()


class Mute(msgspec.Struct, frozen=True):
    """A topic muted for a subject by one of their complaints (`source` names it)."""

    topic: str
    until: str
    source: str


class PushEvent(msgspec.Struct, frozen=True):
    push_id: str
    type: str
    at: str


def text_aad(complaint_id: str, column: str, key: SubjectKey) -> bytes:
    return field_aad("complaints", column, complaint_id, key.subject_id)


def _row(values: tuple[object, ...]) -> ComplaintRow:
    return ComplaintRow(**dict(zip(_COLUMNS.split(", "), values, strict=True)))  # type: ignore[arg-type]


def new_id() -> str:
    return "cpl_" + secrets.token_hex(10)


def insert(conn: Connection, row: ComplaintRow) -> None:
    values = tuple(getattr(row, name) for name in _COLUMNS.split(", "))
    conn.execute(f"INSERT INTO complaints ({_COLUMNS}) VALUES ({','.join('?' * len(values))})", values)  # noqa: S608


def get(conn: Connection, complaint_id: str) -> ComplaintRow | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM complaints WHERE complaint_id = ?",  # noqa: S608
        (complaint_id,),
    ).fetchone()
    return None if row is None else _row(row)


def list_for_subject(conn: Connection, subject_id: str) -> list[ComplaintRow]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM complaints WHERE subject_id = ? ORDER BY created_at",  # noqa: S608
        (subject_id,),
    )
    return [_row(r) for r in rows]


def set_status(
    conn: Connection, complaint_id: str, status: str, now: datetime, resolution: bytes | None = None
) -> None:
    column = "acknowledged_at" if status == "acknowledged" else "resolved_at"
    conn.execute(
        f"UPDATE complaints SET status = ?, {column} = ?, resolution = coalesce(?, resolution) "  # noqa: S608
        "WHERE complaint_id = ?",
        (status, now.isoformat(), resolution, complaint_id),
    )


def count_for_campaign(conn: Connection, campaign_id: str, since: str | None = None) -> int:
    """Complained-about pushes of the campaign that were delivered, first reaching a device after
    `since` if given (its last resume: the rate's deliveries are those since then, and complaints
    about pushes that reached people before, which keep coming for hours, would pause it again
    over deliveries that drew none). First reaching a device, as the stats date receipt: a push
    still retried to another device ends `delivered` later, its row's `updated_at` with it.
    One recipient complaining twice about one push is one complaint against the campaign. The
    rule's rate is over deliveries, as the campaign's stats are: a complaint about a push still
    queued (users see those in their notifications) would pause a campaign whose stats show no
    complaint at all."""
    row = conn.execute(
        "SELECT count(DISTINCT c.push_id) FROM complaints c JOIN pushes p ON p.push_id = c.push_id "
        "WHERE c.campaign_id = ? AND p.status = 'delivered' AND coalesce(("
        "SELECT min(d.updated_at) FROM deliveries d WHERE d.push_id = p.push_id AND d.status = 'delivered'"
        "), p.updated_at) > ?",
        (campaign_id, since or ""),
    ).fetchone()
    return int(row[0])


def count_any_for_campaign(conn: Connection, campaign_id: str) -> int:
    """Complained-about pushes of the campaign, whatever their status and whenever they were
    delivered: at most what `count_for_campaign` counts, now or once those pushes are delivered."""
    row = conn.execute(
        "SELECT count(DISTINCT push_id) FROM complaints WHERE campaign_id = ?", (campaign_id,)
    ).fetchone()
    return int(row[0])


def mute(conn: Connection, subject_id: str, topic: str, until: datetime, source: str) -> datetime:
    """Mute `topic` for the subject until `until`, or leave a longer mute as it is; returns the
    end that stands. A complaint never shortens the protection an earlier one gave (the mute's
    length may have been lowered since), nor takes it over: its source stays the earlier one's."""
    row = conn.execute(
        "INSERT INTO mutes (subject_id, topic, until, source) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (subject_id, topic) DO UPDATE SET until = excluded.until, source = excluded.source "
        "WHERE excluded.until > mutes.until "
        "RETURNING until",
        (subject_id, topic, until.isoformat(), source),
    ).fetchone()
    if row is not None:
        return until
    (held,) = conn.execute(
        "SELECT until FROM mutes WHERE subject_id = ? AND topic = ?", (subject_id, topic)
    ).fetchone()
    return datetime.fromisoformat(held)


def mutes_for_subject(conn: Connection, subject_id: str) -> list[Mute]:
    """Every mute row, expired ones too: the export shows what is held, not what still applies."""
    rows = conn.execute(
        "SELECT topic, until, source FROM mutes WHERE subject_id = ? ORDER BY topic", (subject_id,)
    )
    return [Mute(*r) for r in rows]


def events_for_subject(conn: Connection, subject_id: str) -> list[PushEvent]:
    """Engagement events carry no subject column: they are the subject's through their push."""
    rows = conn.execute(
        "SELECT e.push_id, e.type, e.at FROM push_events e JOIN pushes p ON p.push_id = e.push_id "
        "WHERE p.subject_id = ? ORDER BY e.at, e.push_id, e.type",
        (subject_id,),
    )
    return [PushEvent(*r) for r in rows]


def record_event(conn: Connection, push_id: str, event: str, at: datetime) -> bool:
    """Record an engagement event on a push; returns whether it was new. Each type counts once
    a push: the same event reported again keeps the first one's time."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO push_events (push_id, type, at) VALUES (?, ?, ?)",
        (push_id, event, at.isoformat()),
    )
    return cur.rowcount == 1
