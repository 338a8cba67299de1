"""Push records: the decision log and each push's lifecycle.

`outcome` is the answer given at submission and never changes (idempotent replays return
it); `status` moves on as the push is delivered. Content is sealed under the subject's key,
and only when there is a subject to seal it for.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec

from storage.crypto import field_aad
from storage.db import Connection
from storage.directory import SubjectKey

__all__ = [
    "ACCEPTED",
    "PushContent",
    "PushRow",
    "content_aad",
    "find_idempotent",
    "get",
    "insert",
    "list_for_subject",
    "scheduled_around",
    "set_status",
]

ACCEPTED = ("queued", "deferred", "sending", "delivered")
_COLUMNS = (
    "push_id, key_id, idempotency_key, fingerprint, subject_id, topic, campaign_id, variant, "
    "outcome, status, reasons, allowed_by, planned_at, deliver_after, expires_at, created_at, "
    "updated_at, policy_version, content, attempts"
)


class PushContent(msgspec.Struct, frozen=True, kw_only=True):
    title: str
    body: str
    data: dict[str, str]
    personalized: bool = False
    near_geohash: str | None = None


class PushRow(msgspec.Struct, frozen=True, kw_only=True):
    push_id: str
    key_id: str
    idempotency_key: str
    fingerprint: bytes
    subject_id: str | None
    topic: str
    campaign_id: str | None
    variant: str | None
    outcome: str
    status: str
    reasons: str
    allowed_by: str
    planned_at: str | None
    deliver_after: str | None
    expires_at: str
    created_at: str
    updated_at: str
    policy_version: int
    content: bytes | None
    attempts: int = 0

    def open_content(self, key: SubjectKey) -> PushContent | None:
        if self.content is None:
            return None
        return msgspec.json.decode(
            key.cipher.open(self.content, content_aad(self.push_id, key)), type=PushContent
        )


def content_aad(push_id: str, key: SubjectKey) -> bytes:
    return field_aad("pushes", "content", push_id, key.subject_id)


def _row(values: tuple[object, ...]) -> PushRow:
    return PushRow(**dict(zip(_COLUMNS.split(", "), values, strict=True)))  # type: ignore[arg-type]


def insert(conn: Connection, row: PushRow) -> None:
    values = tuple(getattr(row, name) for name in _COLUMNS.split(", "))
    conn.execute(f"INSERT INTO pushes ({_COLUMNS}) VALUES ({','.join('?' * len(values))})", values)  # noqa: S608


def find_idempotent(conn: Connection, key_id: str, idempotency_key: str) -> PushRow | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM pushes WHERE key_id = ? AND idempotency_key = ?",  # noqa: S608
        (key_id, idempotency_key),
    ).fetchone()
    return None if row is None else _row(row)


def get(conn: Connection, push_id: str) -> PushRow | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM pushes WHERE push_id = ?", (push_id,)).fetchone()  # noqa: S608
    return None if row is None else _row(row)


def scheduled_around(
    conn: Connection, subject_id: str, start: datetime, end: datetime, exclude_push: str | None = None
) -> list[tuple[str, str]]:
    """(planned_at, topic) of accepted marketing pushes planned within [start, end]."""
    rows = conn.execute(
        "SELECT planned_at, topic FROM pushes WHERE subject_id = ? AND planned_at >= ? AND planned_at <= ? "
        "AND topic != 'transactional' AND status IN ('queued', 'deferred', 'sending', 'delivered') "
        "AND push_id IS NOT ?",
        (subject_id, start.isoformat(), end.isoformat(), exclude_push),
    )
    return [(str(r[0]), str(r[1])) for r in rows]


def list_for_subject(conn: Connection, subject_id: str, statuses: Iterable[str]) -> list[PushRow]:
    wanted = tuple(statuses)
    marks = ",".join("?" * len(wanted))
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM pushes WHERE subject_id = ? AND status IN ({marks}) "  # noqa: S608
        "ORDER BY created_at DESC LIMIT 500",
        (subject_id, *wanted),
    )
    return [_row(r) for r in rows]


def set_status(
    conn: Connection,
    push_id: str,
    status: str,
    now: datetime,
    *,
    reasons: str | None = None,
    attempts: int | None = None,
    planned_at: datetime | None = None,
) -> None:
    conn.execute(
        "UPDATE pushes SET status = ?, updated_at = ?, reasons = coalesce(?, reasons), "
        "attempts = coalesce(?, attempts), planned_at = coalesce(?, planned_at) WHERE push_id = ?",
        (
            status,
            now.isoformat(),
            reasons,
            attempts,
            None if planned_at is None else planned_at.isoformat(),
            push_id,
        ),
    )
