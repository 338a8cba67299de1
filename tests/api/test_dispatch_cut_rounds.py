"""A round cut short sends its devices in an order that leaves none behind for good.

Devices were sent in the same order every round, so with each round cut short after the first
two (a relay taking 1 s, a 3 s lease: `test_dispatch_lease`), the third was never tried before
the two retried ones spent the push's attempts, and it ended `failed` unsent there.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support import WebhookRelay
from test_dispatch_lease import clock  # noqa: F401 (the fixture: the wall clock)
from test_dispatch_rules import SECRET, World, world  # noqa: F401 (the fixture)

from clients.delivery import WebhookAdapter, WebhookConfig
from gateway.services.dispatch import Dispatcher
from gateway.settings import Secret, Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(data_dir: Path, hook: WebhookRelay) -> Settings:
    return Settings(
        data_dir=data_dir, worker_enabled=False, worker_concurrency=1, worker_lease_seconds=3,
        delivery_max_attempts=2, delivery_backoff_seconds=0.01,
        delivery_webhook_url=hook.url, delivery_webhook_secret=Secret(SECRET),
    )  # fmt: skip


def test_devices_a_cut_round_left_unsent_go_first_at_the_next(world: World) -> None:  # noqa: F811
    world.user("bo", platform="webhook")
    bo = world.as_user("bo")
    for i in range(2):
        device = {"platform": "webhook", "token": f"relay-device-more-{i}"}
        assert world.client.post("/v1/me/devices", json=device, headers=bo).status_code == 201
    push_id = world.submit("bo", topic="transactional")["push_id"]
    world.hook.answers = [(503, {})]
    world.hook.before_answer = lambda: time.sleep(1.0)
    rt, portal = world.runtime, world.client.blocking_portal
    adapter = WebhookAdapter(WebhookConfig(url=world.hook.url, secret=Secret(SECRET), connections=1))
    worker = Dispatcher(rt.store, rt.clock, rt.settings, rt.policy, rt.metrics, {"webhook": adapter})
    deadline = time.monotonic() + 120  # a hang fails, not waits for ever
    try:
        while world.read(push_id)["status"] not in ("failed", "delivered"):
            assert time.monotonic() < deadline, world.read(push_id)
            portal.call(worker.run_once, "worker-a", 256)
            time.sleep(0.05)
    finally:
        portal.call(adapter.aclose)
    assert len(set(world.hook.keys)) == 3  # every device tried before the push was given up


def test_a_cut_round_sends_its_pushes_in_the_order_they_were_claimed(world: World) -> None:  # noqa: F811
    """The earliest due push goes first whatever its device count: one with two devices had its
    sends started after every one-device push of the round, so with the round cut short it was
    the one left unsent, round after round while the provider stayed slow."""
    world.user("ann", platform="webhook")
    ann = world.as_user("ann")
    device = {"platform": "webhook", "token": "relay-device-ann-second"}
    assert world.client.post("/v1/me/devices", json=device, headers=ann).status_code == 201
    first = world.submit("ann", topic="transactional")["push_id"]
    for name in ("bo", "cy", "di"):
        world.user(name, platform="webhook")
        world.submit(name, topic="transactional")
    # Each answer takes 1 s, one send at a time, and a send may start until 1.5 s into the 3 s
    # lease: two sends go this round.
    world.hook.before_answer = lambda: time.sleep(1.0)
    rt, portal = world.runtime, world.client.blocking_portal
    adapter = WebhookAdapter(WebhookConfig(url=world.hook.url, secret=Secret(SECRET), connections=1))
    worker = Dispatcher(rt.store, rt.clock, rt.settings, rt.policy, rt.metrics, {"webhook": adapter})
    try:
        portal.call(worker.run_once, "worker-a", 256)
    finally:
        portal.call(adapter.aclose)
    assert [key.split(":")[0] for key in world.hook.keys] == [first, first]
    assert world.read(first)["status"] == "delivered"
