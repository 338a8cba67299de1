"""A push that expires while its round's sends wait for a connection is not sent after it.

The round's claim checks each push's expiry, but a round holds up to 256 pushes of up to ten
devices each over `worker_concurrency` connections, so a send may start most of a lease later.
It did start, after the push had expired, and the push ended `delivered`: the relay got a push
the sender had asked to be dropped by then (its body carries no expiry), and FCM, APNs and Web
Push an expiry already past. Here one connection, a relay taking 1.5 s, a push of two devices
and a 1 s time to live: the second device's send would start after the expiry.
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
        data_dir=data_dir, worker_enabled=False, worker_concurrency=1, delivery_max_attempts=1,
        delivery_webhook_url=hook.url, delivery_webhook_secret=Secret(SECRET),
    )  # fmt: skip


@pytest.mark.parametrize(("first_answer", "ends"), [(503, "expired"), (200, "delivered")])
def test_a_send_that_would_start_after_the_push_expired_is_not_made(
    world: World,  # noqa: F811
    first_answer: int,
    ends: str,
) -> None:
    world.user("bo", platform="webhook")
    device = {"platform": "webhook", "token": "relay-device-second"}
    assert world.client.post("/v1/me/devices", json=device, headers=world.as_user("bo")).status_code == 201
    world.hook.answers = [(first_answer, {})]
    world.hook.before_answer = lambda: time.sleep(1.5)
    rt, portal = world.runtime, world.client.blocking_portal
    adapter = WebhookAdapter(WebhookConfig(url=world.hook.url, secret=Secret(SECRET), connections=1))
    worker = Dispatcher(rt.store, rt.clock, rt.settings, rt.policy, rt.metrics, {"webhook": adapter})
    push_id = world.submit("bo", topic="transactional", ttl_seconds=1)["push_id"]
    try:
        for _ in range(5):
            portal.call(worker.run_once, "worker-a", 256)
            if world.read(push_id)["status"] in ("expired", "delivered", "failed"):
                break
    finally:
        portal.call(adapter.aclose)
    assert len(world.hook.keys) == 1  # the first device only: the second's send would start late
    assert world.read(push_id)["status"] == ends
