"""What a delivery round writes, gathered from each push's step and written one statement per kind.

Deciding and settling a push only read; what they conclude is a `PushWrites`. The round's are
written together: each `UPDATE`, `INSERT` and `DELETE` an `executemany` over the round's rows,
instead of a statement (and a savepoint) per push. The same function writes one push alone,
which is how the dispatcher retries a round whose writes failed (docs/performance-history.md, "Bulk
writes per round, and rounds of 256").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

import msgspec

from gateway.services.campaign_rule import count_deliveries
from gateway.services.policy import PolicySource
from storage import outbox
from storage.connections import Connection
from storage.outbox import Reschedule
from storage.repositories import deliveries, devices, pushes
from storage.repositories.deliveries import DeliveryRecord
from storage.repositories.pushes import StatusChange

__all__ = ["PushWrites", "write"]


class PushWrites(msgspec.Struct, kw_only=True):
    """One push's writes in a round. `ended` is the end status it reaches and `reasons` the codes
    of the verdict it is written with, both counted in the metrics once written;
    `campaign_delivered` the campaign whose deliveries it adds to."""

    push_id: str
    status: StatusChange | None = None
    finish: bool = False
    reschedule: Reschedule | None = None
    delivered: tuple[DeliveryRecord, ...] = ()
    disable: tuple[str, ...] = ()
    campaign_delivered: str | None = None
    ended: str | None = None
    reasons: tuple[str, ...] = ()
    put_back: bool = False  # the claim undone, the push unsent (`Dispatcher.start_round`'s `after`)


def write(
    conn: Connection, owner: str, writes: Sequence[PushWrites], now: datetime, policy: PolicySource
) -> None:
    """Write the pushes' changes; outbox rows only where `owner` still holds their lease."""
    pushes.set_statuses(conn, (w.status for w in writes if w.status is not None), now)
    outbox.finish_many(conn, [w.push_id for w in writes if w.finish], owner)
    outbox.reschedule_many(conn, [w.reschedule for w in writes if w.reschedule is not None], owner)
    deliveries.record_many(conn, [r for w in writes for r in w.delivered], now)
    for device_id in dict.fromkeys(d for w in writes for d in w.disable):
        devices.set_status(conn, device_id, "disabled", now)
    # Judged as at each delivery: the one that reaches the minimum may be what pauses the campaign.
    # By the policy in force now: another process may have changed it since the round's claim
    # (its own rule judged the campaigns then, before these deliveries were counted).
    delivered = Counter(w.campaign_delivered for w in writes if w.campaign_delivered is not None)
    settings = policy.newest(conn) if delivered else policy.settings
    for campaign_id, count in delivered.items():
        count_deliveries(conn, campaign_id, count, settings, now)
