"""A campaign paused while a round of it is sending stops the round's sends not yet started.

A round decides its pushes at its claim; its sends then wait for the provider's connections.
Paused by an operator (answered 200, `paused`) while the first of five sends was held, the
campaign still had all five sent and `delivered`. Each send now asks, as it starts, whether the
campaign has been paused since its push was decided; one that would start after the pause is
not made, and its push's next claim ends it `rejected` (`campaign_paused`), as it ends those
still waiting in the outbox.
"""

from __future__ import annotations

from test_dispatch_quiet_mid_round import settings  # noqa: F401 (the fixture: one connection, the relay)
from test_dispatch_rules import SECRET, World, world  # noqa: F401 (the fixture)

from clients.delivery import WebhookAdapter, WebhookConfig
from gateway.services.dispatch import Dispatcher
from gateway.settings import Secret

USERS = ("ana", "bo", "cy", "di", "ed")


def test_a_pause_answered_mid_round_stops_the_sends_still_to_start(world: World) -> None:  # noqa: F811
    operator = world.as_key("campaigns:write")
    created = world.client.post(
        "/v1/campaigns", json={"name": "Winter", "topic": "promotions"}, headers=operator
    )
    assert created.status_code == 201, created.text
    cid = created.json()["campaign_id"]
    for user in USERS:
        world.user(user, platform="webhook")
    pushes = [world.submit(user, campaign_id=cid)["push_id"] for user in USERS]
    paused: list[int] = []

    def pause_during_the_first_send() -> None:
        if not paused:  # on the relay's thread, while the gateway's loop waits for this answer
            answer = world.client.post(f"/v1/campaigns/{cid}/pause", headers=operator)
            paused.append(answer.status_code)

    world.hook.before_answer = pause_during_the_first_send
    rt, portal = world.runtime, world.client.blocking_portal
    adapter = WebhookAdapter(WebhookConfig(url=world.hook.url, secret=Secret(SECRET), connections=1))
    worker = Dispatcher(rt.store, rt.clock, rt.settings, rt.policy, rt.metrics, {"webhook": adapter})
    try:
        portal.call(worker.run_once, "worker-a", 256)
        assert paused == [200]
        assert len(world.hook.keys) == 1  # the send already under way when the pause came
        world.clock.advance(seconds=5)
        portal.call(worker.run_once, "worker-a", 256)
    finally:
        portal.call(adapter.aclose)
    ends = [world.read(push_id) for push_id in pushes]
    assert [e["status"] for e in ends] == ["delivered"] + ["rejected"] * 4
    assert all([r["code"] for r in e["reasons"]] == ["campaign_paused"] for e in ends[1:])
    assert len(world.hook.keys) == 1
