"""Dispatch, in process: the worker's rules driven one round at a time.

The settings have `worker_enabled=False`, so each test drives the dispatcher itself with
`run_once(owner, limit)` on the app's own event loop (the TestClient's blocking portal), and
moves the gateway's FakeClock between rounds. Devices of platform `fcm` go to the file sink
(data_dir/deliveries.jsonl); devices of platform `webhook` go to a real local receiver on
127.0.0.1 whose answer each test chooses.

The gateway decides with the FakeClock: 2026-11-23 10:00 UTC (a Monday), default quiet hours
21:00-08:00 UTC.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import WebhookRelay

from gateway.runtime import Runtime
from gateway.services.dispatch import Dispatcher
from gateway.settings import Secret, Settings
from storage import outbox
from storage.repositories import pushes

Client = TestClient[Litestar]
Json = dict[str, Any]
SECRET = "dispatch-rules-webhook-secret-0123456789"


@pytest.fixture
def settings(data_dir: Path, hook: WebhookRelay) -> Settings:
    return Settings(
        data_dir=data_dir,
        worker_enabled=False,
        delivery_max_attempts=3,
        delivery_backoff_seconds=0.01,
        delivery_webhook_url=hook.url,
        delivery_webhook_secret=Secret(SECRET),
    )


# -- the world ----------------------------------------------------------------------------------


@dataclass
class World:
    client: Client
    runtime: Runtime
    clock: FakeClock
    hook: WebhookRelay
    data_dir: Path
    as_user: Callable[[str], Headers]
    as_key: Callable[..., Headers]
    key: Headers = field(default_factory=dict)
    _seq: int = 0

    def user(self, user_id: str, *, platform: str = "fcm", purposes: tuple[str, ...] = ("marketing",),
             **prefs: Any) -> str:  # fmt: skip
        headers = self.as_user(user_id)
        for purpose in purposes:
            answer = self.client.put(
                f"/v1/me/consents/{purpose}", json={"granted": True, "notice_version": "v1"}, headers=headers
            )
            assert answer.status_code == 200, answer.text
        answer = self.client.post(
            "/v1/me/devices", json={"platform": platform, "token": f"{platform}-token-{user_id}-x1y2"},
            headers=headers,
        )  # fmt: skip
        assert answer.status_code == 201, answer.text
        device_id = str(answer.json()["device_id"])
        if prefs:
            answer = self.client.patch("/v1/me/preferences", json=prefs, headers=headers)
            assert answer.status_code == 200, answer.text
        return device_id

    def devices(self, user_id: str) -> list[Json]:
        answer = self.client.get("/v1/me/devices", headers=self.as_user(user_id))
        assert answer.status_code == 200, answer.text
        got: list[Json] = answer.json()
        return got

    def submit(self, user_id: str, **fields: Any) -> Json:
        self._seq += 1
        body: Json = {
            "idempotency_key": f"idem-{self._seq}",
            "user_id": user_id,
            "topic": "promotions",
            "title": "Winter sale",
            "body": "20% off at partner stores today",
            "data": {"deeplink": "wallet://offers/winter"},
        } | fields
        answer = self.client.post("/v1/pushes", json=body, headers=self.key)
        assert answer.status_code == 200, answer.text
        got: Json = answer.json()
        return got

    def run(self, limit: int = 100, owner: str = "test-worker", dispatcher: Dispatcher | None = None) -> int:
        """One dispatcher round on the app's event loop; returns how many pushes it claimed."""
        d = dispatcher or self.runtime.dispatcher
        claimed: int = self.client.blocking_portal.call(d.run_once, owner, limit)
        return claimed

    def read(self, push_id: str) -> Json:
        answer = self.client.get(f"/v1/pushes/{push_id}", headers=self.key)
        assert answer.status_code == 200, answer.text
        got: Json = answer.json()
        return got

    def sink(self) -> list[Json]:
        path = self.data_dir / "deliveries.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def outbox(self) -> int:
        return int(self.runtime.store.data.reader().execute("SELECT count(*) FROM outbox").fetchone()[0])


