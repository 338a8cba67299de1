"""Pausing and resuming campaigns through HTTP: the complaint-rate rule's pause, who may lift it,
what a resume holds, and repeated pauses or resumes that must change nothing.

The pause rule is set to 0.5 of deliveries after at least 2 (through `PUT /v1/admin/policy`),
so two deliveries and one complaint pause a campaign. FakeClock starts at 2026-11-23 10:00 UTC;
the worker is off and `dispatch` runs the dispatcher by hand on the app's loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import Scripted, assert_problem, onboard
from test_erasure_crash import gateway
from test_erasure_crash import user as user_token

from gateway.runtime import Runtime
from gateway.services.dispatch import Dispatcher
from gateway.settings import Settings
from storage.connections import Connection

Client = TestClient[Litestar]
Json = dict[str, Any]
UserHeaders = Callable[[str], Headers]
KeyHeaders = Callable[..., Headers]

MISSING_CAMPAIGN = "cmp_" + "0" * 16
RESUMED = "2026-11-23T10:05:00Z"


# -- helpers ------------------------------------------------------------------------------------


def dispatch(client: Client, runtime: Runtime, limit: int = 1_000) -> int:
    """Run the dispatcher once on the app's event loop (the worker is disabled in tests)."""
    claimed: int = client.blocking_portal.call(runtime.dispatcher.run_once, "test-owner", limit)
    return claimed


def deliver(client: Client, runtime: Runtime, key: Headers, campaign_id: str, user_id: str) -> str:
    """One push of the campaign to `user_id`, delivered; returns its push_id."""
    body = {
        "idempotency_key": f"{campaign_id}-{user_id}", "user_id": user_id, "topic": "promotions",
        "title": "Winter sale", "body": "20% off today", "campaign_id": campaign_id,
    }  # fmt: skip
    answer = client.post("/v1/pushes", json=body, headers=key)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "queued", answer.text
    dispatch(client, runtime)
    push_id: str = answer.json()["push_id"]
    shown = client.get(f"/v1/pushes/{push_id}", headers=key)
    assert shown.json()["status"] == "delivered", shown.text
    return push_id


def complain(client: Client, headers: Headers, push_id: str) -> None:
    answer = client.post(
        "/v1/me/complaints", json={"push_id": push_id, "reason": "irrelevant"}, headers=headers
    )
    assert answer.status_code == 201, answer.text


def campaign(client: Client, reader: Headers, campaign_id: str) -> Json:
    answer = client.get(f"/v1/campaigns/{campaign_id}", headers=reader)
    assert answer.status_code == 200, answer.text
    result: Json = answer.json()
    return result


def act(client: Client, headers: Headers, campaign_id: str, action: str) -> Json:
    answer = client.post(f"/v1/campaigns/{campaign_id}/{action}", headers=headers)
    assert answer.status_code == 200, answer.text
    result: Json = answer.json()
    return result


def evidence(shown: Json) -> Json:
    reason: Json = shown["pause_evidence"]
    return reason


class World:
    """Users, keys and one campaign under the 0.5-after-2 pause rule."""

    def __init__(
        self, client: Client, runtime: Runtime, clock: FakeClock, as_user: UserHeaders, as_key: KeyHeaders
    ) -> None:
        self.client, self.runtime, self.clock, self.as_user = client, runtime, clock, as_user
        policy = {"complaint_pause_min_deliveries": 2, "complaint_pause_rate": 0.5}
        answer = client.put("/v1/admin/policy", json=policy, headers=as_key("admin"))
        assert answer.status_code == 200, answer.text
        self.pusher = as_key("pushes:write")
        self.writer, self.reader, self.admin = (
            as_key("campaigns:write"),
            as_key("campaigns:read"),
            as_key("admin"),
        )
        created = client.post(
            "/v1/campaigns", json={"name": "Winter", "topic": "promotions"}, headers=self.writer
        )
        assert created.status_code == 201, created.text
        self.cid: str = created.json()["campaign_id"]
        self.users: dict[str, Headers] = {}

    def deliver(self, user_id: str) -> str:
        self.users[user_id] = onboard(self.client, self.as_user, user_id)
        return deliver(self.client, self.runtime, self.pusher, self.cid, user_id)

    def complain(self, user_id: str, push_id: str) -> None:
        complain(self.client, self.users[user_id], push_id)

    def shown(self) -> Json:
        return campaign(self.client, self.reader, self.cid)

    def paused_by_complaints(self) -> dict[str, str]:
        """Two deliveries and two complaints, filed at 10:01 and 10:02: the first pauses it."""
        sent = {user: self.deliver(user) for user in ("ada", "bo")}
        self.clock.advance(minutes=1)
        self.complain("ada", sent["ada"])
        assert self.shown()["status"] == "paused"
        self.clock.advance(minutes=1)
        self.complain("bo", sent["bo"])
        return sent


