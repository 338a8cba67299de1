"""Dispatch, in process: how a push ends when it is decided again on a later round.

Driven as in test_dispatch_rules: `worker_enabled=False`, one `run_once` per round on the app's
loop, the gateway's FakeClock moved between rounds (2026-11-23 10:00 UTC, a Monday; default quiet
hours 21:00-08:00 UTC). The real Dispatcher sends through scripted stand-ins for the providers:
`fcm` devices are delivered, `apns` devices answer `retry`, so a push can be delivered to one of
its subject's devices and still be waiting for another.

- A push already delivered to a device ends `delivered` whatever its retry's new decision says
  (consent withdrawn, subject erased, expired): the user has it, so it stays in their
  notifications, takes engagement events and keeps counting against their caps.
- A push deferred before whose time comes too late (quiet hours widened past its expiry) ends
  `expired`, as the spec's TTL rule says; other refusals stay `rejected`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import Scripted, apns_token

from clients.delivery import DeliveryMessage, DeliveryResult
from gateway.runtime import Runtime
from gateway.services.dispatch import Dispatcher
from gateway.settings import Settings

Client = TestClient[Litestar]
Json = dict[str, Any]


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir, worker_enabled=False, delivery_max_attempts=5, delivery_backoff_seconds=1
    )


@dataclass
class World:
    client: Client
    runtime: Runtime
    clock: FakeClock
    as_user: Callable[[str], Headers]
    key: Headers
    delivered: Scripted = field(default_factory=lambda: Scripted("scripted-ok", "delivered"))
    waiting: Scripted = field(default_factory=lambda: Scripted("scripted-retry", "retry"))
    push_id: str = ""  # the push a test's change is about
    _seq: int = 0

    def user(self, user_id: str, *platforms: str, **prefs: Any) -> None:
        self.consent(user_id, granted=True)
        for platform in platforms:
            token = apns_token(user_id) if platform == "apns" else f"{platform}-token-{user_id}-x1y2"
            answer = self.client.post(
                "/v1/me/devices", json={"platform": platform, "token": token}, headers=self.as_user(user_id)
            )
            assert answer.status_code == 201, answer.text
        if prefs:
            self.prefs(user_id, **prefs)

    def consent(self, user_id: str, *, granted: bool) -> None:
        answer = self.client.put(
            "/v1/me/consents/marketing", json={"granted": granted, "notice_version": "v1"},
            headers=self.as_user(user_id),
        )  # fmt: skip
        assert answer.status_code == 200, answer.text

    def prefs(self, user_id: str, **prefs: Any) -> None:
        answer = self.client.patch("/v1/me/preferences", json=prefs, headers=self.as_user(user_id))
        assert answer.status_code == 200, answer.text

    def submit(self, user_id: str, **fields: Any) -> Json:
        self._seq += 1
        body: Json = {
            "idempotency_key": f"idem-{self._seq}", "user_id": user_id, "topic": "promotions",
            "title": "Winter sale", "body": "20% off at partner stores today",
            "data": {"deeplink": "wallet://offers/winter"},
        } | fields  # fmt: skip
        answer = self.client.post("/v1/pushes", json=body, headers=self.key)
        assert answer.status_code == 200, answer.text
        got: Json = answer.json()
        return got

    def run(self) -> int:
        rt = self.runtime
        adapters = {"fcm": self.delivered, "apns": self.waiting}
        dispatcher = Dispatcher(rt.store, rt.clock, rt.settings, rt.policy, rt.metrics, adapters)
        claimed: int = self.client.blocking_portal.call(dispatcher.run_once, "test-worker", 100)
        return claimed

    def read(self, push_id: str) -> Json:
        answer = self.client.get(f"/v1/pushes/{push_id}", headers=self.key)
        assert answer.status_code == 200, answer.text
        got: Json = answer.json()
        return got

    def notifications(self, user_id: str) -> list[Json]:
        answer = self.client.get("/v1/me/notifications", headers=self.as_user(user_id))
        assert answer.status_code == 200, answer.text
        got: list[Json] = answer.json()
        return got

    def outbox(self) -> int:
        return int(self.runtime.store.data.reader().execute("SELECT count(*) FROM outbox").fetchone()[0])

    def next_due(self) -> datetime:
        """The push's next claim time: the retry's backoff is random, so the tests go there."""
        row = self.runtime.store.data.reader().execute("SELECT min(due_at) FROM outbox").fetchone()
        return datetime.fromisoformat(row[0])


@pytest.fixture
def world(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> World:  # fmt: skip
    return World(client, runtime, clock, as_user, as_key("pushes:write"))


class AskingToWait:
    """A provider that answers every message `retry` with a Retry-After far beyond any TTL."""

    name = "scripted-retry-after"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.sent: list[str] = []

    async def send(self, message: DeliveryMessage) -> DeliveryResult:
        self.sent.append(message.push_id)
        return DeliveryResult(status="retry", retry_after=self.seconds)

    async def aclose(self) -> None:
        """Nothing to close."""


# -- delivered to one device, still waiting for another ------------------------------------------


def _withdraw(w: World) -> None:
    w.consent("ada", granted=False)


def _erase(w: World) -> None:
    assert w.client.delete("/v1/me", headers=w.as_user("ada")).status_code == 204


def _outlive(w: World) -> None:
    w.clock.now = datetime.fromisoformat(w.read(w.push_id)["expires_at"].replace("Z", "+00:00"))


@pytest.mark.parametrize(
    ("change", "reasons"),
    [
        (_withdraw, [{"code": "no_consent", "purpose": "marketing"}]),
        (_erase, [{"code": "subject_erased"}]),
        (_outlive, [{"code": "expired"}]),
    ],
    ids=["consent_withdrawn", "subject_erased", "expired"],
)
def test_a_push_delivered_to_one_device_ends_delivered_whatever_its_retry_decides(
    world: World, change: Callable[[World], None], reasons: list[Json]
) -> None:
    world.user("ada", "fcm", "apns")
    push = world.submit("ada", ttl_seconds=3600)
    assert push["outcome"] == "queued"
    world.push_id = push["push_id"]
    assert world.run() == 1
    assert world.read(push["push_id"])["status"] == "sending"  # fcm has it, apns to be retried
    change(world)
    world.clock.now = max(world.clock.now, world.next_due())
    assert world.run() == 1
    got = world.read(push["push_id"])
    assert (got["status"], got["reasons"]) == ("delivered", reasons)
    assert (world.delivered.sent, world.waiting.sent) == ([push["push_id"]], [push["push_id"]])
    assert world.outbox() == 0
    assert world.run() == 0


def test_a_push_waiting_only_for_a_device_since_removed_ends_delivered(world: World) -> None:
    """Its `retry` record used to keep it waiting, re-claimed every round with nothing to send,
    until its TTL ran out (found by fault injection)."""
    world.user("cy", "fcm", "apns")
    push = world.submit("cy")
    assert world.run() == 1
    assert world.read(push["push_id"])["status"] == "sending"
    listed = world.client.get("/v1/me/devices", headers=world.as_user("cy")).json()
    apns = next(d["device_id"] for d in listed if d["platform"] == "apns")
    assert world.client.delete(f"/v1/me/devices/{apns}", headers=world.as_user("cy")).status_code == 204
    world.clock.now = world.next_due()
    assert world.run() == 1
    assert world.read(push["push_id"])["status"] == "delivered"
    assert world.outbox() == 0
    assert world.waiting.sent == [push["push_id"]]


def test_a_partly_delivered_push_stopped_by_a_withdrawal_still_counts_for_the_user(world: World) -> None:
    """It stays in the user's notifications, takes their events and holds the daily cap."""
    world.user("bo", "fcm", "apns")
    push = world.submit("bo")
    assert world.run() == 1
    world.consent("bo", granted=False)
    world.clock.now = world.next_due()
    assert world.run() == 1
    assert world.read(push["push_id"])["status"] == "delivered"
    assert [(n["push_id"], n["status"]) for n in world.notifications("bo")] == [
        (push["push_id"], "delivered")
    ]
    opened = world.client.post(
        f"/v1/me/pushes/{push['push_id']}/events", json={"type": "opened"}, headers=world.as_user("bo")
    )
    assert opened.status_code == 201, opened.text
    world.consent("bo", granted=True)
    world.clock.advance(hours=1)  # 11:00 or so, the same local day
    second = world.submit("bo", topic="flash_sales")
    assert (second["outcome"], second["reasons"]) == (
        "rejected", [{"code": "frequency_capped", "window": "day", "limit": 1}],
    )  # fmt: skip