@pytest.fixture
def world(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    hook: WebhookRelay,
    data_dir: Path,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> World:
    return World(client, runtime, clock, hook, data_dir, as_user, as_key, key=as_key("pushes:write"))


# -- delivered ----------------------------------------------------------------------------------


def test_queued_push_is_delivered_to_the_file_sink_with_a_masked_token(world: World) -> None:
    device_id = world.user("alice")
    push = world.submit("alice")
    assert push["outcome"] == "queued"
    assert world.run() == 1
    got = world.read(push["push_id"])
    assert (got["status"], got["attempts"], got["reasons"]) == ("delivered", 1, [])
    (line,) = world.sink()
    assert line["push_id"] == push["push_id"]
    assert line["device_id"] == device_id
    assert line["idempotency_key"] == f"{push['push_id']}:{device_id}"
    assert line["token"] == "…x1y2"
    assert (line["title"], line["topic"]) == ("Winter sale", "promotions")
    assert "fcm-token-alice" not in (world.data_dir / "deliveries.jsonl").read_text()
    assert world.outbox() == 0
    assert world.run() == 0  # nothing left to claim, nothing sent twice
    assert len(world.sink()) == 1


def test_webhook_device_is_delivered_to_the_relay(world: World) -> None:
    device_id = world.user("bea", platform="webhook")
    push = world.submit("bea")
    assert world.run() == 1
    assert world.read(push["push_id"])["status"] == "delivered"
    assert [r["push_id"] for r in world.hook.received] == [push["push_id"]]
    assert world.hook.keys == [f"{push['push_id']}:{device_id}"]
    assert world.sink() == []


# -- decided again at dispatch ------------------------------------------------------------------


def _withdraw(w: World, user_id: str, push: Json) -> None:
    answer = w.client.put(
        "/v1/me/consents/marketing", json={"granted": False, "notice_version": "v1"},
        headers=w.as_user(user_id),
    )  # fmt: skip
    assert answer.status_code == 200, answer.text


def _topic_off(w: World, user_id: str, push: Json) -> None:
    answer = w.client.patch(
        "/v1/me/preferences", json={"topics": {"promotions": False}}, headers=w.as_user(user_id)
    )
    assert answer.status_code == 200, answer.text


def _erase(w: World, user_id: str, push: Json) -> None:
    assert w.client.delete("/v1/me", headers=w.as_user(user_id)).status_code == 204


def _mute(w: World, user_id: str, push: Json) -> None:
    ref = w.client.get("/v1/me/preferences", headers=w.as_user(user_id)).json()["subject_ref"]
    key = w.runtime.store.directory.resolve(ref)
    assert key is not None
    until = (w.clock.now + timedelta(days=30)).isoformat()
    w.runtime.store.data.writer.run_sync(
        lambda conn: conn.execute(
            "INSERT INTO mutes (subject_id, topic, until, source) VALUES (?, 'promotions', ?, 'complaint')",
            (key.subject_id, until),
        )
    )


def _pause(w: World, user_id: str, push: Json) -> None:
    writer = w.as_key("campaigns:write")
    answer = w.client.post(f"/v1/campaigns/{push['campaign_id']}/pause", headers=writer)
    assert answer.status_code == 200, answer.text


RECHECKS: list[tuple[str, Callable[[World, str, Json], None], list[Json]]] = [
    ("consent_withdrawn", _withdraw, [{"code": "no_consent", "purpose": "marketing"}]),
    ("topic_turned_off", _topic_off, [{"code": "topic_opted_out", "topic": "promotions"}]),
    ("user_erased", _erase, [{"code": "subject_erased"}]),
    (
        "complaint_mute",
        _mute,
        [{"code": "recent_complaint", "topic": "promotions", "until": "2026-12-23T10:01:00Z"}],
    ),
    ("campaign_paused", _pause, [{"code": "campaign_paused"}]),
]


@pytest.mark.parametrize("platform", ["fcm", "webhook"])
@pytest.mark.parametrize(("name", "change", "reasons"), RECHECKS, ids=[r[0] for r in RECHECKS])
def test_change_after_queueing_stops_the_push_at_dispatch(
    world: World, platform: str, name: str, change: Callable[[World, str, Json], None], reasons: list[Json]
) -> None:
    world.user("carl", platform=platform)
    fields: Json = {}
    if name == "campaign_paused":
        created = world.client.post(
            "/v1/campaigns", json={"name": "winter", "topic": "promotions"},
            headers=world.as_key("campaigns:write"),
        )  # fmt: skip
        fields = {"campaign_id": created.json()["campaign_id"], "variant": "A"}
    push = world.submit("carl", **fields)
    assert push["outcome"] == "queued"
    push["campaign_id"] = fields.get("campaign_id")
    world.clock.advance(minutes=1)
    change(world, "carl", push)
    assert world.run() == 1
    got = world.read(push["push_id"])
    assert (got["status"], got["outcome"]) == ("rejected", "queued")
    assert got["reasons"] == reasons
    assert world.sink() == []
    assert world.hook.received == []
    assert world.outbox() == 0
    assert world.run() == 0


MARKETING_ONLY = [r for r in RECHECKS if r[0] in ("consent_withdrawn", "topic_turned_off", "complaint_mute")]


@pytest.mark.parametrize(("name", "change", "reasons"), MARKETING_ONLY, ids=[r[0] for r in MARKETING_ONLY])
def test_a_marketing_push_behind_a_transactional_one_in_a_round_is_judged_by_all_it_reads(
    world: World, name: str, change: Callable[[World, str, Json], None], reasons: list[Json]
) -> None:
    """A round reads only the parts of its subjects' state its pushes' topics are judged by
    (`policies.state_parts_for`): read for the first push's topic alone, the marketing push
    behind it would be judged by no consents, default preferences and no mutes, and sent."""
    world.user("dana")
    first = world.submit("dana", topic="transactional", title="Your receipt", body="Paid at the cafe")
    push = world.submit("dana")
    assert (first["outcome"], push["outcome"]) == ("queued", "queued")
    world.clock.advance(minutes=1)
    change(world, "dana", push)
    assert world.run() == 2
    assert world.read(first["push_id"])["status"] == "delivered"
    got = world.read(push["push_id"])
    assert (got["status"], got["reasons"]) == ("rejected", reasons)


def test_pushes_of_one_subject_in_one_round_see_what_the_round_did_to_each_other(world: World) -> None:
    """A round reads its subjects' state once. A push it ends must stop counting against the
    caps of the subject's next push in the same round, as if each had read the database."""
    answer = world.client.put("/v1/admin/policy", json={"max_per_day": 3}, headers=world.as_key("admin"))
    assert answer.status_code == 200, answer.text
    world.user("gus")
    first = world.submit("gus", topic="promotions")
    second = world.submit("gus", topic="flash_sales")
    assert (first["outcome"], second["outcome"]) == ("queued", "queued")
    answer = world.client.patch(
        "/v1/me/preferences", json={"frequency": {"max_per_week": 1}}, headers=world.as_user("gus")
    )
    assert answer.status_code == 200, answer.text
    assert world.run() == 2
    # The first is judged without the second, planned after it, and goes; the second is judged
    # with the first sent in this round: two in a week of one. (Before, the first was judged
    # with the second still planned and refused, and the latest went.)
    assert world.read(first["push_id"])["status"] == "delivered"
    rejected = world.read(second["push_id"])
    assert (rejected["status"], rejected["reasons"]) == (
        "rejected", [{"code": "frequency_capped", "window": "week", "limit": 1}],
    )  # fmt: skip
    assert [line["push_id"] for line in world.sink()] == [first["push_id"]]


def _seal_broken(world: World, user_id: str) -> None:
    """Overwrite the user's sealed preferences with random bytes: they no longer open."""
    store = world.runtime.store
    key = store.directory.resolve(store.pseudonyms.subject_ref(user_id))
    assert key is not None
    store.data.writer.run_sync(
        lambda conn: conn.execute(
            "UPDATE preferences SET doc = randomblob(80) WHERE subject_id = ?", (key.subject_id,)
        )
    )


def test_a_push_whose_subject_cannot_be_read_does_not_hold_back_the_round(world: World) -> None:
    """The round's reads fail for everyone when one subject's sealed state does not open; then
    each push is read alone, the unreadable one is left to its lease and the others go."""
    world.user("hana", timezone="Europe/Berlin")
    world.user("ivan")
    broken = world.submit("hana")
    fine = world.submit("ivan")
    _seal_broken(world, "hana")
    assert world.run() == 2
    assert world.read(fine["push_id"])["status"] == "delivered"
    assert world.read(broken["push_id"])["status"] == "queued"
    assert world.outbox() == 1  # claimed, its lease left to expire and be tried again
    assert [line["push_id"] for line in world.sink()] == [fine["push_id"]]


def test_a_push_whose_subject_cannot_be_read_still_ends_expired_at_its_expiry(world: World) -> None:
    """Read alone, its subject used to be read before its expiry was checked: the read failed at
    every claim, so the push was claimed again at each lease for ever and never ended `expired`."""
    world.user("hana", timezone="Europe/Berlin")
    broken = world.submit("hana", ttl_seconds=3600)
    _seal_broken(world, "hana")
    assert world.run() == 1
    assert world.read(broken["push_id"])["status"] == "queued"  # left to its lease
    world.clock.advance(hours=1)  # past its lease and its expiry
    assert world.run() == 1
    got = world.read(broken["push_id"])
    assert (got["status"], got["reasons"]) == ("expired", [{"code": "expired"}])
    assert world.outbox() == 0
    assert world.sink() == []


def test_when_the_round_read_fails_each_push_read_alone_sees_the_ones_before_it(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Read alone, a push reads the database: the push before it, sent by this round, is written
    by then and counts against its caps, as in a round read whole."""
    answer = world.client.put("/v1/admin/policy", json={"max_per_day": 3}, headers=world.as_key("admin"))
    assert answer.status_code == 200, answer.text
    world.user("hana", timezone="Europe/Berlin")
    world.user("gus")
    world.submit("hana")
    first = world.submit("gus", topic="promotions")
    second = world.submit("gus", topic="flash_sales")
    answer = world.client.patch(
        "/v1/me/preferences", json={"frequency": {"max_per_week": 1}}, headers=world.as_user("gus")
    )
    assert answer.status_code == 200, answer.text
    _seal_broken(world, "hana")
    assert world.run() == 3
    assert "dispatch round read failed; reading each push alone" in caplog.messages
    assert world.read(first["push_id"])["status"] == "delivered"
    assert world.read(second["push_id"])["status"] == "rejected"


def _refuse(world: World, push_id: str, status: str) -> None:
    """Make SQLite itself refuse to move this push to `status`, as a bad row would."""
    world.runtime.store.data.writer.run_sync(
        lambda conn: conn.execute(
            f"CREATE TRIGGER refuse_{status} BEFORE UPDATE OF status ON pushes "
            f"WHEN NEW.push_id = '{push_id}' AND NEW.status = '{status}' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    )


def _allow(world: World, status: str) -> None:
    world.runtime.store.data.writer.run_sync(lambda conn: conn.execute(f"DROP TRIGGER refuse_{status}"))


def test_a_push_whose_claim_cannot_be_written_is_not_sent_and_the_others_go(world: World) -> None:
    """The round's writes go in one statement per kind; when they fail, each push is written
    alone: the one refused is not sent (nothing says it is `sending`) and is left to its lease."""
    world.user("jana")
    world.user("karl")
    broken = world.submit("jana")
    fine = world.submit("karl")
    _refuse(world, broken["push_id"], "sending")
    assert world.run() == 2
    assert world.read(fine["push_id"])["status"] == "delivered"
    assert world.read(broken["push_id"])["status"] == "queued"
    assert [line["push_id"] for line in world.sink()] == [fine["push_id"]]
    assert world.outbox() == 1
    _allow(world, "sending")
    world.clock.advance(seconds=61)  # past the lease
    assert world.run() == 1
    assert world.read(broken["push_id"])["status"] == "delivered"
    assert world.outbox() == 0


def test_a_push_whose_results_cannot_be_written_stays_leased_and_the_others_settle(world: World) -> None:
    world.user("lena")
    world.user("mats")
    broken = world.submit("lena")
    fine = world.submit("mats")
    _refuse(world, broken["push_id"], "delivered")
    assert world.run() == 2
    got = world.read(fine["push_id"])
    assert (got["status"], got["attempts"]) == ("delivered", 1)
    assert world.read(broken["push_id"])["status"] == "sending"  # sent, its result not recorded
    assert world.outbox() == 1
    # Counted for the push written, not for the one refused.
    registry = world.runtime.metrics.registry
    assert registry.get_sample_value("cgw_push_end_states_total", {"status": "delivered"}) == 1
    _allow(world, "delivered")
    world.clock.advance(seconds=61)
    assert world.run() == 1  # sent again, with the same idempotency key: nothing recorded it
    assert world.read(broken["push_id"])["status"] == "delivered"
    sent = [line["push_id"] for line in world.sink()]
    assert sorted(sent) == sorted([fine["push_id"], broken["push_id"], broken["push_id"]])


# -- deferred and expired -----------------------------------------------------------------------


def test_deferred_push_waits_for_deliver_after_then_is_sent(world: World) -> None:
    world.user("dora")
    world.clock.advance(hours=12)  # 22:00 UTC: quiet hours until 08:00
    push = world.submit("dora")
    assert (push["outcome"], push["deliver_after"]) == ("deferred", "2026-11-24T08:00:00Z")
    assert world.run() == 0
    world.clock.advance(hours=9, minutes=59, seconds=59)  # 07:59:59
    assert world.run() == 0
    assert world.sink() == []
    assert world.read(push["push_id"])["status"] == "deferred"
    world.clock.advance(seconds=1)  # 08:00:00
    assert world.run() == 1
    assert world.read(push["push_id"])["status"] == "delivered"
    assert [line["push_id"] for line in world.sink()] == [push["push_id"]]


def test_a_push_sent_late_counts_against_the_caps_on_the_day_it_is_sent(world: World) -> None:
    """Queued on Monday, sent on Tuesday (the worker was down): it was counted on Monday, so
    Tuesday's one marketing push a day let a second one through."""
    world.user("dora")
    late = world.submit("dora", topic="promotions")
    assert late["outcome"] == "queued"
    world.clock.advance(hours=23, minutes=30)  # Tuesday 09:30
    assert world.run() == 1
    assert world.read(late["push_id"])["status"] == "delivered"
    world.clock.advance(minutes=15)

    second = world.submit("dora", topic="flash_sales")

    assert second["outcome"] == "rejected", second
    assert [r["code"] for r in second["reasons"]] == ["frequency_capped"]
    (shown,) = world.client.get("/v1/me/notifications", headers=world.as_user("dora")).json()
    assert shown["at"] == "2026-11-24T09:30:00Z"


def test_a_transactional_push_sent_late_shows_when_it_was_sent_and_keeps_its_planned_time(
    world: World,
) -> None:
    """No cap counts it, so its planned time (and its entry in the subject index, keyed by it)
    stays; the user's notifications and export still show when it reached them."""
    world.user("ella")
    late = world.submit("ella", topic="transactional", title="Payment received")
    world.clock.advance(hours=2)  # 12:00: the worker was down
    assert world.run() == 1
    assert world.read(late["push_id"])["status"] == "delivered"

    headers = world.as_user("ella")
    (shown,) = world.client.get("/v1/me/notifications", headers=headers).json()
    assert shown["at"] == "2026-11-23T12:00:00Z"
    (exported,) = world.client.get("/v1/me/export", headers=headers).json()["notifications"]
    assert exported["at"] == "2026-11-23T12:00:00Z"
    row = pushes.get(world.runtime.store.data.reader(), late["push_id"])
    assert row is not None
    assert (row.planned_at, row.sent_at) == ("2026-11-23T10:00:00+00:00", "2026-11-23T12:00:00+00:00")


@pytest.mark.parametrize("late_minutes", [0, 5])
def test_a_push_sent_late_and_retried_into_quiet_hours_past_its_expiry_is_rejected_not_expired(
    world: World, late_minutes: int
) -> None:
    """Sent late, its planned time moved to the send: it was then taken for one deferred, and
    ended `expired` where a push never deferred is `rejected` (PRODUCT.md)."""
    world.user("zed", platform="webhook")
    world.hook.answers = [(503, {}), (200, {})]
    world.clock.advance(hours=10, minutes=50)  # 20:50; quiet hours from 21:00, expiry at 22:00
    push = world.submit("zed", ttl_seconds=70 * 60)
    assert push["outcome"] == "queued", push
    world.clock.advance(minutes=late_minutes)
    assert world.run() == 1
    world.clock.advance(minutes=15)  # inside quiet hours, whose end is past the expiry
    world.run()
    got = world.read(push["push_id"])
    assert (got["status"], [r["code"] for r in got["reasons"]]) == ("rejected", ["quiet_hours"]), got


def test_queued_push_claimed_inside_quiet_hours_is_deferred_again(world: World) -> None:
    world.user("emil")
    world.clock.advance(hours=10, minutes=59)  # 20:59: allowed, queued for now
    push = world.submit("emil")
    assert push["outcome"] == "queued"
    world.clock.advance(minutes=2)  # the worker only gets to it at 21:01
    assert world.run() == 1
    got = world.read(push["push_id"])
    assert got["status"] == "deferred"
    assert world.sink() == []
    assert world.outbox() == 1
    world.clock.advance(hours=10, minutes=58)  # 07:59
    assert world.run() == 0
    world.clock.advance(minutes=1, seconds=1)  # 08:00:01
    assert world.run() == 1
    assert world.read(push["push_id"])["status"] == "delivered"
    assert len(world.sink()) == 1


def test_push_past_expires_at_ends_expired_and_is_not_sent(world: World) -> None:
    world.user("finn", platform="webhook")
    push = world.submit("finn", ttl_seconds=60)
    assert push["expires_at"] == "2026-11-23T10:01:00Z"
    world.clock.advance(seconds=61)
    assert world.run() == 1
    got = world.read(push["push_id"])
    assert (got["status"], got["reasons"]) == ("expired", [{"code": "expired"}])
    assert world.hook.received == []
    assert world.outbox() == 0


@pytest.mark.parametrize("deferred", [False, True], ids=["queued", "deferred"])
def test_a_lowered_maximum_ttl_leaves_an_accepted_push_its_own_expiry(world: World, deferred: bool) -> None:
    """The maximum decides which pushes are accepted, not how long an accepted one lives: one
    accepted for 7 days, still waiting when the maximum drops to a day, is judged at dispatch
    like any other and goes in the first round, carrying the expiry it was accepted with."""
    world.user("kira")
    if deferred:
        world.clock.advance(hours=12)  # 22:00 UTC: quiet hours until 08:00
    push = world.submit("kira", ttl_seconds=604800)
    assert push["outcome"] == ("deferred" if deferred else "queued")
    expires = push["expires_at"]
    answer = world.client.put(
        "/v1/admin/policy", json={"max_ttl_seconds": 86400, "default_ttl_seconds": 3600},
        headers=world.as_key("admin"),
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    world.clock.advance(hours=10 if deferred else 0, minutes=1)
    assert world.run() == 1
    got = world.read(push["push_id"])
    assert (got["status"], got["expires_at"]) == ("delivered", expires)
    (line,) = world.sink()
    assert line["push_id"] == push["push_id"]
    assert datetime.fromisoformat(line["expires_at"]) == datetime.fromisoformat(expires)
    assert world.outbox() == 0
    world.clock.advance(seconds=world.runtime.settings.worker_lease_seconds + 1)
    assert world.run() == 0  # nothing left to be claimed again


# -- provider answers ---------------------------------------------------------------------------


def test_invalid_token_answer_disables_the_device(world: World) -> None:
    device_id = world.user("gina", platform="webhook")
    world.hook.answers = [(410, {})]
    push = world.submit("gina", topic="transactional", title="Payment received", body="CNY 25.00")
    assert world.run() == 1
    got = world.read(push["push_id"])
    assert got["status"] == "failed"
    assert got["attempts"] == 1
    (device,) = world.devices("gina")
    assert (device["device_id"], device["status"]) == (device_id, "disabled")
    # No active device left: the next push is refused at submission and nothing more is sent.
    again = world.submit("gina", topic="transactional", title="Payment received", body="CNY 3.00")
    assert again["reasons"] == [{"code": "no_device"}]
    world.clock.advance(seconds=5)
    assert world.run() == 0
    assert len(world.hook.received) == 1


def test_a_relay_answering_404_disables_no_device_and_delivers_once_fixed(world: World) -> None:
    """Every webhook device posts to the one relay URL: a 404 is a wrong path or a relay being
    redeployed, not a dead token. The device stays active, the push waits, and it goes through
    once the relay answers again; another transactional push is accepted meanwhile."""
    device_id = world.user("gabe", platform="webhook")
    world.hook.answers = [(404, {}), (200, {})]
    push = world.submit("gabe", topic="transactional", title="Payment received", body="CNY 25.00")
    assert world.run() == 1
    got = world.read(push["push_id"])
    assert (got["status"], got["attempts"]) == ("sending", 1)
    (device,) = world.devices("gabe")
    assert (device["device_id"], device["status"]) == (device_id, "active")
    again = world.submit("gabe", topic="transactional", title="Payment received", body="CNY 3.00")
    assert again["outcome"] == "queued"
    world.clock.advance(seconds=1)  # backoff base 0.01 s: the retry is due
    assert world.run() == 2
    assert world.read(push["push_id"])["status"] == "delivered"
    assert world.read(again["push_id"])["status"] == "delivered"
    assert world.hook.keys.count(f"{push['push_id']}:{device_id}") == 2


def test_transient_failures_retry_with_the_same_key_then_fail_after_max_attempts(world: World) -> None:
    device_id = world.user("hugo", platform="webhook")
    world.hook.answers = [(503, {})]
    push = world.submit("hugo", topic="transactional", title="Payment received", body="CNY 25.00")
    assert world.run() == 1
    got = world.read(push["push_id"])
    assert (got["status"], got["attempts"]) == ("sending", 1)
    for expected in (2, 3):
        world.clock.advance(seconds=1)  # backoff base 0.01 s: the retry is due
        assert world.run() == 1
        assert world.read(push["push_id"])["attempts"] == expected
    got = world.read(push["push_id"])
    assert (got["status"], got["attempts"]) == ("failed", 3)  # delivery_max_attempts=3
    assert world.outbox() == 0
    assert world.hook.keys == [f"{push['push_id']}:{device_id}"] * 3
    world.clock.advance(seconds=60)
    assert world.run() == 0
    assert len(world.hook.received) == 3


def test_a_retry_that_succeeds_is_delivered(world: World) -> None:
    world.user("iris", platform="webhook")
    world.hook.answers = [(503, {}), (200, {})]
    push = world.submit("iris", topic="transactional", title="Payment received", body="CNY 25.00")
    assert world.run() == 1
    world.clock.advance(seconds=1)
    assert world.run() == 1
    got = world.read(push["push_id"])
    assert (got["status"], got["attempts"]) == ("delivered", 2)
    assert len(world.hook.received) == 2


def test_retry_after_is_a_floor_for_the_next_attempt(world: World) -> None:
    world.user("jack", platform="webhook")
    world.hook.answers = [(503, {"Retry-After": "120"}), (200, {})]
    push = world.submit("jack", topic="transactional", title="Payment received", body="CNY 25.00")
    assert world.run() == 1
    world.clock.advance(seconds=119)
    assert world.run() == 0
    world.clock.advance(seconds=32)  # waited out, and at most a quarter more (RETRY_AFTER_SPREAD)
    assert world.run() == 1
    assert world.read(push["push_id"])["status"] == "delivered"


# -- leases -------------------------------------------------------------------------------------


def _many(world: World, users: int, per_user: int) -> list[str]:
    ids = []
    for u in range(users):
        world.user(f"lease-{u}")
        for _ in range(per_user):
            ids.append(
                world.submit(f"lease-{u}", topic="transactional", title="Payment", body="CNY 1.00")["push_id"]
            )
    return ids


def test_two_claims_at_once_never_get_the_same_row(world: World) -> None:
    ids = _many(world, users=10, per_user=6)
    writer = world.runtime.store.data.writer
    lease = timedelta(seconds=60)
    now = world.clock.now
    for _ in range(5):  # bounded: a few rounds of racing claims, each freeing every row again

        def claim(owner: str) -> list[str]:
            got = writer.run_sync(lambda conn: outbox.claim(conn, owner, now, lease, 40))
            return [c.push_id for c in got]

        with ThreadPoolExecutor(4) as pool:
            claims = dict(zip("ABCD", pool.map(claim, "ABCD"), strict=True))
        flat = [p for got in claims.values() for p in got]
        assert len(flat) == len(set(flat)) == len(ids)
        assert set(flat) == set(ids)
        writer.run_sync(lambda c: c.execute("UPDATE outbox SET lease_owner = NULL, lease_until = NULL"))


def test_a_lease_is_free_again_only_after_it_expires(world: World) -> None:
    (push_id,) = _many(world, users=1, per_user=1)
    writer = world.runtime.store.data.writer
    lease = timedelta(seconds=60)
    t0 = world.clock.now
    first = writer.run_sync(lambda c: outbox.claim(c, "A", t0, lease, 10))
    assert [c.push_id for c in first] == [push_id]
    assert writer.run_sync(lambda c: outbox.claim(c, "B", t0 + timedelta(seconds=59), lease, 10)) == []
    second = writer.run_sync(lambda c: outbox.claim(c, "B", t0 + timedelta(seconds=61), lease, 10))
    assert [c.push_id for c in second] == [push_id]
    # The first owner, back from the dead, can neither finish nor reschedule what it lost.
    assert writer.run_sync(lambda c: outbox.finish_many(c, [push_id], "A")) == 0
    assert writer.run_sync(lambda c: outbox.reschedule_many(c, [outbox.Reschedule(push_id, t0, 1)], "A")) == 0
    assert writer.run_sync(lambda c: outbox.finish_many(c, [push_id], "B")) == 1


def test_two_dispatchers_at_once_deliver_each_push_exactly_once(world: World) -> None:
    ids = _many(world, users=12, per_user=5)
    rt = world.runtime
    other = Dispatcher(rt.store, rt.clock, rt.settings, rt.policy, rt.metrics, rt.adapters)

    async def both() -> tuple[int, int]:
        import asyncio

        a, b = await asyncio.gather(rt.dispatcher.run_once("A", 40), other.run_once("B", 40))
        return a, b

    a, b = world.client.blocking_portal.call(both)
    assert a + b == len(ids)
    assert a > 0
    assert b > 0
    lines = world.sink()
    assert sorted(line["push_id"] for line in lines) == sorted(ids)
    assert {world.read(p)["status"] for p in ids} == {"delivered"}
