"""Devices: tokens sealed under the subject's key, found again by a keyed fingerprint
(derived from the same key, so it dies with it on erasure).

A Web Push token is the subscription JSON; its endpoint, not the JSON, names the device: the
same subscription comes spelled many ways, and re-subscribing may keep the endpoint with new
keys. Rows fingerprinted by the raw JSON (before the endpoint named the device) carry nothing
that tells them apart, so they are looked for by opening the subject's webpush tokens.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

import msgspec

from storage.connections import Connection, in_chunks
from storage.crypto import KeyedHash, field_aad
from storage.directory import SubjectKey

__all__ = [
    "DeviceRow",
    "Found",
    "any_untagged",
    "count_active",
    "delete",
    "earlier_spellings",
    "find",
    "insert",
    "list_for",
    "list_for_many",
    "open_token",
    "refresh",
    "registered",
    "release_elsewhere",
    "release_shared",
    "set_status",
    "tag",
    "token_tag",
    "untagged",
]


class DeviceRow(msgspec.Struct, frozen=True):
    device_id: str
    platform: str
    token: str
    status: str
    created_at: str
    disabled_at: str | None = None
    registered_at: str | None = None  # None: last registered before migration 0015


class Found(NamedTuple):
    device_id: str
    status: str
    current: bool
    """The row holds this very token under today's fingerprint; if not, `refresh` it."""
    duplicates: tuple[str, ...] = ()
    """Other rows of the same Web Push subscription, stored before its endpoint named it."""


class _Endpoint(msgspec.Struct):
    endpoint: str


def _aad(key: SubjectKey, device_id: str) -> bytes:
    return field_aad("devices", "token", device_id, key.subject_id)


def _endpoint(token: str) -> str | None:
    try:
        return msgspec.json.decode(token, type=_Endpoint).endpoint
    except (msgspec.DecodeError, RecursionError):
        return None


def _name(platform: str, token: str) -> bytes:
    """A token names a device only on its own platform: the same string elsewhere is another device.
    A Web Push subscription is named by its endpoint (a token that has none, by itself)."""
    name = (_endpoint(token) if platform == "webpush" else None) or token
    return f"{platform}\0{name}".encode()


def _fingerprint(key: SubjectKey, platform: str, token: str) -> bytes:
    return key.cipher.fingerprint(_name(platform, token))


def token_tag(tags: KeyedHash, platform: str, token: str) -> bytes:
    """The device's name under the gateway's key (`Store.device_tags`), the same whichever
    subject registers it: how one user's registration finds another's of the same device."""
    return tags.digest(_name(platform, token))


def open_token(key: SubjectKey, device_id: str, sealed: bytes) -> str:
    return key.cipher.open(bytes(sealed), _aad(key, device_id)).decode()


def earlier_spellings(platform: str, token: str) -> tuple[str, ...]:
    """Other spellings a row stored before may hold this token in: an `apns` token is kept in
    lower case since registration made it so, and one given in upper case before is the same
    device (found by this subject's registration, released by another's)."""
    if platform == "apns" and token.upper() != token:
        return (token.upper(),)
    return ()


def find(conn: Connection, key: SubjectKey, platform: str, token: str) -> Found | None:
    """This subject's device that `token` names on `platform`, if registered."""
    row = conn.execute(
        "SELECT device_id, status, token FROM devices WHERE subject_id = ? AND fingerprint = ?",
        (key.subject_id, _fingerprint(key, platform, token)),
    ).fetchone()
    if row is not None:
        device_id, status, sealed = str(row[0]), str(row[1]), row[2]
        # Elsewhere the fingerprint is the token's own; a subscription's keys may have changed.
        current = platform != "webpush" or open_token(key, device_id, sealed) == token
        return Found(device_id, status, current)
    for spelling in earlier_spellings(platform, token):
        row = conn.execute(
            "SELECT device_id, status FROM devices WHERE subject_id = ? AND fingerprint = ?",
            (key.subject_id, _fingerprint(key, platform, spelling)),
        ).fetchone()
        if row is not None:
            return Found(str(row[0]), str(row[1]), False)
    return _find_stored_before(conn, key, token) if platform == "webpush" else None


