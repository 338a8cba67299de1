"""Policy settings by version. Every change is a new row naming who made it; decisions record
the version they were made under, so an auditor can see the rules in force for any push."""

from __future__ import annotations

from datetime import datetime

import msgspec

from policies.settings import PolicySettings
from storage.connections import Connection

__all__ = ["PolicyVersion", "StoredVersion", "current", "newest", "put", "stored"]


class PolicyVersion(msgspec.Struct, frozen=True):
    version: int
    settings: PolicySettings
    changed_by: str
    changed_at: str | None


def current(conn: Connection) -> PolicyVersion:
    """The newest version; version 0 is the spec's defaults, before any admin change."""
    row = conn.execute(
        "SELECT version, settings, changed_by, changed_at FROM policy_versions ORDER BY version DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return PolicyVersion(0, PolicySettings(), "defaults", None)
    return PolicyVersion(int(row[0]), msgspec.json.decode(row[1], type=PolicySettings), row[2], row[3])


class StoredVersion(msgspec.Struct, frozen=True):
    """A version as its row holds it: the settings as the JSON stored when it was put in force,
    not decoded under today's `PolicySettings` (a field added since is absent, not a default)."""

    version: int
    settings: str
    changed_by: str
    changed_at: str | None


def stored(conn: Connection, version: int) -> StoredVersion | None:
    """Version `version`, superseded or not; None if there is none. Version 0 has no row: it is
    the defaults of `PolicySettings`, as this code has them."""
    if version == 0:
        return StoredVersion(0, msgspec.json.encode(PolicySettings()).decode(), "defaults", None)
    row = conn.execute(
        "SELECT version, settings, changed_by, changed_at FROM policy_versions WHERE version = ?", (version,)
    ).fetchone()
    return None if row is None else StoredVersion(int(row[0]), row[1], row[2], row[3])


def newest(conn: Connection) -> tuple[int, str | None]:
    """The newest version's number and when it was put in force, without its settings: a lookup
    at the end of the primary key. The time tells apart two settings one number has named: a
    version read inside a writer group that was then rolled back, and the one another process
    committed under that number after."""
    row = conn.execute(
        "SELECT version, changed_at FROM policy_versions ORDER BY version DESC LIMIT 1"
    ).fetchone()
    return (0, None) if row is None else (int(row[0]), row[1])


def put(conn: Connection, settings: PolicySettings, changed_by: str, now: datetime) -> PolicyVersion:
    version = current(conn).version + 1
    conn.execute(
        "INSERT INTO policy_versions (version, settings, changed_by, changed_at) VALUES (?, ?, ?, ?)",
        (version, msgspec.json.encode(settings).decode(), changed_by, now.isoformat()),
    )
    return PolicyVersion(version, settings, changed_by, now.isoformat())