def test_a_partly_delivered_push_whose_retry_meets_quiet_hours_stays_the_push_the_user_has(
    world: World,
) -> None:
    """Its retry used to rewrite it `deferred`, planned for the morning: the user's notifications
    showed a push they had as deferred, and the caps counted it on the next day, not on its own."""
    world.user("ida", "fcm", "apns")
    world.clock.advance(hours=10, minutes=59)  # 20:59
    push = world.submit("ida")
    assert push["outcome"] == "queued"
    assert world.run() == 1  # fcm has it, apns to be retried
    (shown,) = world.notifications("ida")
    assert (shown["status"], shown["at"]) == ("sending", "2026-11-23T20:59:00Z")
    world.clock.advance(minutes=2)  # 21:01: the retry meets quiet hours, until 08:00
    assert world.run() == 1
    got = world.read(push["push_id"])
    assert (got["status"], got["deliver_after"], got["reasons"], got["attempts"]) == ("sending", None, [], 1)
    assert [(n["status"], n["at"]) for n in world.notifications("ida")] == [
        ("sending", "2026-11-23T20:59:00Z")
    ]
    assert world.next_due() == datetime(2026, 11, 24, 8, tzinfo=UTC)  # only its retry waits
    assert world.waiting.sent == [push["push_id"]]  # nothing sent in quiet hours
    world.waiting = Scripted("scripted-retry", "delivered")  # apns answers in the morning
    world.clock.now = world.next_due()
    assert world.run() == 1
    got = world.read(push["push_id"])
    assert (got["status"], got["attempts"]) == ("delivered", 2)
    assert [(n["status"], n["at"]) for n in world.notifications("ida")] == [
        ("delivered", "2026-11-23T20:59:00Z")
    ]
    assert world.outbox() == 0
    # Counted on the day it was planned for, so the morning's push is not capped by it.
    second = world.submit("ida", topic="flash_sales")
    assert (second["outcome"], second["reasons"]) == ("queued", [])


