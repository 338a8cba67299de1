"""Migrations on a database that already holds data: what an upgrade finds must survive it.

Each test builds a real SQLCipher file at the migration before the one under test, writes rows
the way the repositories do, then lets `migrate` finish the list, as a restarted gateway would.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

from storage import outbox
from storage.db import Connection, connect
from storage.migrations import DATA_MIGRATIONS, migrate

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
ROW = {
    "key_id": "key_1", "fingerprint": b"f" * 32, "topic": "transactional", "outcome": "queued",
    "status": "queued", "reasons": "[]", "allowed_by": "[]", "expires_at": "2026-12-03T10:00:00+00:00",
    "created_at": NOW.isoformat(), "updated_at": NOW.isoformat(), "policy_version": 1,
}  # fmt: skip


def _push(conn: Connection, push_id: str, campaign_id: str | None) -> None:
    row = {**ROW, "push_id": push_id, "idempotency_key": push_id, "campaign_id": campaign_id}
    columns = ", ".join(row)
    conn.execute(
        f"INSERT INTO pushes ({columns}) VALUES ({', '.join('?' * len(row))})",  # noqa: S608
        tuple(row.values()),
    )


def test_fewer_pages_per_commit_keeps_the_queue_and_the_campaign_index(tmp_path: Path) -> None:
    path, key = tmp_path / "gateway.db", secrets.token_bytes(32)
    conn = connect(path, key)
    before = [m for m in DATA_MIGRATIONS if m[0] != "0010_fewer_pages_per_commit"]
    migrate(conn, before)
    conn.execute("BEGIN")
    _push(conn, "psh_1", None)
    _push(conn, "psh_2", "cmp_1")
    outbox.enqueue_many(conn, [("psh_1", NOW), ("psh_2", NOW)])
    conn.execute(
        "UPDATE outbox SET lease_owner = 'w1', lease_until = 'later', attempts = 2 WHERE push_id = 'psh_2'"
    )
    conn.execute("COMMIT")

    assert migrate(conn, DATA_MIGRATIONS) == ["0010_fewer_pages_per_commit"]

    assert sorted(conn.execute("SELECT push_id, lease_owner, lease_until, attempts FROM outbox")) == [
        ("psh_1", None, None, 0),
        ("psh_2", "w1", "later", 2),
    ]
    assert outbox.held_among(conn, ["psh_1", "psh_2"], "w1") == {"psh_2"}
    (table,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'outbox'").fetchone()
    assert "WITHOUT ROWID" in table
    plan = " ".join(
        str(step[3])
        for step in conn.execute(
            "EXPLAIN QUERY PLAN SELECT count(*) FROM pushes WHERE campaign_id = ?", ("cmp_1",)
        )
    )
    assert "idx_pushes_campaign_id_variant" in plan
    assert conn.execute("SELECT count(*) FROM pushes WHERE campaign_id = ?", ("cmp_1",)).fetchone() == (1,)
    due = conn.execute("EXPLAIN QUERY PLAN SELECT push_id FROM outbox WHERE due_at <= ?", ("x",)).fetchall()
    assert "idx_outbox_due_at" in " ".join(str(step[3]) for step in due)
    assert migrate(conn, DATA_MIGRATIONS) == []  # recorded: a second start changes nothing
    conn.close()
