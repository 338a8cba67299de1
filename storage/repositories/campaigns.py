"""Campaigns: a name, one topic, and whether they may send (paused by an operator or by
the complaint-rate rule).

`pause_rule` names the rule that paused a campaign (NULL for a pause by hand, `operator` for
one an operator made by hand): only an operator may lift the rule's pause, or an operator's.
`resumed_at` is when an operator last lifted the rule's pause: from then on the rule judges
only what happened after it, so that resume holds until the campaign earns a new pause. A pause
by hand (an operator's too) and its resume leave the rule's window alone:
were they to reset it, pausing and resuming every 199 deliveries would keep the rule from
ever judging the campaign.

`paused_through` is the last push stored (its rowid in `pushes`) when the campaign was last
paused, by hand or by the rule, and stays through resumes: a push decided before the pause is
stopped when dispatch reaches it, even after a resume (a pause says the content is unwelcome;
the sender submits again).

`delivered_since_resume` counts the campaign's pushes delivered since `resumed_at` (or since
creation): the rule reads it at each round of deliveries, where counting the campaign's push
rows would read all of them each time. Dispatch adds a round's deliveries in the writer unit
that marks the pushes `delivered`; lifting the rule's pause sets it back to 0 in the unit that
sets `resumed_at`.
"""

from __future__ import annotations

import secrets
from datetime import datetime

import msgspec

from storage.connections import Connection

__all__ = [
    "COMPLAINT_RATE",
    "OPERATOR",
    "CampaignRow",
    "complained_of",
    "count_delivery",
    "create",
    "get",
    "pause",
    "resume",
]

COMPLAINT_RATE = "complaint_rate"
"""The `pause_rule` of a campaign paused by the complaint-rate rule."""
OPERATOR = "operator"
"""The `pause_rule` of a campaign an operator (`admin`) paused by hand: a pause by hand in all but
who may lift it. Liftable by any `campaigns:write` key, it was undone by another service's key
after an operator paused the campaigns a leaked key had submitted to."""

_COLUMNS = (
    "campaign_id, name, topic, status, created_by, created_at, paused_at, pause_reason, "
    "pause_rule, resumed_at, delivered_since_resume, paused_through"
)


class CampaignRow(msgspec.Struct, frozen=True):
    campaign_id: str
    name: str
    topic: str
    status: str
    created_by: str
    created_at: str
    paused_at: str | None
    pause_reason: str | None
    pause_rule: str | None
    resumed_at: str | None
    delivered_since_resume: int
    paused_through: int | None = None

    def stops(self, push_rowid: int) -> bool:
        """Whether a push of the campaign (its rowid in `pushes`) may no longer go out: the
        campaign is paused, or was paused since the push was decided."""
        return self.status == "paused" or (
            self.paused_through is not None and push_rowid <= self.paused_through
        )


def create(conn: Connection, name: str, topic: str, created_by: str, now: datetime) -> CampaignRow:
    row = CampaignRow(
        "cmp_" + secrets.token_hex(8), name, topic, "active", created_by, now.isoformat(),
        paused_at=None, pause_reason=None, pause_rule=None, resumed_at=None, delivered_since_resume=0,
    )  # fmt: skip
    conn.execute(
        "INSERT INTO campaigns (campaign_id, name, topic, status, created_by, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (row.campaign_id, name, topic, row.status, created_by, row.created_at),
    )
    return row


def get(conn: Connection, campaign_id: str) -> CampaignRow | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM campaigns WHERE campaign_id = ?",  # noqa: S608
        (campaign_id,),
    ).fetchone()
    return None if row is None else CampaignRow(*row)


def pause(conn: Connection, campaign_id: str, now: datetime, reason: str, rule: str | None = None) -> bool:
    """Pause an active campaign; False if there is none (a paused one keeps why it was paused).

    The complaint-rate rule's pause also takes over a pause by hand, an operator's too, with its
    own time and evidence, so that only an operator may lift it; it never replaces itself."""
    takes = (
        "status = 'active'"
        if rule != COMPLAINT_RATE
        else f"(status = 'active' OR pause_rule IS NULL OR pause_rule = '{OPERATOR}')"
    )
    cur = conn.execute(
        "UPDATE campaigns SET status = 'paused', paused_at = ?, pause_reason = ?, pause_rule = ?, "  # noqa: S608
        f"paused_through = (SELECT coalesce(max(rowid), 0) FROM pushes) WHERE campaign_id = ? AND {takes}",
        (now.isoformat(), reason, rule, campaign_id),
    )
    return cur.rowcount == 1


def resume(conn: Connection, campaign_id: str, now: datetime) -> bool:
    """Resume a paused campaign; False if there is none.

    Lifting the complaint-rate rule's pause starts the rule's window again at `now` (its count
    of deliveries from 0), as the rule then judges only what happens after that resume. Lifting
    a pause by hand keeps the window: the counts go on from where they were. (In SQLite's
    UPDATE every expression reads the row as it was, so the CASEs see the old `pause_rule`.)"""
    cur = conn.execute(
        "UPDATE campaigns SET status = 'active', paused_at = NULL, pause_reason = NULL, pause_rule = NULL, "
        "resumed_at = CASE WHEN pause_rule = ? THEN ? ELSE resumed_at END, "
        "delivered_since_resume = CASE WHEN pause_rule = ? THEN 0 ELSE delivered_since_resume END "
        "WHERE campaign_id = ? AND status = 'paused'",
        (COMPLAINT_RATE, now.isoformat(), COMPLAINT_RATE, campaign_id),
    )
    return cur.rowcount == 1


def count_delivery(conn: Connection, campaign_id: str, delivered: int = 1) -> None:
    """More pushes of the campaign delivered: counted in the unit that marks them `delivered` (a
    delivered push never changes status again)."""
    if delivered:
        conn.execute(
            "UPDATE campaigns SET delivered_since_resume = delivered_since_resume + ? WHERE campaign_id = ?",
            (delivered, campaign_id),
        )


def complained_of(conn: Connection) -> list[str]:
    """The campaigns with complaints that the complaint-rate rule has not paused: the ones a
    change of its threshold may put over it."""
    rows = conn.execute(
        "SELECT campaign_id FROM campaigns WHERE (pause_rule IS NULL OR pause_rule != ?) "
        "AND EXISTS (SELECT 1 FROM complaints c WHERE c.campaign_id = campaigns.campaign_id) "
        "ORDER BY campaign_id",
        (COMPLAINT_RATE,),
    )
    return [str(r[0]) for r in rows]
