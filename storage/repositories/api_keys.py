"""API keys: `cgw_<key id>_<secret>`. Only SHA-256 of the secret is stored; the key is shown once.

Secrets are 32 random bytes, so a plain hash is enough (no password stretching needed), and
lookups by key id make verification one indexed read plus a constant-time compare.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

import msgspec

from storage.connections import Connection

__all__ = ["ApiKey", "create", "list_keys", "parse", "revoke", "verify"]

PREFIX = "cgw_"


class ApiKey(msgspec.Struct, frozen=True):
    key_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: str
    revoked_at: str | None = None


def parse(presented: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    if not presented.startswith(PREFIX):
        return None
    parts = presented[len(PREFIX) :].split("_", 1)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return parts[0], parts[1]


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def create(conn: Connection, *, name: str, scopes: tuple[str, ...], now: datetime) -> tuple[ApiKey, str]:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO api_keys (key_id, name, scopes, secret_hash, created_at) VALUES (?,?,?,?,?)",
        (key_id, name, " ".join(scopes), _hash(secret), now.isoformat()),
    )
    return ApiKey(key_id, name, scopes, now.isoformat()), f"{PREFIX}{key_id}_{secret}"


def verify(conn: Connection, presented: str) -> ApiKey | None:
    """The live key that `presented` proves, or None."""
    parsed = parse(presented)
    if parsed is None:
        return None
    key_id, secret = parsed
    row = conn.execute(
        "SELECT key_id, name, scopes, secret_hash, created_at FROM api_keys "
        "WHERE key_id = ? AND revoked_at IS NULL",
        (key_id,),
    ).fetchone()
    if row is None or not hmac.compare_digest(bytes(row[3]), _hash(secret)):
        return None
    return ApiKey(row[0], row[1], tuple(row[2].split()), row[4])


def live_with_scope(conn: Connection, scope: str) -> list[str]:
    """The ids of the live keys that hold `scope`."""
    rows = conn.execute(
        "SELECT key_id FROM api_keys WHERE revoked_at IS NULL AND (' ' || scopes || ' ') LIKE ?",
        (f"% {scope} %",),
    )
    return [str(r[0]) for r in rows]


def revoke(conn: Connection, key_id: str, now: datetime) -> bool:
    cur = conn.execute(
        "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
        (now.isoformat(), key_id),
    )
    return cur.rowcount == 1


def list_keys(conn: Connection) -> list[ApiKey]:
    rows = conn.execute(
        "SELECT key_id, name, scopes, created_at, revoked_at FROM api_keys ORDER BY created_at"
    )
    return [ApiKey(r[0], r[1], tuple(r[2].split()), r[3], r[4]) for r in rows]