def test_a_push_on_one_device_and_on_its_way_to_another_takes_the_users_events(
    world: World, as_key: Callable[..., Headers]
) -> None:
    """The user has it on one device: opening it there answered 404 while the push was still
    `sending` to the other. The event is kept; the campaign's stats count it once the push ends
    `delivered`, so no rate is ever over what was delivered."""
    created = world.client.post(
        "/v1/campaigns", json={"name": "Winter", "topic": "promotions"}, headers=as_key("campaigns:write")
    )
    campaign_id = created.json()["campaign_id"]
    world.user("eve", "fcm", "apns")
    push = world.submit("eve", campaign_id=campaign_id)
    assert world.run() == 1  # fcm has it, apns to be retried
    assert world.read(push["push_id"])["status"] == "sending"

    opened = world.client.post(
        f"/v1/me/pushes/{push['push_id']}/events", json={"type": "opened"}, headers=world.as_user("eve")
    )
    assert opened.status_code == 201, opened.text

    def counted() -> tuple[int, int]:
        got = world.client.get(f"/v1/campaigns/{campaign_id}/stats", headers=as_key("campaigns:read"))
        assert got.status_code == 200, got.text
        variant = got.json()["variants"]["default"]
        return variant["delivered"], variant["opened"]

    assert counted() == (0, 0)
    world.waiting = Scripted("scripted-retry", "delivered")
    world.clock.now = world.next_due()
    assert world.run() == 1
    assert counted() == (1, 1)

    # Another user's push, or one no device has yet, still answers 404.
    world.user("fay", "apns")
    waiting = world.submit("fay")
    world.waiting = Scripted("scripted-retry", "retry")
    assert world.run() == 1
    for user, push_id in (("fay", push["push_id"]), ("fay", waiting["push_id"])):
        refused = world.client.post(
            f"/v1/me/pushes/{push_id}/events", json={"type": "opened"}, headers=world.as_user(user)
        )
        assert refused.status_code == 404, refused.text


