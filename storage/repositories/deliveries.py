"""Per-device delivery state of a push: what was delivered already is never sent again."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

import msgspec

from storage.connections import Connection, in_chunks

__all__ = ["DeliveryRecord", "DeliveryRow", "all_for_subject", "reached", "record_many", "states_many"]


def states_many(conn: Connection, push_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """push id → device id → status of the deliveries attempted so far (every push given has an
    entry, empty when nothing was attempted)."""
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for marks, chunk in in_chunks(push_ids):
        for push_id, device_id, status in conn.execute(
            f"SELECT push_id, device_id, status FROM deliveries WHERE push_id IN ({marks})",  # noqa: S608
            chunk,
        ):
            found[push_id][device_id] = status
    return {push_id: found.get(push_id, {}) for push_id in push_ids}


def reached(conn: Connection, push_id: str) -> bool:
    """Whether a device has the push already, though it may still be on its way to another."""
    return (
        conn.execute(
            "SELECT 1 FROM deliveries WHERE push_id = ? AND status = 'delivered' LIMIT 1", (push_id,)
        ).fetchone()
        is not None
    )


class DeliveryRecord(msgspec.Struct, frozen=True, gc=False):
    """One device's result for a push: `code` is the provider's, when it gave one."""

    push_id: str
    device_id: str
    adapter: str
    status: str
    code: str | None


def record_many(conn: Connection, records: Sequence[DeliveryRecord], now: datetime) -> None:
    """A device's `delivered` stands, and its `failed` gives way to nothing but `delivered`: a
    worker whose lease ran out mid-send records its result after the push's new holder recorded
    its own, and a late timeout must not make a device that has the push look as if it still
    waited (it would be sent the push again)."""
    stamp = now.isoformat()
    conn.executemany(
        "INSERT INTO deliveries (push_id, device_id, adapter, status, attempts, last_code, updated_at) "
        "VALUES (?, ?, ?, ?, 1, ?, ?) ON CONFLICT (push_id, device_id) DO UPDATE SET "
        "status = excluded.status, attempts = deliveries.attempts + 1, last_code = excluded.last_code, "
        "updated_at = excluded.updated_at "
        "WHERE deliveries.status != 'delivered' "
        "AND (deliveries.status != 'failed' OR excluded.status = 'delivered')",
        [(r.push_id, r.device_id, r.adapter, r.status, r.code, stamp) for r in records],
    )


class DeliveryRow(msgspec.Struct, frozen=True):
    """A device's delivery record for a push, as stored."""

    push_id: str
    device_id: str
    adapter: str
    status: str
    attempts: int
    last_code: str | None
    updated_at: str


def all_for_subject(conn: Connection, subject_id: str) -> list[DeliveryRow]:
    """The per-device delivery records of the subject's pushes, by push. Joined through `pushes`,
    since a delivery row names only its push and device: the subject's pushes alone, never
    another user's. An erased subject's pushes stay, but their subject id is no one's."""
    rows = conn.execute(
        "SELECT d.push_id, d.device_id, d.adapter, d.status, d.attempts, d.last_code, d.updated_at "
        "FROM pushes p JOIN deliveries d ON d.push_id = p.push_id WHERE p.subject_id = ? "
        "ORDER BY d.push_id, d.updated_at, d.device_id",
        (subject_id,),
    )
    return [DeliveryRow(*row) for row in rows]
