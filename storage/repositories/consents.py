"""Current consent per subject and purpose. The history is the ledger; this is its latest state,
kept in the same transaction so the two never disagree."""

from __future__ import annotations

from datetime import datetime

import msgspec

from storage.connections import Connection

__all__ = ["ConsentRow", "current", "put"]


class ConsentRow(msgspec.Struct, frozen=True):
    purpose: str
    granted: bool
    notice_version: str
    updated_at: str


def current(conn: Connection, subject_id: str) -> dict[str, ConsentRow]:
    rows = conn.execute(
        "SELECT purpose, granted, notice_version, updated_at FROM consents WHERE subject_id = ?",
        (subject_id,),
    )
    return {r[0]: ConsentRow(r[0], bool(r[1]), r[2], r[3]) for r in rows}


def put(
    conn: Connection, subject_id: str, purpose: str, granted: bool, notice_version: str, now: datetime
) -> None:
    conn.execute(
        "INSERT INTO consents (subject_id, purpose, granted, notice_version, updated_at) VALUES (?,?,?,?,?) "
        "ON CONFLICT (subject_id, purpose) DO UPDATE SET granted = excluded.granted, "
        "notice_version = excluded.notice_version, updated_at = excluded.updated_at",
        (subject_id, purpose, int(granted), notice_version, now.isoformat()),
    )