# -- deferred, and then too late -----------------------------------------------------------------


def test_a_push_deferred_at_submission_whose_quiet_hours_widen_past_its_expiry_ends_expired(
    world: World,
) -> None:
    world.user("cai", "fcm")
    world.clock.advance(hours=12)  # 22:00: quiet until 08:00
    push = world.submit("cai", ttl_seconds=12 * 3600)  # expires at 10:00
    assert (push["outcome"], push["deliver_after"]) == ("deferred", "2026-11-24T08:00:00Z")
    world.prefs("cai", quiet_hours={"start": "21:00", "end": "11:00"})
    world.clock.advance(hours=10)  # 08:00, but quiet now until 11:00
    assert world.run() == 1
    got = world.read(push["push_id"])
    assert (got["status"], got["reasons"]) == ("expired", [{"code": "expired"}])
    assert world.delivered.sent == []
    assert world.outbox() == 0
    assert world.notifications("cai") == []


def test_a_push_deferred_by_dispatch_whose_quiet_hours_widen_past_its_expiry_ends_expired(
    world: World,
) -> None:
    world.user("dan", "fcm")
    world.clock.advance(hours=10, minutes=59)  # 20:59
    push = world.submit("dan", ttl_seconds=12 * 3600)  # queued, expires at 08:59
    assert push["outcome"] == "queued"
    world.clock.advance(minutes=2)  # claimed only at 21:01: deferred to 08:00
    assert world.run() == 1
    assert world.read(push["push_id"])["status"] == "deferred"
    world.prefs("dan", quiet_hours={"start": "21:00", "end": "09:00"})
    world.clock.advance(hours=10, minutes=59)  # 08:00
    assert world.run() == 1
    got = world.read(push["push_id"])
    assert (got["status"], got["reasons"]) == ("expired", [{"code": "expired"}])
    assert world.delivered.sent == []


def test_a_push_deferred_by_dispatch_shows_its_time_and_reason_as_one_deferred_at_submission(
    world: World,
) -> None:
    """Regression: dispatch wrote only the status, so the push read `deferred` with no time and
    no reason (and a push deferred twice kept its first time)."""
    world.user("dot", "fcm")
    world.clock.advance(hours=10, minutes=59)  # 20:59
    push = world.submit("dot", ttl_seconds=24 * 3600)
    assert (push["outcome"], push["deliver_after"]) == ("queued", None)
    world.clock.advance(minutes=2)  # claimed only at 21:01: deferred to 08:00
    assert world.run() == 1

    got = world.read(push["push_id"])
    assert (got["status"], got["deliver_after"]) == ("deferred", "2026-11-24T08:00:00Z")
    assert [r["code"] for r in got["reasons"]] == ["quiet_hours"]

    world.prefs("dot", quiet_hours={"start": "21:00", "end": "09:00"})
    world.clock.advance(hours=10, minutes=59)  # 08:00: deferred again, to 09:00
    assert world.run() == 1
    assert world.read(push["push_id"])["deliver_after"] == "2026-11-24T09:00:00Z"
    world.clock.advance(hours=1)
    assert world.run() == 1
    got = world.read(push["push_id"])
    # Sent: the deferral is over, so dispatch holds no verdict of its own (final reasons are for
    # a push it ended); what it was deferred to stays.
    assert (got["status"], got["deliver_after"], got["reasons"]) == ("delivered", "2026-11-24T09:00:00Z", [])
    final = world.runtime.store.data.reader().execute(
        "SELECT final_reasons, final_policy_version FROM pushes WHERE push_id = ?", (push["push_id"],)
    )
    assert final.fetchone() == (None, None)


