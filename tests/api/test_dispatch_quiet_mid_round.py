"""A marketing push whose send would start after the user's quiet hours began is not sent then.

A round's claim decides its pushes once, but its sends share the provider's connections, so a
send may start most of a lease after that decision. Claimed at 20:59:55 and allowed, the last
of three pushes over one connection started at 21:00:01, inside the default 21:00-08:00 window,
and was delivered. Here the relay takes 3 s of the gateway's clock to answer each send; the
third push is put back unsent, deferred by its next claim to the window's end, and sent then.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import FakeClock
from support import WebhookRelay
from test_dispatch_rules import SECRET, World, world  # noqa: F401 (the fixture)

from clients.delivery import WebhookAdapter, WebhookConfig
from gateway.services.dispatch import Dispatcher
from gateway.settings import Secret, Settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 23, 20, 59, 55, tzinfo=UTC))


@pytest.fixture
def settings(data_dir: Path, hook: WebhookRelay) -> Settings:
    return Settings(
        data_dir=data_dir, worker_enabled=False, worker_concurrency=1,
        delivery_webhook_url=hook.url, delivery_webhook_secret=Secret(SECRET),
    )  # fmt: skip


@pytest.mark.parametrize("topic", ["promotions", "transactional"])
def test_a_send_starting_inside_quiet_hours_waits_for_their_end(world: World, topic: str) -> None:  # noqa: F811
    users = ("ana", "bo", "cy")
    for user in users:
        world.user(user, platform="webhook")
    pushes = [world.submit(user, topic=topic) for user in users]
    assert [p["outcome"] for p in pushes] == ["queued"] * 3

    def three_seconds_later() -> None:
        world.clock.advance(seconds=3)

    world.hook.before_answer = three_seconds_later
    rt, portal = world.runtime, world.client.blocking_portal
    adapter = WebhookAdapter(WebhookConfig(url=world.hook.url, secret=Secret(SECRET), connections=1))
    worker = Dispatcher(rt.store, rt.clock, rt.settings, rt.policy, rt.metrics, {"webhook": adapter})
    try:
        portal.call(worker.run_once, "worker-a", 256)  # sends at 20:59:55, :58, then 21:00:01
        last = pushes[-1]["push_id"]
        if topic == "transactional":  # no quiet hours: all three go
            assert len(world.hook.keys) == 3
            assert world.read(last)["status"] == "delivered"
            return
        assert len(world.hook.keys) == 2
        world.clock.advance(seconds=5)
        portal.call(worker.run_once, "worker-a", 256)
        waiting = world.read(last)
        assert (waiting["status"], waiting["deliver_after"]) == ("deferred", "2026-11-24T08:00:00Z")
        assert [r["code"] for r in waiting["reasons"]] == ["quiet_hours"]
        world.hook.before_answer = None
        world.clock.now = datetime(2026, 11, 24, 8, 0, 1, tzinfo=UTC)
        portal.call(worker.run_once, "worker-a", 256)
    finally:
        portal.call(adapter.aclose)
    assert world.read(last)["status"] == "delivered"
    assert len(world.hook.keys) == 3
