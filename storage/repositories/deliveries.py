"""Per-device delivery state of a push: what was delivered already is never sent again."""

from __future__ import annotations

from datetime import datetime

from storage.db import Connection

__all__ = ["record", "states"]


def states(conn: Connection, push_id: str) -> dict[str, str]:
    """device id → status of the deliveries attempted so far."""
    return {
        str(r[0]): str(r[1])
        for r in conn.execute("SELECT device_id, status FROM deliveries WHERE push_id = ?", (push_id,))
    }


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
