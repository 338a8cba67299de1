"""SQL of a campaign's statistics: counts per variant of its pushes, their engagement events,
complaints and opt-outs after receipt.

Pushes without a variant are counted under `unnamed`, the name the caller gives them.
"""

from __future__ import annotations

import msgspec

from storage.connections import Connection

__all__ = [
    "EventCount",
    "OutcomeCount",
    "VariantCount",
    "complaint_counts",
    "event_counts",
    "opted_out_after_receipt_counts",
    "outcome_counts",
]


class OutcomeCount(msgspec.Struct, frozen=True):
    """Pushes of one variant with one outcome, status and set of reasons; `final_reasons` only
    for those dispatch rejected."""

    variant: str
    outcome: str
    status: str
    reasons: str | None
    final_reasons: str | None
    n: int


class EventCount(msgspec.Struct, frozen=True):
    variant: str
    type: str
    n: int


class VariantCount(msgspec.Struct, frozen=True):
    variant: str
    n: int


def outcome_counts(conn: Connection, campaign_id: str, unnamed: str) -> list[OutcomeCount]:
    rows = conn.execute(
        "SELECT coalesce(variant, ?), outcome, status, reasons, "
        "CASE WHEN status = 'rejected' THEN final_reasons END, count(*) FROM pushes "
        "WHERE campaign_id = ? GROUP BY 1, 2, 3, 4, 5",
        (unnamed, campaign_id),
    )
    return [OutcomeCount(*row) for row in rows]


def event_counts(conn: Connection, campaign_id: str, unnamed: str) -> list[EventCount]:
    rows = conn.execute(
        # Delivered pushes only, like the complaints below: an event may come from a device that
        # has a push still on its way to another, and rates are over deliveries.
        "SELECT coalesce(p.variant, ?), e.type, count(*) FROM push_events e "
        "JOIN pushes p ON p.push_id = e.push_id WHERE p.campaign_id = ? AND p.status = 'delivered' "
        "GROUP BY 1, 2",
        (unnamed, campaign_id),
    )
    return [EventCount(*row) for row in rows]


def complaint_counts(conn: Connection, campaign_id: str, unnamed: str) -> list[VariantCount]:
    """Complained-about pushes per variant, one recipient complaining twice about one push once."""
    rows = conn.execute(
        # Only complaints about delivered pushes: a user may complain about a push still queued,
        # and counting it would make the rate over deliveries exceed 1.
        "SELECT coalesce(c.variant, ?), count(DISTINCT c.push_id) FROM complaints c "
        "JOIN pushes p ON p.push_id = c.push_id "
        "WHERE c.campaign_id = ? AND p.status = 'delivered' GROUP BY 1",
        (unnamed, campaign_id),
    )
    return [VariantCount(*row) for row in rows]


def opted_out_after_receipt_counts(conn: Connection, campaign_id: str, unnamed: str) -> list[VariantCount]:
    """Delivered pushes per variant whose recipient withdrew marketing consent after receipt."""
    rows = conn.execute(
        # Pushes are counted, not people, as `delivered` is: the rate is over deliveries, and a
        # variant sending three pushes a person looked three times better by it. Marked on the
        # push when the withdrawal is written (`pushes.mark_opted_out`), so an erasure or a later
        # grant takes none back.
        "SELECT coalesce(variant, ?), count(*) FROM pushes "
        "WHERE campaign_id = ? AND status = 'delivered' AND opted_out = 1 GROUP BY 1",
        (unnamed, campaign_id),
    )
    return [VariantCount(*row) for row in rows]