def _find_stored_before(conn: Connection, key: SubjectKey, token: str) -> Found | None:
    """Rows fingerprinted by the raw JSON with this endpoint: the oldest active one (else the
    oldest) is the device, the others its duplicates. (A row stored since with this endpoint
    would have been found by its fingerprint.)"""
    endpoint = _endpoint(token)
    if endpoint is None:
        return None
    same = [
        (str(device_id), str(status))
        for device_id, status, sealed in conn.execute(
            "SELECT device_id, status, token FROM devices WHERE subject_id = ? AND platform = 'webpush' "
            "ORDER BY created_at, device_id",
            (key.subject_id,),
        )
        if _endpoint(open_token(key, str(device_id), sealed)) == endpoint
    ]
    if not same:
        return None
    device_id, status = next((row for row in same if row[1] == "active"), same[0])
    return Found(device_id, status, False, tuple(other for other, _ in same if other != device_id))


def count_active(conn: Connection, subject_id: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM devices WHERE subject_id = ? AND status = 'active'", (subject_id,)
    ).fetchone()
    return int(row[0])


def insert(conn: Connection, key: SubjectKey, platform: str, token: str, tag: bytes, now: datetime) -> str:
    device_id = "dev_" + secrets.token_hex(12)
    conn.execute(
        "INSERT INTO devices (device_id, subject_id, platform, token, fingerprint, token_tag, status, "
        "created_at, registered_at) VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?)",
        (
            device_id,
            key.subject_id,
            platform,
            key.cipher.seal(token.encode(), _aad(key, device_id)),
            _fingerprint(key, platform, token),
            tag,
            now.isoformat(),
            now.isoformat(),
        ),
    )
    return device_id


def registered(conn: Connection, device_id: str, tag: bytes, now: datetime) -> None:
    """The app registered this device's token again: it holds the device now."""
    conn.execute(
        "UPDATE devices SET token_tag = ?, registered_at = ? WHERE device_id = ?",
        (tag, now.isoformat(), device_id),
    )


def any_untagged(conn: Connection) -> bool:
    """Whether a row stored before devices had tags is left (a scan of the table when none is)."""
    return conn.execute("SELECT 1 FROM devices WHERE token_tag IS NULL LIMIT 1").fetchone() is not None


def untagged(conn: Connection, after: str, limit: int) -> list[tuple[str, str, str, bytes]]:
    """(device id, subject id, platform, sealed token) of untagged rows after `after`, by id."""
    rows = conn.execute(
        "SELECT device_id, subject_id, platform, token FROM devices "
        "WHERE token_tag IS NULL AND device_id > ? ORDER BY device_id LIMIT ?",
        (after, limit),
    )
    return [(str(d), str(s), str(p), bytes(t)) for d, s, p, t in rows]


def tag(
    conn: Connection, tags: KeyedHash, keys: Mapping[str, SubjectKey], rows: list[tuple[str, str, str, bytes]]
) -> list[bytes]:
    """Give these rows their tags, each token opened under its subject's key; returns the tags
    given (a row whose subject's key is not among `keys` is left as it is)."""
    updates = [
        (token_tag(tags, platform, open_token(keys[subject_id], device_id, sealed)), device_id)
        for device_id, subject_id, platform, sealed in rows
        if subject_id in keys
    ]
    conn.executemany("UPDATE devices SET token_tag = ? WHERE device_id = ? AND token_tag IS NULL", updates)
    return [given for given, _ in updates]


class _Holder(NamedTuple):
    device_id: str
    subject_id: str
    registered_at: str | None


def release_shared(conn: Connection, tags: Sequence[bytes], now: datetime) -> int:
    """Of each of these devices still active for several subjects, the subject whose app last
    registered it keeps it. When none has since registration times were kept (so every pair
    found at the first start after the upgrade: it tags before serving), or two registered it at
    the same instant, nobody can tell who holds the phone, and all are disabled: the holder's app
    gets it back at its next registration, and a phone that may be someone else's gets no pushes
    meanwhile. Returns how many were disabled."""
    holders: dict[bytes, list[_Holder]] = defaultdict(list)
    for marks, chunk in in_chunks(sorted(set(tags))):
        for tag_, device_id, subject_id, registered_at in conn.execute(
            "SELECT token_tag, device_id, subject_id, registered_at FROM devices "  # noqa: S608
            f"WHERE status = 'active' AND token_tag IN ({marks})",
            chunk,
        ):
            holders[bytes(tag_)].append(_Holder(str(device_id), str(subject_id), registered_at))
    released = []
    for rows in holders.values():
        if len({row.subject_id for row in rows}) < 2:
            continue
        last = max((row.registered_at for row in rows if row.registered_at is not None), default=None)
        latest = {row.subject_id for row in rows if last is not None and row.registered_at == last}
        keeper = latest.pop() if len(latest) == 1 else None
        released += [(now.isoformat(), row.device_id) for row in rows if row.subject_id != keeper]
    conn.executemany("UPDATE devices SET status = 'disabled', disabled_at = ? WHERE device_id = ?", released)
    return len(released)


