"""Campaigns: a name, one topic, and whether they may send (paused by an operator or by
the complaint-rate rule)."""

from __future__ import annotations

import secrets
from datetime import datetime

import msgspec

from storage.db import Connection

__all__ = ["CampaignRow", "create", "delivered_count", "get", "set_status"]


class CampaignRow(msgspec.Struct, frozen=True):
    campaign_id: str
    name: str
    topic: str
    status: str
    created_by: str
    created_at: str
    paused_at: str | None
    pause_reason: str | None


def create(conn: Connection, name: str, topic: str, created_by: str, now: datetime) -> CampaignRow:
    row = CampaignRow(
        "cmp_" + secrets.token_hex(8), name, topic, "active", created_by, now.isoformat(), None, None
    )
    conn.execute(
        "INSERT INTO campaigns (campaign_id, name, topic, status, created_by, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (row.campaign_id, name, topic, row.status, created_by, row.created_at),
    )
    return row


def get(conn: Connection, campaign_id: str) -> CampaignRow | None:
    row = conn.execute(
        "SELECT campaign_id, name, topic, status, created_by, created_at, paused_at, pause_reason "
        "FROM campaigns WHERE campaign_id = ?",
        (campaign_id,),
    ).fetchone()
    return None if row is None else CampaignRow(*row)


def set_status(conn: Connection, campaign_id: str, status: str, now: datetime, reason: str | None) -> bool:
    cur = conn.execute(
        "UPDATE campaigns SET status = ?, paused_at = ?, pause_reason = ? WHERE campaign_id = ?",
        (status, now.isoformat() if status == "paused" else None, reason, campaign_id),
    )
    return cur.rowcount == 1


def delivered_count(conn: Connection, campaign_id: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pushes WHERE campaign_id = ? AND status = 'delivered'", (campaign_id,)
    ).fetchone()
    return int(row[0])