@pytest.fixture
def world(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: UserHeaders, as_key: KeyHeaders
) -> World:
    return World(client, runtime, clock, as_user, as_key)


FIRST_EVIDENCE = {
    "rule": "complaint_rate", "complaints": 1, "deliveries": 2, "rate": 0.5, "threshold": 0.5,
    "min_deliveries": 2,
}  # fmt: skip


# -- a resume holds until the campaign earns a new pause ----------------------------------------


def test_after_a_resume_the_rule_judges_only_what_happened_since(world: World, as_key: KeyHeaders) -> None:
    world.paused_by_complaints()
    paused = world.shown()
    assert (paused["paused_at"], evidence(paused)) == ("2026-11-23T10:01:00Z", FIRST_EVIDENCE)

    world.clock.advance(minutes=3)
    operator = as_key("admin", "campaigns:write")
    resumed = act(world.client, operator, world.cid, "resume")
    assert (resumed["status"], resumed["paused_at"], resumed["pause_reason"]) == ("active", None, None)

    # Over the campaign's life this is 2 complaints in 3 deliveries, over the rate; since the
    # resume it is none in one.
    world.clock.advance(minutes=1)
    cy = world.deliver("cy")
    assert world.shown()["status"] == "active"

    # A complaint after the resume, but one delivery since is under the minimum of 2.
    world.clock.advance(minutes=1)
    world.complain("cy", cy)
    assert world.shown()["status"] == "active"

    # The second delivery since the resume: 1 complaint in 2 reaches the rate on its own.
    world.clock.advance(minutes=1)
    world.deliver("dee")
    again = world.shown()
    assert (again["status"], again["paused_at"]) == ("paused", "2026-11-23T10:08:00Z")
    assert evidence(again) == FIRST_EVIDENCE | {"since": RESUMED}

    # The campaign shows only its latest pause; the admin log keeps each, with its numbers.
    log = world.client.get("/v1/audit/admin-log", headers=as_key("audit:read"))
    assert log.status_code == 200, log.text
    kept = [
        (e["at"], e["actor"].partition(":")[0], e["action"], e["detail"])
        for e in log.json()["entries"]
        if e["target"] == world.cid
    ]
    assert kept == [
        ("2026-11-23T10:01:00Z", "gateway", "campaign.paused", FIRST_EVIDENCE),
        (RESUMED, "key", "campaign.resumed", {"lifted": "complaint_rate"}),
        ("2026-11-23T10:08:00Z", "gateway", "campaign.paused", FIRST_EVIDENCE | {"since": RESUMED}),
    ]


def test_late_complaints_about_pushes_delivered_before_a_resume_do_not_pause_it_again(world: World) -> None:
    sent = {user: world.deliver(user) for user in ("ada", "bo", "cy", "dee")}
    world.clock.advance(minutes=1)
    world.complain("ada", sent["ada"])
    world.complain("bo", sent["bo"])  # 2 in 4 reaches the rate
    assert world.shown()["status"] == "paused"
    world.clock.advance(minutes=1)
    assert act(world.client, world.admin, world.cid, "resume")["status"] == "active"

    world.clock.advance(minutes=1)
    world.complain("cy", sent["cy"])  # about a push of before the resume
    for user in ("eve", "fay"):
        world.deliver(user)  # two deliveries since, no complaint about them
    assert world.shown()["status"] == "active"


def test_deliveries_alone_after_a_resume_never_pause_the_campaign(world: World) -> None:
    world.paused_by_complaints()
    world.clock.advance(minutes=3)
    assert act(world.client, world.admin, world.cid, "resume")["status"] == "active"
    for user in ("cy", "dee", "eve"):
        world.clock.advance(minutes=1)
        world.deliver(user)
        assert world.shown()["status"] == "active", user