def release_elsewhere(conn: Connection, tag: bytes, subject_id: str, now: datetime) -> int:
    """Disable the device's registrations by other subjects: it is this subject's now. Returns
    how many were active."""
    cur = conn.execute(
        "UPDATE devices SET status = 'disabled', disabled_at = ? "
        "WHERE token_tag = ? AND subject_id != ? AND status = 'active'",
        (now.isoformat(), tag, subject_id),
    )
    return cur.rowcount


def refresh(conn: Connection, key: SubjectKey, device_id: str, platform: str, token: str) -> None:
    """The device's token is now `token` (the same device: a subscription's new keys, or today's
    form of a row stored before), sealed and fingerprinted afresh."""
    conn.execute(
        "UPDATE devices SET token = ?, fingerprint = ? WHERE subject_id = ? AND device_id = ?",
        (
            key.cipher.seal(token.encode(), _aad(key, device_id)),
            _fingerprint(key, platform, token),
            key.subject_id,
            device_id,
        ),
    )


def list_for(conn: Connection, key: SubjectKey) -> list[DeviceRow]:
    return list_for_many(conn, [key])[key.subject_id]


def list_for_many(
    conn: Connection, keys: Sequence[SubjectKey], *, active_only: bool = False
) -> dict[str, list[DeviceRow]]:
    """subject id → that subject's devices, oldest first, tokens opened (every key given has an entry)."""
    by_id = {key.subject_id: key for key in keys}
    found: dict[str, list[DeviceRow]] = defaultdict(list)
    where = " AND status = 'active'" if active_only else ""
    for marks, chunk in in_chunks(list(by_id)):
        for sid, device_id, platform, token, status, created_at, disabled_at, registered_at in conn.execute(
            "SELECT subject_id, device_id, platform, token, status, created_at, disabled_at, "  # noqa: S608
            f"registered_at FROM devices WHERE subject_id IN ({marks}){where} ORDER BY created_at, device_id",
            chunk,
        ):
            opened = open_token(by_id[sid], device_id, token)
            row = DeviceRow(device_id, platform, opened, status, created_at, disabled_at, registered_at)
            found[sid].append(row)
    return {sid: found.get(sid, []) for sid in by_id}


def active_owners(conn: Connection, device_ids: Collection[str]) -> dict[str, tuple[str, str | None]]:
    """device id → (its subject's id, when its token was last registered), for those of
    `device_ids` still active: what a send decided earlier compares with what it read then, so
    that one to a device removed, disabled, taken by another user or given new keys (a Web Push
    subscription's, which the old message no longer decrypts under) does not start."""
    found: dict[str, tuple[str, str | None]] = {}
    for marks, chunk in in_chunks(sorted(set(device_ids))):
        for device_id, subject_id, registered_at in conn.execute(
            "SELECT device_id, subject_id, registered_at FROM devices "  # noqa: S608
            f"WHERE device_id IN ({marks}) AND status = 'active'",
            chunk,
        ):
            found[device_id] = (subject_id, registered_at)
    return found


def set_status(conn: Connection, device_id: str, status: str, now: datetime) -> None:
    """`disabled_at` says when a device stopped getting pushes: none while it is active."""
    disabled_at = None if status == "active" else now.isoformat()
    conn.execute(
        "UPDATE devices SET status = ?, disabled_at = ? WHERE device_id = ?", (status, disabled_at, device_id)
    )


def delete(conn: Connection, subject_id: str, device_id: str) -> bool:
    cur = conn.execute("DELETE FROM devices WHERE subject_id = ? AND device_id = ?", (subject_id, device_id))
    return cur.rowcount == 1
