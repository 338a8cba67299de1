"""The outbox: one row per accepted push, written in the decision's transaction and removed
when the push reaches an end state.

Workers claim due rows with a lease. A worker that dies leaves its lease to expire; the rows
are then claimed again and their unfinished devices sent again — with the same idempotency
key, so the provider (or the wallet's relay) can recognize the repeat.

A claim counts as an attempt until its round says otherwise: a round that ends writes the
push's true count back (`reschedule_many`, or the push's end), so only a lost lease keeps it.
A push whose sending kills its worker, or hangs past the lease every time, thus reaches the
last attempt and its dead-letter end like one the provider keeps refusing, rather than being
claimed again at every lease until it expires.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec

from storage.connections import Connection, in_chunks

__all__ = [
    "Claim", "Reschedule", "claim", "enqueue_many", "finish_many", "held_among", "hold", "postpone",
    "reschedule_many",
]  # fmt: skip


class Claim(msgspec.Struct, frozen=True):
    push_id: str
    attempts: int  # before this claim: the attempts made, and the leases lost, so far
    due_at: str  # as stored: a push put back unsent (`Reschedule`) keeps its place in the queue


def enqueue_many(conn: Connection, due: Sequence[tuple[str, datetime]]) -> None:
    conn.executemany(
        "INSERT INTO outbox (push_id, due_at) VALUES (?, ?)",
        [(push_id, at.isoformat()) for push_id, at in due],
    )


def claim(conn: Connection, owner: str, now: datetime, lease: timedelta, limit: int) -> list[Claim]:
    """Lease up to `limit` due rows whose lease is free or expired, the earliest due first and,
    among those due at once, in the order they were queued (a subject's pushes in one round
    are judged in that order against its caps); runs in the writer."""
    stamp = now.isoformat()
    rows = conn.execute(
        "SELECT push_id, attempts, due_at FROM outbox "
        "WHERE due_at <= ? AND (lease_until IS NULL OR lease_until < ?) ORDER BY due_at, rowid LIMIT ?",
        (stamp, stamp, limit),
    ).fetchall()
    until = (now + lease).isoformat()
    conn.executemany(
        "UPDATE outbox SET lease_owner = ?, lease_until = ?, attempts = attempts + 1 WHERE push_id = ?",
        [(owner, until, r[0]) for r in rows],
    )
    return [Claim(str(r[0]), int(r[1]), str(r[2])) for r in rows]


def earliest_due(conn: Connection) -> datetime | None:
    """When the earliest row of the outbox is due, sent or not: one step of its `due_at` index."""
    row = conn.execute("SELECT min(due_at) FROM outbox").fetchone()
    return None if row[0] is None else datetime.fromisoformat(row[0])


class Reschedule(msgspec.Struct, frozen=True):
    push_id: str
    due_at: datetime
    attempts: int


def reschedule_many(conn: Connection, items: Sequence[Reschedule], owner: str) -> int:
    """Release our leases and set each push's next try; returns how many leases were still ours
    (the others were lost to another worker, and their rows are left as that worker has them)."""
    cur = conn.executemany(
        "UPDATE outbox SET due_at = ?, attempts = ?, lease_owner = NULL, lease_until = NULL "
        "WHERE push_id = ? AND lease_owner = ?",
        [(r.due_at.isoformat(), r.attempts, r.push_id, owner) for r in items],
    )
    return cur.rowcount


def hold(conn: Connection, push_id: str, owner: str, until: datetime) -> None:
    """Lease one push to `owner`, due or not: a round's step tried for it alone (and undone)."""
    conn.execute(
        "UPDATE outbox SET lease_owner = ?, lease_until = ? WHERE push_id = ?",
        (owner, until.isoformat(), push_id),
    )


def postpone(conn: Connection, push_ids: Sequence[str], due_at: datetime) -> None:
    """Make these pushes due at `due_at`, whoever held them: what cannot be read now is not
    claimed again before then."""
    stamp = due_at.isoformat()
    conn.executemany("UPDATE outbox SET due_at = ? WHERE push_id = ?", [(stamp, p) for p in push_ids])


def finish_many(conn: Connection, push_ids: Sequence[str], owner: str) -> int:
    """Remove the rows of pushes that reached an end; returns how many leases were still ours."""
    cur = conn.executemany(
        "DELETE FROM outbox WHERE push_id = ? AND lease_owner = ?", [(push_id, owner) for push_id in push_ids]
    )
    return cur.rowcount


def held_among(conn: Connection, push_ids: Sequence[str], owner: str) -> set[str]:
    """The pushes among these whose lease `owner` still holds (a slow round may have lost some)."""
    held: set[str] = set()
    for marks, chunk in in_chunks(push_ids):
        held.update(
            str(r[0])
            for r in conn.execute(
                f"SELECT push_id FROM outbox WHERE lease_owner = ? AND push_id IN ({marks})",  # noqa: S608
                (owner, *chunk),
            )
        )
    return held