def test_a_complaint_about_a_push_not_yet_delivered_does_not_count_against_the_campaign(
    world: World,
) -> None:
    """Regression: the rule counted every complained-about push over the deliveries, so a
    complaint about a push still queued paused a campaign whose stats showed no complaint."""
    world.deliver("ada")
    world.deliver("bo")
    world.users["cy"] = onboard(world.client, world.as_user, "cy")
    body = {
        "idempotency_key": "queued-for-cy", "user_id": "cy", "topic": "promotions",
        "title": "Winter sale", "body": "20% off today", "campaign_id": world.cid,
    }  # fmt: skip
    queued = world.client.post("/v1/pushes", json=body, headers=world.pusher)
    assert queued.json()["outcome"] == "queued", queued.text

    world.clock.advance(minutes=1)
    world.complain("cy", queued.json()["push_id"])

    assert world.shown()["status"] == "active"
    world.deliver("dee")  # the rule runs at each delivery: still one complaint in none delivered
    assert world.shown()["status"] == "active"


# -- who may resume -----------------------------------------------------------------------------


def test_only_an_operator_resumes_a_campaign_the_complaint_rule_paused(
    world: World, as_key: KeyHeaders
) -> None:
    world.paused_by_complaints()
    before = world.shown()
    for scopes in (("campaigns:write",), ("campaigns:write", "campaigns:read", "pushes:write")):
        refused = world.client.post(f"/v1/campaigns/{world.cid}/resume", headers=as_key(*scopes))
        body = assert_problem(refused, 403)
        assert "complaint-rate rule" in body["detail"]
        assert "admin" in body["detail"]
    for scopes in (("campaigns:read",), ("pushes:write",), ("audit:read",)):
        assert_problem(world.client.post(f"/v1/campaigns/{world.cid}/resume", headers=as_key(*scopes)), 403)
    assert world.shown() == before

    resumed = act(world.client, world.admin, world.cid, "resume")
    assert (resumed["status"], resumed["pause_reason"]) == ("active", None)
    assert world.shown() == resumed


def test_a_pause_by_hand_is_lifted_by_campaigns_write_or_admin_and_admin_may_pause(world: World) -> None:
    client, cid = world.client, world.cid
    for resumer in (world.writer, world.admin):
        paused = act(client, world.writer, cid, "pause")
        assert paused["status"] == "paused"
        assert paused["pause_reason"].startswith("paused by key:")
        assert act(client, resumer, cid, "resume")["status"] == "active"
        assert world.shown()["status"] == "active"


def test_an_operators_pause_is_lifted_only_by_an_operator(world: World) -> None:
    """Any `campaigns:write` key, another service's too, lifted an operator's pause: SECURITY.md's
    advice after a key leaks, to pause the campaigns it submitted to, was undone by any other."""
    client, cid = world.client, world.cid
    paused = act(client, world.admin, cid, "pause")
    assert (paused["status"], paused["pause_evidence"]) == ("paused", None)
    refused = client.post(f"/v1/campaigns/{cid}/resume", headers=world.writer)
    assert "paused by an operator" in assert_problem(refused, 403)["detail"]
    assert world.shown() == paused  # refused, nothing changed
    assert act(client, world.admin, cid, "resume")["status"] == "active"


def test_an_unknown_campaign_is_not_found_for_writers_and_operators(world: World) -> None:
    for headers in (world.writer, world.admin):
        for action in ("pause", "resume"):
            answer = world.client.post(f"/v1/campaigns/{MISSING_CAMPAIGN}/{action}", headers=headers)
            assert_problem(answer, 404, "campaign_id")


# -- repeating a pause or a resume changes nothing ----------------------------------------------


def test_pausing_a_campaign_the_rule_paused_keeps_its_evidence(world: World) -> None:
    world.paused_by_complaints()
    before = world.shown()
    world.clock.advance(hours=1)
    for headers in (world.writer, world.admin):
        assert act(world.client, headers, world.cid, "pause") == before
    assert world.shown() == before
    assert (before["paused_at"], evidence(before)) == ("2026-11-23T10:01:00Z", FIRST_EVIDENCE)
    # Still the rule's pause: a campaigns:write key still may not lift it.
    assert_problem(world.client.post(f"/v1/campaigns/{world.cid}/resume", headers=world.writer), 403)


def test_pausing_a_campaign_paused_by_hand_keeps_who_and_when(world: World) -> None:
    first = act(world.client, world.writer, world.cid, "pause")
    world.clock.advance(minutes=30)
    assert act(world.client, world.admin, world.cid, "pause") == first
    assert act(world.client, world.writer, world.cid, "pause") == first
    assert world.shown() == first
    assert first["paused_at"] == "2026-11-23T10:00:00Z"