def test_a_deferred_push_retrying_when_quiet_hours_widen_past_its_expiry_ends_expired(
    world: World,
) -> None:
    """Deferred at submission, sent at its time, not yet delivered anywhere: `sending`, then too late."""
    world.user("eva", "apns")
    world.clock.advance(hours=12)  # 22:00
    push = world.submit("eva", ttl_seconds=12 * 3600)  # deferred to 08:00, expires at 10:00
    world.clock.advance(hours=10)
    assert world.run() == 1
    assert world.read(push["push_id"])["status"] == "sending"
    world.prefs("eva", quiet_hours={"start": "21:00", "end": "11:00"})
    world.clock.now = world.next_due()
    assert world.run() == 1
    got = world.read(push["push_id"])
    assert (got["status"], got["reasons"]) == ("expired", [{"code": "expired"}])
    assert world.waiting.sent == [push["push_id"]]


def test_a_deferred_push_refused_for_consent_stays_rejected(world: World) -> None:
    world.user("fay", "fcm")
    world.clock.advance(hours=12)
    push = world.submit("fay", ttl_seconds=12 * 3600)
    assert push["outcome"] == "deferred"
    world.consent("fay", granted=False)
    world.prefs("fay", quiet_hours={"start": "21:00", "end": "11:00"})
    world.clock.advance(hours=10)
    assert world.run() == 1
    got = world.read(push["push_id"])
    assert got["status"] == "rejected"
    assert [r["code"] for r in got["reasons"]] == ["no_consent", "quiet_hours"]


def test_a_push_never_deferred_that_meets_quiet_hours_past_its_expiry_is_rejected(world: World) -> None:
    world.user("gil", "fcm")
    world.clock.advance(hours=10, minutes=59)  # 20:59
    push = world.submit("gil", ttl_seconds=3600)  # queued, expires at 21:59
    world.clock.advance(minutes=2)  # 21:01: quiet until 08:00, after its expiry
    assert world.run() == 1
    got = world.read(push["push_id"])
    assert (got["status"], got["reasons"]) == (
        "rejected", [{"code": "quiet_hours", "until": "2026-11-24T08:00:00Z"}],
    )  # fmt: skip
    assert world.delivered.sent == []


# -- what a provider's answers may not do -------------------------------------------------------


@pytest.mark.parametrize("seconds", [7 * 86400.0, 1e12])
def test_a_retry_after_beyond_the_expiry_ends_the_push_expired_not_parked(
    world: World, seconds: float
) -> None:
    """Regression: a Retry-After longer than the TTL parked the push in `sending` past its expiry
    (or, past what a date holds, failed the round's writes, and the push was sent again at each
    lease expiry without counting an attempt)."""
    world.waiting = AskingToWait(seconds)  # type: ignore[assignment]
    world.user("gus", "apns")
    push = world.submit("gus", topic="transactional", ttl_seconds=600)
    assert world.run() == 1
    assert world.read(push["push_id"])["status"] == "sending"
    assert world.next_due() == datetime.fromisoformat(push["expires_at"].replace("Z", "+00:00"))

    world.clock.now = world.next_due()
    assert world.run() == 1
    assert world.read(push["push_id"])["status"] == "expired"
    assert world.outbox() == 0


def test_a_device_that_refused_a_push_for_good_is_not_sent_it_again(world: World) -> None:
    """Regression: every device not yet `delivered` was sent the push again at each retry round,
    those that had answered `failed` (permanent) too."""
    world.delivered = Scripted("scripted-failed", "failed")
    world.user("hal", "fcm", "apns")
    push = world.submit("hal", topic="transactional")
    for _ in range(3):
        assert world.run() == 1
        world.clock.now = world.next_due()
    assert world.delivered.sent == [push["push_id"]]
    assert world.waiting.sent == [push["push_id"]] * 3
