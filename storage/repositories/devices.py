"""Devices: tokens sealed under the subject's key, found again by a keyed fingerprint
(derived from the same key, so it dies with it on erasure)."""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

import msgspec

from storage.crypto import field_aad
from storage.db import Connection, in_chunks
from storage.directory import SubjectKey

__all__ = ["DeviceRow", "count_active", "delete", "find", "insert", "list_for", "list_for_many", "set_status"]


class DeviceRow(msgspec.Struct, frozen=True):
    device_id: str
    platform: str
    token: str
    status: str
    created_at: str


def _aad(key: SubjectKey, device_id: str) -> bytes:
    return field_aad("devices", "token", device_id, key.subject_id)


def _fingerprint(key: SubjectKey, platform: str, token: str) -> bytes:
    """A token names a device only on its own platform: the same string elsewhere is another device."""
    return key.cipher.fingerprint(f"{platform}\0{token}".encode())


def find(conn: Connection, key: SubjectKey, platform: str, token: str) -> tuple[str, str] | None:
    """(device id, status) of this subject's device with this platform and token, if registered."""
    row = conn.execute(
        "SELECT device_id, status FROM devices WHERE subject_id = ? AND fingerprint = ?",
        (key.subject_id, _fingerprint(key, platform, token)),
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def count_active(conn: Connection, subject_id: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM devices WHERE subject_id = ? AND status = 'active'", (subject_id,)
    ).fetchone()
    return int(row[0])


def insert(conn: Connection, key: SubjectKey, platform: str, token: str, now: datetime) -> str:
    device_id = "dev_" + secrets.token_hex(12)
    conn.execute(
        "INSERT INTO devices (device_id, subject_id, platform, token, fingerprint, status, created_at) "
        "VALUES (?, ?, ?, ?, ?, 'active', ?)",
        (
            device_id,
            key.subject_id,
            platform,
            key.cipher.seal(token.encode(), _aad(key, device_id)),
            _fingerprint(key, platform, token),
            now.isoformat(),
        ),
    )
    return device_id


def list_for(conn: Connection, key: SubjectKey, *, active_only: bool = False) -> list[DeviceRow]:
    return list_for_many(conn, [key], active_only=active_only)[key.subject_id]


def list_for_many(
    conn: Connection, keys: Sequence[SubjectKey], *, active_only: bool = False
) -> dict[str, list[DeviceRow]]:
    """subject id → that subject's devices, oldest first, tokens opened (every key given has an entry)."""
    by_id = {key.subject_id: key for key in keys}
    found: dict[str, list[DeviceRow]] = defaultdict(list)
    where = " AND status = 'active'" if active_only else ""
    for marks, chunk in in_chunks(list(by_id)):
        for sid, device_id, platform, token, status, created_at in conn.execute(
            "SELECT subject_id, device_id, platform, token, status, created_at FROM devices "  # noqa: S608
            f"WHERE subject_id IN ({marks}){where} ORDER BY created_at, device_id",
            chunk,
        ):
            key = by_id[sid]
            opened = key.cipher.open(bytes(token), _aad(key, device_id)).decode()
            found[sid].append(DeviceRow(device_id, platform, opened, status, created_at))
    return {sid: found.get(sid, []) for sid in by_id}


def set_status(conn: Connection, device_id: str, status: str, now: datetime) -> None:
    conn.execute(
        "UPDATE devices SET status = ?, disabled_at = ? WHERE device_id = ?",
        (status, now.isoformat(), device_id),
    )


def delete(conn: Connection, subject_id: str, device_id: str) -> bool:
    cur = conn.execute("DELETE FROM devices WHERE subject_id = ? AND device_id = ?", (subject_id, device_id))
    return cur.rowcount == 1
