"""The campaign's count of deliveries that the complaint-rate rule reads (`delivered_since_resume`).

The rule judges a campaign at each of its deliveries; it reads this count from the campaign row
instead of counting the campaign's delivered push rows. These tests hold the count to what that
query would answer — delivered pushes of the campaign, since an operator last lifted the rule's
pause — as pushes are delivered by dispatch's step 3 or ended `delivered` by step 1 (a device
already had them), and check that the rule still pauses at the same delivery. A pause by hand
and its resume leave the count alone. The last test fills the count in on an existing database
(migration 0012).

Driven as in test_dispatch_end_states: the worker is off, one `run_once` per round on the app's
loop, scripted providers (`fcm` delivers, `apns` answers `retry`). FakeClock starts at 2026-11-23
10:00 UTC; caps are opened so only the complaint rule can stop a push.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
from storage.connections import Connection, connect
from storage.migrations import DATA_MIGRATIONS, migrate
from storage.repositories import campaigns, pushes
from storage.repositories.pushes import PushRow

Client = TestClient[Litestar]
Json = dict[str, Any]

DELIVERED_SINCE = (
    "SELECT count(*) FROM pushes WHERE campaign_id = ? AND status = 'delivered' "
    "AND (? IS NULL OR updated_at > ?)"
)
"""What the rule counted before the count moved to the campaign row."""


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
    as_key: Callable[..., Headers]
    pusher: Headers = field(default_factory=dict)
    admin: Headers = field(default_factory=dict)
    _seq: int = 0

    def __post_init__(self) -> None:
        self.pusher = self.as_key("pushes:write", "campaigns:write", "campaigns:read")
        self.admin = self.as_key("admin", "campaigns:write")

    def policy(self, min_deliveries: int = 1_000, rate: float = 1.0) -> None:
        body = {
            "max_per_day": 10, "max_per_week": 50, "topic_interval_hours": 0,
            "complaint_pause_min_deliveries": min_deliveries, "complaint_pause_rate": rate,
        }  # fmt: skip
        answer = self.client.put("/v1/admin/policy", json=body, headers=self.as_key("admin"))
        assert answer.status_code == 200, answer.text

    def campaign(self, name: str = "Winter") -> str:
        answer = self.client.post(
            "/v1/campaigns", json={"name": name, "topic": "promotions"}, headers=self.pusher
        )
        assert answer.status_code == 201, answer.text
        cid: str = answer.json()["campaign_id"]
        return cid

    def user(self, user_id: str, *platforms: str) -> None:
        self.consent(user_id, granted=True)
        for platform in platforms:
            token = apns_token(user_id) if platform == "apns" else f"{platform}-token-{user_id}-x1y2"
            answer = self.client.post(
                "/v1/me/devices", json={"platform": platform, "token": token}, headers=self.as_user(user_id)
            )
            assert answer.status_code == 201, answer.text

    def consent(self, user_id: str, *, granted: bool) -> None:
        answer = self.client.put(
            "/v1/me/consents/marketing", json={"granted": granted, "notice_version": "v1"},
            headers=self.as_user(user_id),
        )  # fmt: skip
        assert answer.status_code == 200, answer.text

    def submit(self, user_id: str, campaign_id: str | None) -> str:
        self._seq += 1
        body: Json = {
            "idempotency_key": f"idem-{self._seq}", "user_id": user_id, "topic": "promotions",
            "title": "Winter sale", "body": "20% off at partner stores today",
        }  # fmt: skip
        if campaign_id is not None:
            body["campaign_id"] = campaign_id
        answer = self.client.post("/v1/pushes", json=body, headers=self.pusher)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outcome"] == "queued", answer.text
        push_id: str = answer.json()["push_id"]
        return push_id

    def run(self, fcm: Any = None) -> int:
        """One dispatch round, then the clock moves on a minute (past any retry's backoff)."""
        rt = self.runtime
        adapters = {
            "fcm": fcm or Scripted("scripted-ok", "delivered"),
            "apns": Scripted("scripted-retry", "retry"),
        }
        dispatcher = Dispatcher(rt.store, rt.clock, rt.settings, rt.policy, rt.metrics, adapters)
        claimed: int = self.client.blocking_portal.call(dispatcher.run_once, "test-worker", 100)
        self.clock.advance(minutes=1)
        return claimed

    def status(self, push_id: str) -> str:
        answer = self.client.get(f"/v1/pushes/{push_id}", headers=self.pusher)
        assert answer.status_code == 200, answer.text
        got: str = answer.json()["status"]
        return got

    def shown(self, campaign_id: str) -> Json:
        answer = self.client.get(f"/v1/campaigns/{campaign_id}", headers=self.pusher)
        assert answer.status_code == 200, answer.text
        got: Json = answer.json()
        return got

    def act(self, campaign_id: str, action: str) -> None:
        answer = self.client.post(f"/v1/campaigns/{campaign_id}/{action}", headers=self.admin)
        assert answer.status_code == 200, answer.text

    def complain(self, user_id: str, push_id: str) -> None:
        answer = self.client.post(
            "/v1/me/complaints",
            json={"push_id": push_id, "reason": "irrelevant"},
            headers=self.as_user(user_id),
        )
        assert answer.status_code == 201, answer.text

    def counted(self, campaign_id: str) -> tuple[int, int]:
        """The count on the campaign row, and what counting its push rows answers."""
        conn = self.runtime.store.data.reader()
        row = campaigns.get(conn, campaign_id)
        assert row is not None
        since = row.resumed_at
        (rows,) = conn.execute(DELIVERED_SINCE, (campaign_id, since, since)).fetchone()
        return row.delivered_since_resume, int(rows)


@pytest.fixture
def world(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> World:  # fmt: skip
    return World(client, runtime, clock, as_user, as_key)


def evidence(shown: Json) -> Json:
    reason: Json = shown["pause_evidence"]
    return reason


# -- the count follows the deliveries -----------------------------------------------------------


def test_the_count_follows_the_campaigns_delivered_pushes_and_nothing_else(world: World) -> None:
    world.policy()
    cid, other = world.campaign(), world.campaign("Spring")
    world.user("ada", "fcm")
    world.user("bo", "fcm", "apns")  # fcm has it at once, apns keeps it `sending`
    world.user("cy", "apns")  # never delivered
    world.user("dee", "fcm")

    ada, bo, cy = (world.submit(user, cid) for user in ("ada", "bo", "cy"))
    world.submit("dee", other)
    world.submit("dee", None)
    assert world.run() == 5
    assert [world.status(p) for p in (ada, bo, cy)] == ["delivered", "sending", "sending"]
    assert world.counted(cid) == (1, 1)
    assert world.counted(other) == (1, 1)

    # Two deliveries in one round, each counted once.
    world.submit("ada", cid)
    world.submit("dee", cid)
    world.run()
    assert world.counted(cid) == (3, 3)

    # bo's push is ended by step 1 (consent withdrawn), but fcm had it: `delivered`, counted.
    world.consent("bo", granted=False)
    world.run()
    assert world.status(bo) == "delivered"
    assert world.counted(cid) == (4, 4)

    # cy's push runs out of attempts: `failed`, not counted.
    for _ in range(6):
        world.run()
    assert world.status(cy) == "failed"
    assert world.counted(cid) == (4, 4)
    assert world.counted(other) == (1, 1)


def test_a_resume_starts_the_count_again_and_a_delivery_while_paused_stays_before_it(world: World) -> None:
    world.policy(min_deliveries=1)  # and a rate of 1: one complaint per delivery pauses
    cid = world.campaign()
    world.user("ada", "fcm")
    world.user("bo", "fcm", "apns")
    ada = world.submit("ada", cid)
    bo = world.submit("bo", cid)
    world.run()
    assert world.counted(cid) == (1, 1)

    # Paused by the rule with bo's push half-delivered: its end (`delivered`, since fcm has it)
    # is counted while the campaign is paused, and the operator's resume does not carry it over.
    world.complain("ada", ada)
    assert evidence(world.shown(cid))["rule"] == "complaint_rate"
    world.run()
    assert world.status(bo) == "delivered"
    assert world.counted(cid) == (2, 2)

    world.act(cid, "resume")
    assert world.counted(cid) == (0, 0)
    # (A minute on: the rows' query tells "after the resume" by time, the count by the writer's order.)
    # (ada muted the topic by complaining: cy takes the next push.)
    world.clock.advance(minutes=1)
    world.user("cy", "fcm")
    world.submit("cy", cid)
    world.run()
    assert world.counted(cid) == (1, 1)

    # Resuming an active campaign changes nothing, the count included.
    world.act(cid, "resume")
    assert world.counted(cid) == (1, 1)


def test_a_pause_by_hand_and_its_resume_keep_the_count(world: World) -> None:
    """Regression: every resume started the count again, so pausing and resuming by hand kept
    the rule from ever reaching its minimum of deliveries. Only an operator's resume of the
    rule's pause starts it again (above)."""
    world.policy()
    cid = world.campaign()
    world.user("ada", "fcm")
    world.user("bo", "fcm", "apns")
    world.submit("ada", cid)
    bo = world.submit("bo", cid)
    world.run()
    assert world.counted(cid) == (1, 1)

    world.act(cid, "pause")
    world.run()
    assert world.status(bo) == "delivered"
    assert world.counted(cid) == (2, 2)
    world.act(cid, "resume")
    assert world.counted(cid) == (2, 2)
    assert world.runtime.store.data.reader().execute(
        "SELECT resumed_at FROM campaigns WHERE campaign_id = ?", (cid,)
    ).fetchone() == (None,)

    world.submit("ada", cid)
    world.run()
    assert world.counted(cid) == (3, 3)


class LeaseLost(Scripted):
    """Delivers, but the round is so slow that another worker takes the push's lease meanwhile."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__("scripted-slow", "delivered")
        self._runtime = runtime

    async def send(self, message: DeliveryMessage) -> DeliveryResult:
        await self._runtime.store.data.writer.run(
            lambda conn: conn.execute("UPDATE outbox SET lease_owner = 'another-worker'")
        )
        return await super().send(message)


def test_a_push_whose_devices_all_have_it_already_is_counted_when_it_ends(world: World) -> None:
    """The lease lost mid-send: the delivery is recorded but the push is left to the next claim,
    which finds nothing left to send and ends it `delivered` in step 3 with no message."""
    world.policy()
    cid = world.campaign()
    world.user("ada", "fcm")
    ada = world.submit("ada", cid)
    world.run(fcm=LeaseLost(world.runtime))
    assert world.status(ada) == "sending"
    assert world.counted(cid) == (0, 0)
    world.clock.advance(seconds=world.runtime.settings.worker_lease_seconds)
    assert world.run() == 1
    assert world.status(ada) == "delivered"
    assert world.counted(cid) == (1, 1)


# -- the rule pauses at the same delivery -------------------------------------------------------


def test_the_rule_pauses_at_the_delivery_that_reaches_the_minimum(world: World) -> None:
    world.policy(min_deliveries=3, rate=0.3)
    cid = world.campaign()
    sent = {}
    for user in ("ada", "bo"):
        world.user(user, "fcm")
        sent[user] = world.submit(user, cid)
    world.run()
    world.complain("ada", sent["ada"])
    assert world.shown(cid)["status"] == "active"  # 1 in 2: under the minimum of 3

    world.user("cy", "fcm")
    world.submit("cy", cid)
    world.run()
    shown = world.shown(cid)
    assert shown["status"] == "paused"
    assert evidence(shown) == {
        "rule": "complaint_rate", "complaints": 1, "deliveries": 3, "rate": 0.333333, "threshold": 0.3,
        "min_deliveries": 3,
    }  # fmt: skip
    assert world.counted(cid) == (3, 3)


def _one_complaint_then_a_round(world: World, others: tuple[str, ...]) -> str:
    """A campaign whose first delivery drew a complaint (1 in 1: under any minimum above 1), then
    one round delivering it to `others`, counted and judged together."""
    cid = world.campaign()
    world.user("ada", "fcm")
    ada = world.submit("ada", cid)
    world.run()
    world.complain("ada", ada)
    assert world.shown(cid)["status"] == "active"
    for user in others:
        world.user(user, "fcm")
        world.submit(user, cid)
    world.run()
    return cid


def test_a_round_of_several_deliveries_pauses_at_the_one_that_crosses(world: World) -> None:
    """The pause gives the numbers of the delivery that crossed the threshold, and the round's
    later deliveries are counted after it."""
    world.policy(min_deliveries=3, rate=0.3)
    cid = _one_complaint_then_a_round(world, ("bo", "cy", "di", "ed"))  # the 3rd: 1 in 3
    shown = world.shown(cid)
    assert shown["status"] == "paused"
    assert (evidence(shown)["complaints"], evidence(shown)["deliveries"]) == (1, 3)
    assert world.counted(cid) == (5, 5)


def test_a_round_that_never_crosses_counts_every_delivery(world: World) -> None:
    world.policy(min_deliveries=3, rate=0.5)
    cid = _one_complaint_then_a_round(world, ("bo", "cy", "di"))  # 1 in 2 (under 3), 1 in 3, 1 in 4
    assert world.shown(cid)["status"] == "active"
    assert world.counted(cid) == (4, 4)


def test_a_push_ended_delivered_by_step_one_is_the_delivery_that_pauses(world: World) -> None:
    world.policy(min_deliveries=2, rate=0.5)
    cid = world.campaign()
    world.user("ada", "fcm")
    world.user("bo", "fcm", "apns")
    ada = world.submit("ada", cid)
    world.submit("bo", cid)
    world.run()
    world.complain("ada", ada)
    assert world.shown(cid)["status"] == "active"  # one delivery: under the minimum

    world.consent("bo", granted=False)
    world.run()  # bo's push ends in step 1, `delivered`: the second delivery
    shown = world.shown(cid)
    assert shown["status"] == "paused"
    assert (evidence(shown)["complaints"], evidence(shown)["deliveries"]) == (1, 2)
    assert world.counted(cid) == (2, 2)


# -- an existing database -----------------------------------------------------------------------

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def _push(conn: Connection, push_id: str, campaign_id: str | None, status: str, at: datetime) -> None:
    stamp = at.isoformat()
    row = PushRow(
        push_id=push_id, key_id="key_1", idempotency_key=push_id, fingerprint=b"f" * 32, subject_id=None,
        topic="promotions", campaign_id=campaign_id, variant=None, outcome="queued", status=status,
        reasons="[]", allowed_by="[]", planned_at=stamp, deliver_after=None,
        expires_at=(at + timedelta(days=1)).isoformat(), created_at=stamp, updated_at=stamp,
        policy_version=1, content=None,
    )  # fmt: skip
    pushes.insert_many(conn, [row])


def test_the_migration_fills_each_campaigns_count_from_its_delivered_pushes(tmp_path: Path) -> None:
    conn = connect(tmp_path / "gateway.db", secrets.token_bytes(32))
    migrate(conn, [m for m in DATA_MIGRATIONS if m[0] != "0012_campaign_delivered"])
    conn.execute("BEGIN")
    fresh = campaigns.create(conn, "never resumed", "promotions", "key_1", NOW).campaign_id
    resumed = campaigns.create(conn, "resumed", "promotions", "key_1", NOW).campaign_id
    empty = campaigns.create(conn, "no pushes", "promotions", "key_1", NOW).campaign_id
    resumed_at = NOW + timedelta(hours=1)
    conn.execute(
        "UPDATE campaigns SET resumed_at = ? WHERE campaign_id = ?", (resumed_at.isoformat(), resumed)
    )
    n = 0
    for cid, status, at, copies in (
        (fresh, "delivered", NOW, 3),
        (fresh, "sending", NOW, 2),
        (fresh, "failed", NOW, 1),
        (resumed, "delivered", NOW + timedelta(minutes=30), 4),  # before the resume
        (resumed, "delivered", resumed_at, 1),  # at the resume: the rule counted after it only
        (resumed, "delivered", NOW + timedelta(hours=2), 2),
        (resumed, "queued", NOW + timedelta(hours=2), 1),
        (None, "delivered", NOW, 5),
    ):
        for _ in range(copies):
            n += 1
            _push(conn, f"psh_{n:024x}", cid, status, at)
    conn.execute("COMMIT")

    assert migrate(conn, DATA_MIGRATIONS) == ["0012_campaign_delivered"]

    counts = {}
    for cid in (fresh, resumed, empty):
        row = campaigns.get(conn, cid)
        assert row is not None
        counts[cid] = row.delivered_since_resume
    assert counts == {fresh: 3, resumed: 2, empty: 0}
    # New campaigns start at 0 without naming the column.
    conn.execute("BEGIN")
    later = campaigns.create(conn, "later", "promotions", "key_1", NOW)
    conn.execute("COMMIT")
    stored = campaigns.get(conn, later.campaign_id)
    assert stored == later
    assert migrate(conn, DATA_MIGRATIONS) == []  # recorded: a second start changes nothing
    conn.close()


def test_the_rules_complaint_counts_read_the_complaints_campaign_index(tmp_path: Path) -> None:
    """Complaints stay counted by query (they are few per campaign), through their index."""
    conn = connect(tmp_path / "gateway.db", secrets.token_bytes(32))
    migrate(conn, DATA_MIGRATIONS)
    for query, args in (
        ("SELECT count(DISTINCT push_id) FROM complaints WHERE campaign_id = ?", ("cmp_1",)),
        (
            "SELECT count(DISTINCT push_id) FROM complaints WHERE campaign_id = ? AND created_at > ?",
            ("cmp_1", NOW.isoformat()),
        ),
    ):
        plan = " ".join(str(step[3]) for step in conn.execute(f"EXPLAIN QUERY PLAN {query}", args))
        assert "USING INDEX idx_complaints_campaign_id" in plan, plan
    conn.close()
