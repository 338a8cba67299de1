"""A subject's preference choices, kept as one sealed document (time zone and quiet hours
say where and how someone lives, so none of it is stored in the clear)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from storage.connections import Connection
from storage.crypto import field_aad
from storage.directory import SubjectKey

__all__ = ["PreferenceDoc", "doc_aad", "load", "save"]


class PreferenceDoc(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Only what the user chose; anything unset falls back to the gateway's defaults."""

    timezone: str | None = None
    locale: str | None = None
    topics: dict[str, bool] = {}
    quiet_start: str | None = None
    quiet_end: str | None = None
    max_per_week: int | None = None


def doc_aad(key: SubjectKey) -> bytes:
    return field_aad("preferences", "doc", key.subject_id, key.subject_id)


def load(conn: Connection, key: SubjectKey) -> PreferenceDoc:
    row = conn.execute("SELECT doc FROM preferences WHERE subject_id = ?", (key.subject_id,)).fetchone()
    if row is None:
        return PreferenceDoc()
    return msgspec.json.decode(key.cipher.open(bytes(row[0]), doc_aad(key)), type=PreferenceDoc)


def save(conn: Connection, key: SubjectKey, doc: PreferenceDoc, now: datetime) -> None:
    sealed = key.cipher.seal(msgspec.json.encode(doc), doc_aad(key))
    conn.execute(
        "INSERT INTO preferences (subject_id, doc, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (subject_id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
        (key.subject_id, sealed, now.isoformat()),
    )
