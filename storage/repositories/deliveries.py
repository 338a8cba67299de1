"""Per-device delivery state of a push: what was delivered already is never sent again."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from storage.db import Connection, in_chunks

__all__ = ["record", "states_many"]


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


def record(
    conn: Connection, push_id: str, device_id: str, adapter: str, status: str, code: str | None, now: datetime
) -> None:
    conn.execute(
        "INSERT INTO deliveries (push_id, device_id, adapter, status, attempts, last_code, updated_at) "
        "VALUES (?, ?, ?, ?, 1, ?, ?) ON CONFLICT (push_id, device_id) DO UPDATE SET "
        "status = excluded.status, attempts = deliveries.attempts + 1, last_code = excluded.last_code, "
        "updated_at = excluded.updated_at",
        (push_id, device_id, adapter, status, code, now.isoformat()),
    )