def test_resuming_an_active_campaign_changes_nothing_not_even_what_the_rule_judges(world: World) -> None:
    world.paused_by_complaints()
    world.clock.advance(minutes=3)
    resumed = act(world.client, world.admin, world.cid, "resume")
    world.clock.advance(minutes=1)
    cy = world.deliver("cy")
    world.clock.advance(minutes=1)
    world.complain("cy", cy)

    # A second resume, of a campaign already active: the answer is the campaign as it is, and
    # the rule still counts from the resume that lifted the pause.
    world.clock.advance(minutes=1)
    for headers in (world.writer, world.admin):
        assert act(world.client, headers, world.cid, "resume") == resumed
    world.clock.advance(minutes=1)
    world.deliver("dee")
    again = world.shown()
    assert again["status"] == "paused"
    assert evidence(again) == FIRST_EVIDENCE | {"since": RESUMED}


# -- a pause by hand does not shelter a campaign from the rule ----------------------------------


@pytest.mark.parametrize("by", ["campaigns:write", "admin"])
def test_a_pause_by_hand_and_its_resume_keep_what_the_rule_counts(world: World, by: str) -> None:
    """Regression: every resume started the rule's count again, so pausing and resuming by hand
    before the minimum of deliveries kept the rule from ever judging the campaign."""
    headers = {"campaigns:write": world.writer, "admin": world.admin}[by]
    ada = world.deliver("ada")
    world.clock.advance(minutes=1)
    world.complain("ada", ada)  # one complaint in one delivery: under the minimum of 2
    world.clock.advance(minutes=1)
    assert act(world.client, headers, world.cid, "pause")["status"] == "paused"
    world.clock.advance(minutes=1)
    assert act(world.client, headers, world.cid, "resume")["status"] == "active"

    world.clock.advance(minutes=1)
    world.deliver("bo")  # one complaint in two deliveries over the campaign's life: the rate
    paused = world.shown()
    assert (paused["status"], paused["paused_at"]) == ("paused", "2026-11-23T10:04:00Z")
    assert evidence(paused) == FIRST_EVIDENCE
    assert_problem(world.client.post(f"/v1/campaigns/{world.cid}/resume", headers=world.writer), 403)


@pytest.mark.parametrize("by", ["campaigns:write", "admin"])
def test_complaints_filed_during_a_pause_by_hand_make_it_the_rules_pause(world: World, by: str) -> None:
    """Regression: the rule skipped any paused campaign, so complaints filed during a pause by
    hand were never judged and a `campaigns:write` resume set the campaign going over the rate.
    An operator's pause by hand too: its evidence is the rule's to show."""
    headers = {"campaigns:write": world.writer, "admin": world.admin}[by]
    sent = {user: world.deliver(user) for user in ("ada", "bo")}
    world.clock.advance(minutes=1)
    assert act(world.client, headers, world.cid, "pause")["pause_reason"].startswith("paused by key:")

    world.clock.advance(minutes=1)
    world.complain("ada", sent["ada"])
    paused = world.shown()
    assert (paused["status"], paused["paused_at"]) == ("paused", "2026-11-23T10:02:00Z")
    assert evidence(paused) == FIRST_EVIDENCE

    refused = world.client.post(f"/v1/campaigns/{world.cid}/resume", headers=world.writer)
    assert "complaint-rate rule" in assert_problem(refused, 403)["detail"]
    assert world.shown() == paused

    # An operator lifts it as any pause of the rule's: the rule counts again from that resume.
    world.clock.advance(minutes=1)
    assert act(world.client, world.admin, world.cid, "resume")["status"] == "active"
    world.clock.advance(minutes=1)
    world.deliver("cy")
    world.deliver("dee")
    assert world.shown()["status"] == "active"


