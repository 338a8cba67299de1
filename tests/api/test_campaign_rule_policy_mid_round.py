"""The complaint-rate rule counts a round's deliveries by the policy in force when they are
written, not the one the round was claimed under.

`PUT /v1/admin/policy` judges every complained-of campaign by the new threshold at once; a
`consent-gateway worker` beside `serve` still had the old one for the round it was sending, and
counted its deliveries by that. A threshold lowered while the delivery that reaches it was on
its way never paused the campaign: judged again at the next, the rate had fallen under it.
"""

from __future__ import annotations

from test_dispatch_quiet_mid_round import settings  # noqa: F401 (the fixture: one connection, the relay)
from test_dispatch_rules import SECRET, World, world  # noqa: F401 (the fixture)

from clients.delivery import WebhookAdapter, WebhookConfig
from gateway.services.dispatch import Dispatcher
from gateway.services.policy import PolicySource
from gateway.settings import Secret


def test_a_threshold_lowered_by_another_process_mid_round_counts_that_rounds_deliveries(
    world: World,  # noqa: F811
) -> None:
    admin, writer, reader = (
        world.as_key("admin"),
        world.as_key("campaigns:write"),
        world.as_key("campaigns:read"),
    )
    strict = {"complaint_pause_min_deliveries": 3, "complaint_pause_rate": 0.5}
    assert world.client.put("/v1/admin/policy", json=strict, headers=admin).status_code == 200
    created = world.client.post(
        "/v1/campaigns", json={"name": "Winter", "topic": "promotions"}, headers=writer
    )
    cid = created.json()["campaign_id"]
    for user in ("ana", "bo"):
        world.user(user, platform="webhook")
    rt, portal = world.runtime, world.client.blocking_portal
    adapter = WebhookAdapter(WebhookConfig(url=world.hook.url, secret=Secret(SECRET), connections=1))
    # A worker of its own process: its own view of the policy, caught up at each claim.
    worker = Dispatcher(rt.store, rt.clock, rt.settings, PolicySource(rt.store, rt.clock), rt.metrics,
                        {"webhook": adapter})  # fmt: skip
    try:
        first = world.submit("ana", campaign_id=cid)["push_id"]
        portal.call(worker.run_once, "worker-a", 256)
        complaint = {"push_id": first, "reason": "irrelevant"}
        assert (
            world.client.post("/v1/me/complaints", json=complaint, headers=world.as_user("ana")).status_code
            == 201
        )
        world.submit("bo", campaign_id=cid)
        lowered: list[int] = []

        def lower_the_minimum_while_sending() -> None:
            if not lowered:  # `serve` answers: 1 complaint in 1 delivery is under its minimum of 2
                lower = strict | {"complaint_pause_min_deliveries": 2}
                answer = world.client.put("/v1/admin/policy", json=lower, headers=admin)
                lowered.append(answer.status_code)

        world.hook.before_answer = lower_the_minimum_while_sending
        portal.call(worker.run_once, "worker-a", 256)
    finally:
        portal.call(adapter.aclose)
    assert lowered == [200]
    shown = world.client.get(f"/v1/campaigns/{cid}", headers=reader).json()
    evidence = shown["pause_evidence"] or {}
    assert (shown["status"], evidence.get("deliveries"), evidence.get("min_deliveries")) == ("paused", 2, 2)
