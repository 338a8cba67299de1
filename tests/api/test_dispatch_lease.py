"""A round starts no send that could outlast its lease, so a second worker never sends a push
the first is still sending.

A round claims pushes under one lease and sends them as connections free up; with a slow relay
and several devices a push, its last sends started after the lease had run out, when another
worker (`serve` beside `consent-gateway worker`) could claim the push and send it again: every
device got it twice, with no crash. Real time here: a relay answering in 1.5 s, a 3 s lease,
one connection, one push to three devices.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import WebhookRelay
from test_dispatch_rules import SECRET, World, world  # noqa: F401 (the fixture, on this module's clock)

from clients.delivery import WebhookAdapter, WebhookConfig
from gateway.services.dispatch import Dispatcher
from gateway.settings import Secret, Settings

pytestmark = pytest.mark.slow


class WallClock:
    def __call__(self) -> datetime:
        return datetime.now(UTC)


@pytest.fixture
def clock() -> WallClock:
    return WallClock()


@pytest.fixture
def settings(data_dir: Path, hook: WebhookRelay) -> Settings:
    return Settings(
        data_dir=data_dir, worker_enabled=False, worker_concurrency=1, worker_lease_seconds=3,
        delivery_webhook_url=hook.url, delivery_webhook_secret=Secret(SECRET),
    )  # fmt: skip


def test_a_second_worker_never_sends_what_the_first_is_still_sending(world: World) -> None:  # noqa: F811
    world.user("ana", platform="webhook")
    ana = world.as_user("ana")
    for i in range(2):
        device = {"platform": "webhook", "token": f"relay-device-extra-{i}"}
        assert world.client.post("/v1/me/devices", json=device, headers=ana).status_code == 201
    push_id = world.submit("ana", topic="transactional")["push_id"]
    world.hook.before_answer = lambda: time.sleep(1.5)
    rt, portal = world.runtime, world.client.blocking_portal
    relay = WebhookConfig(url=world.hook.url, secret=Secret(SECRET), connections=1)
    adapters = [WebhookAdapter(relay) for _ in range(2)]
    first, second = (
        Dispatcher(rt.store, rt.clock, rt.settings, rt.policy, rt.metrics, {"webhook": adapter})
        for adapter in adapters
    )
    try:
        running = portal.start_task_soon(first.run_once, "worker-a", 256)
        time.sleep(3.3)  # the first worker's lease is over; it may still be sending
        portal.call(second.run_once, "worker-b", 256)
        running.result(timeout=30)
        deadline = time.monotonic() + 60  # a hang fails, not waits for ever
        while world.read(push_id)["status"] != "delivered":
            assert time.monotonic() < deadline, world.read(push_id)
            portal.call(second.run_once, "worker-b", 256)  # what the first left unsent, due again
    finally:
        for adapter in adapters:
            portal.call(adapter.aclose)

    sent = Counter(world.hook.keys)
    assert len(sent) == 3
    assert set(sent.values()) == {1}, sent  # each push_id:device_id once