def test_a_resume_judges_the_rule_before_it_lifts_a_pause_by_hand(world: World) -> None:
    """Regression: a campaign over the threshold, paused by hand, was set going by a
    `campaigns:write` resume. Here the threshold is lowered under its rate while it is paused:
    the policy change judges it (the pause becomes the rule's then), and the resume is refused."""
    sent = {user: world.deliver(user) for user in ("ada", "bo", "cy")}
    world.clock.advance(minutes=1)
    assert act(world.client, world.writer, world.cid, "pause")["status"] == "paused"
    world.clock.advance(minutes=1)
    world.complain("ada", sent["ada"])  # one in three: under the rate of 0.5
    assert world.shown()["pause_reason"].startswith("paused by key:")
    lower = {"complaint_pause_min_deliveries": 2, "complaint_pause_rate": 0.25}
    assert world.client.put("/v1/admin/policy", json=lower, headers=world.admin).status_code == 200

    world.clock.advance(minutes=1)
    refused = world.client.post(f"/v1/campaigns/{world.cid}/resume", headers=world.writer)
    assert "complaint-rate rule" in assert_problem(refused, 403)["detail"]
    paused = world.shown()
    assert (paused["status"], paused["paused_at"]) == ("paused", "2026-11-23T10:02:00Z")  # the change's
    assert evidence(paused) == {
        "rule": "complaint_rate", "complaints": 1, "deliveries": 3, "rate": 0.333333, "threshold": 0.25,
        "min_deliveries": 2,
    }  # fmt: skip
    assert_problem(world.client.post(f"/v1/campaigns/{world.cid}/resume", headers=world.writer), 403)
    assert world.shown() == paused


def test_an_operator_resume_of_a_pause_by_hand_over_the_rate_starts_the_count_again(world: World) -> None:
    sent = {user: world.deliver(user) for user in ("ada", "bo", "cy")}
    world.clock.advance(minutes=1)
    assert act(world.client, world.writer, world.cid, "pause")["status"] == "paused"
    world.complain("ada", sent["ada"])
    lower = {"complaint_pause_min_deliveries": 2, "complaint_pause_rate": 0.25}
    assert world.client.put("/v1/admin/policy", json=lower, headers=world.admin).status_code == 200

    # The rule's pause, lifted by an operator in the same unit: counting starts again from zero,
    # as after any operator's resume of the rule's pause.
    world.clock.advance(minutes=1)
    assert act(world.client, world.admin, world.cid, "resume")["status"] == "active"
    world.clock.advance(minutes=1)
    dee = world.deliver("dee")
    world.deliver("eve")
    assert world.shown()["status"] == "active"
    world.clock.advance(minutes=1)
    world.complain("dee", dee)  # one in two since the resume
    again = world.shown()
    assert again["status"] == "paused"
    assert evidence(again) == {
        "rule": "complaint_rate", "complaints": 1, "deliveries": 2, "rate": 0.5, "threshold": 0.25,
        "min_deliveries": 2, "since": "2026-11-23T10:02:00Z",
    }  # fmt: skip


# -- a pause stops what was waiting, through a resume -----------------------------------------


def test_a_push_waiting_through_a_pause_and_resume_never_goes_out(world: World) -> None:
    """A pause says the content is unwelcome: a push deferred to the user's morning, reached by
    dispatch only after the resume, is stopped too; one submitted after the resume goes out."""
    client, key = world.client, world.pusher
    headers = world.users["kai"] = onboard(client, world.as_user, "kai")
    # 10:00 UTC is 23:00 in Auckland: in the default quiet hours until 08:00 there (19:00 UTC).
    zone = client.patch("/v1/me/preferences", json={"timezone": "Pacific/Auckland"}, headers=headers)
    assert zone.status_code == 200, zone.text

    def submit(name: str) -> dict[str, Any]:
        body = {
            "idempotency_key": f"{world.cid}-{name}", "user_id": "kai", "topic": "promotions",
            "title": "Winter sale", "body": "20% off today", "campaign_id": world.cid,
        }  # fmt: skip
        answer = client.post("/v1/pushes", json=body, headers=key)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    waiting = submit("before")
    assert waiting["outcome"] == "deferred", waiting
    world.clock.advance(minutes=1)
    act(client, world.writer, world.cid, "pause")
    world.clock.advance(minutes=1)
    act(client, world.writer, world.cid, "resume")

    world.clock.advance(hours=9)  # 19:02 UTC: 08:02 in Auckland, the deferral is due
    dispatch(client, world.runtime)
    shown = client.get(f"/v1/pushes/{waiting['push_id']}", headers=key).json()
    assert (shown["status"], shown["reasons"]) == ("rejected", [{"code": "campaign_paused"}]), shown

    again = submit("after")
    assert again["outcome"] == "queued", again
    dispatch(client, world.runtime)
    assert client.get(f"/v1/pushes/{again['push_id']}", headers=key).json()["status"] == "delivered"


