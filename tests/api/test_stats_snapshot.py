"""Campaign statistics are read from one snapshot of the database.

The counts come from four queries over pushes, events, complaints and consents. Read one after
another, each saw the newest commit: a push delivered and opened between the first and the
second count showed more opens than deliveries, and the A/B comparison then failed on a rate
above 1 (a 500). Here a write lands between exactly those two queries: SQLite's trace callback
fires on the reader as each statement starts, and commits the write from the same thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import audience
from test_engagement_stats import batch, create_campaign, item

from gateway.clock import system_clock
from gateway.runtime import Runtime
from storage.connections import Connection

Client = TestClient[Litestar]
KeyHeaders = Callable[..., Headers]


def test_a_push_delivered_and_opened_between_two_counts_is_not_half_seen(
    client: Client, runtime: Runtime, as_key: KeyHeaders
) -> None:
    cid = create_campaign(client, as_key("campaigns:write"))
    users = audience(client, runtime, "snap", 2)
    queued = batch(
        client, as_key("pushes:write"), [item(f"snap-{u}", u, campaign_id=cid, variant="b") for u in users]
    )
    push_ids = [answer["push_id"] for answer in queued["results"]]
    assert queued["counts"] == {"queued": 2}

    def deliver_and_open(conn: Connection) -> None:
        at = system_clock().isoformat()
        for push_id in push_ids:
            conn.execute("UPDATE pushes SET status = 'delivered' WHERE push_id = ?", (push_id,))
            conn.execute("INSERT INTO push_events (push_id, type, at) VALUES (?, 'opened', ?)", (push_id, at))

    landed: list[str] = []

    def between_the_counts(sql: str) -> None:
        if "FROM push_events" in sql and not landed:
            landed.append(sql)
            runtime.store.data.writer.run_sync(deliver_and_open)

    reader = runtime.store.data.reader()  # this thread's: the one the stats below read through
    reader.set_trace_callback(between_the_counts)
    try:
        before = runtime.stats.compute(cid, "open_rate", None)
    finally:
        reader.set_trace_callback(None)
    assert landed, "the write was not made between the counts"
    seen = before.variants["b"]
    assert (seen.delivered, seen.opened) == (0, 0)  # all from before the write, not half of it

    after: Any = runtime.stats.compute(cid, "open_rate", None).variants["b"]
    assert (after.delivered, after.opened, after.rates["open_rate"]) == (2, 2, 1.0)
