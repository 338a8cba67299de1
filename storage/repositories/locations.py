"""A subject's last coarse location: a geohash of precision 6 (about 1.2 km × 0.6 km), sealed,
with its time. Raw coordinates never reach storage."""

from __future__ import annotations

from datetime import datetime

from storage.connections import Connection
from storage.crypto import field_aad
from storage.directory import SubjectKey

__all__ = ["delete", "geohash_aad", "get", "put"]


def geohash_aad(key: SubjectKey) -> bytes:
    return field_aad("locations", "geohash", key.subject_id, key.subject_id)


def put(conn: Connection, key: SubjectKey, geohash: str, now: datetime) -> None:
    conn.execute(
        "INSERT INTO locations (subject_id, geohash, at) VALUES (?, ?, ?) "
        "ON CONFLICT (subject_id) DO UPDATE SET geohash = excluded.geohash, at = excluded.at",
        (key.subject_id, key.cipher.seal(geohash.encode(), geohash_aad(key)), now.isoformat()),
    )


def get(conn: Connection, key: SubjectKey) -> tuple[str, str] | None:
    row = conn.execute("SELECT geohash, at FROM locations WHERE subject_id = ?", (key.subject_id,)).fetchone()
    if row is None:
        return None
    return key.cipher.open(bytes(row[0]), geohash_aad(key)).decode(), str(row[1])


def delete(conn: Connection, subject_id: str) -> None:
    conn.execute("DELETE FROM locations WHERE subject_id = ?", (subject_id,))
