"""The outbox: one row per accepted push, written in the decision's transaction, removed
when the push reaches an end state. Workers claim due rows with a lease."""

from __future__ import annotations

from datetime import datetime

from storage.db import Connection

__all__ = ["enqueue"]


def enqueue(conn: Connection, push_id: str, due_at: datetime) -> None:
    conn.execute("INSERT INTO outbox (push_id, due_at) VALUES (?, ?)", (push_id, due_at.isoformat()))