def test_a_campaign_paused_before_the_upgrade_stops_what_waited_too(
    settings: Settings, clock: FakeClock
) -> None:
    """Migration 0016 gives a campaign already paused the pushes stored so far: without it, the
    campaign's row held no mark, and its deferred pushes went out after the resume."""

    def bearer(runtime: Runtime, *scopes: str) -> Headers:
        return {"Authorization": f"Bearer {runtime.api_keys.create_sync('k', scopes)[1]}"}

    def as_before_0016(conn: Connection) -> None:
        conn.execute("ALTER TABLE campaigns DROP COLUMN paused_through")
        conn.execute("DELETE FROM _migrations WHERE name = '0016_campaign_paused_through'")

    with gateway(settings, clock) as (client, runtime):
        admin, key = bearer(runtime, "admin"), bearer(runtime, "pushes:write", "campaigns:write")
        created = client.post("/v1/campaigns", json={"name": "Winter", "topic": "promotions"}, headers=key)
        cid = created.json()["campaign_id"]
        kai = onboard(client, lambda user_id: user_token(runtime, user_id), "kai")
        zone = client.patch("/v1/me/preferences", json={"timezone": "Pacific/Auckland"}, headers=kai)
        assert zone.status_code == 200, zone.text
        body = {
            "idempotency_key": "before-upgrade", "user_id": "kai", "topic": "promotions",
            "title": "Winter sale", "body": "20% off today", "campaign_id": cid,
        }  # fmt: skip
        waiting = client.post("/v1/pushes", json=body, headers=key).json()
        assert waiting["outcome"] == "deferred", waiting
        act(client, key, cid, "pause")
        runtime.store.data.writer.run_sync(as_before_0016)

    with gateway(settings, clock) as (client, runtime):
        act(client, admin, cid, "resume")
        clock.advance(hours=9, minutes=2)  # the deferral is due
        dispatch(client, runtime)
        shown = client.get(f"/v1/pushes/{waiting['push_id']}", headers=key).json()
        assert (shown["status"], shown["reasons"]) == ("rejected", [{"code": "campaign_paused"}]), shown


def test_a_complaint_about_a_push_that_reached_a_device_before_the_resume_counts_before_it(
    world: World,
) -> None:
    """Regression: the rule dated a push's delivery by its row's last change, so a push that
    reached one device before a pause, and ended `delivered` only after the resume (its other
    device retried), carried its old complaint into the new window and paused the campaign."""
    rt = world.runtime
    apns, fcm = Scripted("scripted-apns", "delivered"), Scripted("scripted-fcm", "retry")
    dispatcher = Dispatcher(
        rt.store, rt.clock, rt.settings, rt.policy, rt.metrics, {"apns": apns, "fcm": fcm}
    )

    def run_dispatch() -> None:
        world.client.blocking_portal.call(dispatcher.run_once, "test-worker", 100)

    def submit(user_id: str) -> str:
        body = {
            "idempotency_key": f"{world.cid}-{user_id}", "user_id": user_id, "topic": "promotions",
            "title": "Winter sale", "body": "20% off today", "campaign_id": world.cid,
        }  # fmt: skip
        answer = world.client.post("/v1/pushes", json=body, headers=world.pusher).json()
        assert answer["outcome"] == "queued", answer
        push_id: str = answer["push_id"]
        return push_id

    for user_id in ("cy", "ada", "bo"):
        world.users[user_id] = onboard(world.client, world.as_user, user_id)
    fcm_device = {"platform": "fcm", "token": "fcm-token-cy-second-phone"}
    assert world.client.post("/v1/me/devices", json=fcm_device, headers=world.users["cy"]).status_code == 201
    cy = submit("cy")
    run_dispatch()  # her iPhone has it; her other phone is retried
    world.complain("cy", cy)
    sent = {user_id: submit(user_id) for user_id in ("ada", "bo")}
    run_dispatch()
    world.clock.advance(minutes=1)
    world.complain("ada", sent["ada"])  # 1 complaint in the 2 delivered: the rule pauses it
    assert world.shown()["status"] == "paused"
    world.clock.advance(minutes=1)
    assert act(world.client, world.admin, world.cid, "resume")["status"] == "active"

    world.clock.advance(hours=1)
    fcm.status = "delivered"
    run_dispatch()  # cy's push ends delivered now, long after she had it
    world.users["dee"] = onboard(world.client, world.as_user, "dee")
    submit("dee")
    run_dispatch()  # 2 delivered since the resume, no complaint about a push first had since
    assert world.shown()["status"] == "active"
