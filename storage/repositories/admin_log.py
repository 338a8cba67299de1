"""The admin log: who changed how the gateway runs, append-only, in the unit of the change.

API keys created and revoked, key-encryption keys rotated, policy versions put in force, and
campaigns paused by hand or resumed each leave one row naming the actor (`key:<id>`, or `cli`
for a command run on the server). Without it an operator could make another admin key, or
revoke a service's, and nobody could tell later who had. Rows hold ids, scopes and counts,
never a key's name, which is the operator's free text.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from storage.connections import Connection

__all__ = ["AdminLogRow", "page", "record"]


class AdminLogRow(msgspec.Struct, frozen=True):
    id: int
    at: str
    actor: str
    action: str
    target: str
    detail: str


def record(
    conn: Connection,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, object] | None = None,
) -> None:
    conn.execute(
        "INSERT INTO admin_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
        (at.isoformat(), actor, action, target, msgspec.json.encode(detail or {}, order="sorted").decode()),
    )


def page(conn: Connection, after: int, limit: int) -> list[AdminLogRow]:
    rows = conn.execute(
        "SELECT id, at, actor, action, target, detail FROM admin_log WHERE id > ? ORDER BY id LIMIT ?",
        (after, limit),
    )
    return [AdminLogRow(*row) for row in rows]
