"""Current consent per subject and purpose. The history is the ledger; this is its latest state,
kept in the same transaction so the two never disagree."""

from __future__ import annotations

from datetime import datetime

import msgspec

from storage.connections import Connection
from storage.ledger import has_columns

__all__ = ["ConsentRow", "current", "put", "unbacked"]


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


_COLUMNS = frozenset({"subject_id", "purpose", "granted", "notice_version"})


def unbacked(conn: Connection) -> int | None:
    """Consent rows the ledger does not back: its latest consent event for their subject and
    purpose (`seq` is the order) is missing, says the other way, or names another notice. This
    table is what every push is decided on; an UPDATE of it granted marketing to a user whose
    ledger says withdrawn, and the chain, which does not read it, verified. Rows are never
    without their event: both are written in one transaction (`PreferenceCenter.record_consent`).
    SQLite takes a bare column of a `max()` aggregate from the row holding the maximum. None:
    the table (or a column) is gone, which is tampering too."""
    if not has_columns(conn, "consents", _COLUMNS):
        return None
    row = conn.execute(
        """SELECT count(*) FROM consents AS c LEFT JOIN (
               SELECT subject_id, purpose, kind, notice_version, max(seq) FROM ledger
               WHERE kind IN ('consent.given', 'consent.withdrawn') GROUP BY subject_id, purpose
           ) AS l ON l.subject_id = c.subject_id AND l.purpose = c.purpose
           WHERE l.kind IS NULL OR (l.kind = 'consent.given') IS NOT (c.granted = 1)
               OR l.notice_version IS NOT c.notice_version"""
    ).fetchone()
    return int(row[0])
