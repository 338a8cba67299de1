"""POST /v1/pushes through HTTP: every outcome, every submission reason code, pseudonymization,
idempotency, dry runs, reading a push back, the user's notifications and the decision log.

The gateway decides with the FakeClock: 2026-11-23 10:00 UTC (a Monday). Users live in UTC
unless a test says otherwise, so 10:00 is outside the default 21:00-08:00 quiet window.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from conftest import FIXED_NOW, FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem, readers, scan_bytes, scan_tables

from gateway.runtime import Runtime
from gateway.settings import Settings
from policies import ALL_REASON_CODES, DISPATCH_ONLY_REASON_CODES
from storage.store import DATA_FILE

Client = TestClient[Litestar]
Json = dict[str, Any]

BEIJING = {"lat": 39.9042, "lon": 116.4074}  # geohash-6 wx4g0b
SHANGHAI_AREA = "wtw3"  # an area Beijing is not in


@dataclass
class World:
    """One running gateway with a `pushes:write` key, and helpers to set up users over HTTP."""

    client: Client
    runtime: Runtime
    clock: FakeClock
    as_user: Callable[[str], Headers]
    as_key: Callable[..., Headers]
    key: Headers = field(default_factory=dict)
    _seq: int = 0

    def user(
        self, user_id: str, *, purposes: tuple[str, ...] = ("marketing",), device: bool = True, **prefs: Any
    ) -> str:
        """Consents, a device and preferences for `user_id`; returns their subject_ref."""
        headers = self.as_user(user_id)
        for purpose in purposes:
            answer = self.client.put(
                f"/v1/me/consents/{purpose}", json={"granted": True, "notice_version": "v1"}, headers=headers
            )
            assert answer.status_code == 200, answer.text
        if device:
            answer = self.client.post(
                "/v1/me/devices", json={"platform": "fcm", "token": f"fcm-token-{user_id}"}, headers=headers
            )
            assert answer.status_code == 201, answer.text
        if prefs:
            answer = self.client.patch("/v1/me/preferences", json=prefs, headers=headers)
            assert answer.status_code == 200, answer.text
        ref: str = self.client.get("/v1/me/preferences", headers=headers).json()["subject_ref"]
        return ref

    def body(self, user_id: str | None = None, **fields: Any) -> Json:
        self._seq += 1
        base: Json = {
            "idempotency_key": f"idem-{self._seq}",
            "topic": "promotions",
            "title": "Winter sale",
            "body": "20% off at partner stores today",
            "data": {"deeplink": "wallet://offers/winter"},
        }
        if user_id is not None:
            base["user_id"] = user_id
        return base | fields

    def submit(self, user_id: str | None = None, *, headers: Headers | None = None, **fields: Any) -> Json:
        answer = self.client.post(
            "/v1/pushes", json=self.body(user_id, **fields), headers=headers or self.key
        )
        assert answer.status_code == 200, answer.text
        result: Json = answer.json()
        return result

    def count(self, table: str) -> int:
        row = self.runtime.store.data.reader().execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
        return int(row[0])

    def row(self, push_id: str) -> Json:
        conn = self.runtime.store.data.reader()
        cur = conn.execute("SELECT * FROM pushes WHERE push_id = ?", (push_id,))
        names = [d[0] for d in cur.description]
        found = cur.fetchone()
        assert found is not None, f"no pushes row for {push_id}"
        return dict(zip(names, found, strict=True))

    def dispatch(self) -> int:
        """One pass of the delivery worker (disabled in these tests), at the FakeClock's time."""
        return asyncio.run(self.runtime.dispatcher.run_once("test-worker", 100))


@pytest.fixture
def world(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> World:
    return World(client, runtime, clock, as_user, as_key, key=as_key("pushes:write"))


def codes(answer: Json) -> list[str]:
    return [str(reason["code"]) for reason in answer["reasons"]]


# -- accepted outcomes -------------------------------------------------------------------------


def test_queued_when_consent_device_and_outside_quiet_hours(world: World) -> None:
    world.user("alice")
    answer = world.submit("alice")
    assert answer["outcome"] == "queued"
    assert answer["reasons"] == []
    assert answer["push_id"].startswith("psh_")
    assert answer.get("deliver_after") is None
    assert answer["expires_at"] == "2026-11-24T10:00:00Z"  # default TTL 24 h
    assert world.count("outbox") == 1


def test_deferred_to_the_end_of_berlin_quiet_hours(world: World) -> None:
    world.user("bruno", timezone="Europe/Berlin")
    world.clock.advance(hours=11)  # 21:00 UTC = 22:00 in Berlin (CET, UTC+1)
    answer = world.submit("bruno")
    assert answer["outcome"] == "deferred"
    # 08:00 Berlin on Tuesday is 07:00 UTC.
    assert answer["deliver_after"] == "2026-11-24T07:00:00Z"
    assert answer["reasons"] == [{"code": "quiet_hours", "until": "2026-11-24T07:00:00Z"}]
    assert answer["expires_at"] == "2026-11-24T21:00:00Z"
    assert world.row(answer["push_id"])["planned_at"].startswith("2026-11-24T07:00:00")
    assert world.count("outbox") == 1


def test_quiet_hours_follow_the_zone_rules_in_force_not_the_hosts(world: World) -> None:
    """British Columbia keeps UTC-7 all year from 2026-11-01 (tzdata 2026b). Read from a host's
    older zone files, 04:30 UTC was 20:30 in Vancouver and the push went out, where it is 21:30,
    inside the quiet window; the gateway takes zones from the `tzdata` package it pins."""
    world.user("vera", timezone="America/Vancouver")
    world.clock.advance(hours=18, minutes=30)  # 2026-11-24 04:30 UTC
    answer = world.submit("vera")
    assert (answer["outcome"], answer["deliver_after"]) == ("deferred", "2026-11-24T15:00:00Z"), answer


def test_deferred_to_the_users_own_quiet_window(world: World) -> None:
    world.user("chen", timezone="Asia/Shanghai", quiet_hours={"start": "17:00", "end": "19:30"})
    world.clock.advance(minutes=30)  # 10:30 UTC = 18:30 in Shanghai
    answer = world.submit("chen")
    assert (answer["outcome"], answer["deliver_after"]) == ("deferred", "2026-11-23T11:30:00Z")


# -- rejections, one reason code each ----------------------------------------------------------


class Rejection(NamedTuple):
    name: str
    prepare: Callable[[World], Json]  # sets the scene, returns fields for the push body
    reasons: list[Json]


def _unknown(w: World) -> Json:
    return {"user_id": "never-seen-user"}


def _erased(w: World) -> Json:
    w.user("erin")
    assert w.client.delete("/v1/me", headers=w.as_user("erin")).status_code == 204
    return {"user_id": "erin"}


def _no_device(w: World) -> Json:
    w.user("u1", device=False)
    return {"user_id": "u1"}


def _no_consent(w: World) -> Json:
    w.user("u1", purposes=())
    return {"user_id": "u1"}


def _opted_out(w: World) -> Json:
    w.user("u1", topics={"promotions": False})
    return {"user_id": "u1"}


def _no_personalization(w: World) -> Json:
    w.user("u1")
    return {"user_id": "u1", "personalized": True}


def _no_location_consent(w: World) -> Json:
    w.user("u1")
    return {"user_id": "u1", "near": {"geohash": "wx4g"}}


def _located(w: World) -> None:
    w.user("u1", purposes=("marketing", "location"))
    answer = w.client.put("/v1/me/location", json=BEIJING, headers=w.as_user("u1"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["geohash"] == "wx4g0b"


def _stale(w: World) -> Json:
    _located(w)
    w.clock.advance(minutes=31)
    return {"user_id": "u1", "near": {"geohash": "wx4g"}}


def _not_nearby(w: World) -> Json:
    _located(w)
    return {"user_id": "u1", "near": {"geohash": SHANGHAI_AREA}}


def _inside(w: World) -> Json:
    _located(w)
    return {"user_id": "u1", "near": {"geohash": "wx4g"}}


def _quiet_short_ttl(w: World) -> Json:
    w.user("u1")
    w.clock.advance(hours=12)  # 22:00 UTC; quiet until 08:00, 10 h away
    return {"user_id": "u1", "ttl_seconds": 3600}


def _muted(w: World) -> Json:
    ref = w.user("u1")
    key = w.runtime.store.directory.resolve(ref)
    assert key is not None
    until = (w.clock.now + timedelta(days=30)).isoformat()
    w.runtime.store.data.writer.run_sync(
        lambda conn: conn.execute(
            "INSERT INTO mutes (subject_id, topic, until, source) VALUES (?, 'promotions', ?, 'complaint')",
            (key.subject_id, until),
        )
    )
    return {"user_id": "u1"}


def _paused(w: World) -> Json:
    w.user("u1")
    writer = w.as_key("campaigns:write")
    created = w.client.post("/v1/campaigns", json={"name": "winter", "topic": "promotions"}, headers=writer)
    campaign_id = created.json()["campaign_id"]
    assert w.client.post(f"/v1/campaigns/{campaign_id}/pause", headers=writer).status_code == 200
    return {"user_id": "u1", "campaign_id": campaign_id}


def _content(**fields: Any) -> Callable[[World], Json]:
    def prepare(w: World) -> Json:
        w.user("u1")
        return {"user_id": "u1", **fields}

    return prepare


REJECTIONS = [
    Rejection("subject_unknown", _unknown, [{"code": "subject_unknown"}]),
    Rejection("subject_erased", _erased, [{"code": "subject_erased"}]),
    Rejection("no_device", _no_device, [{"code": "no_device"}]),
    Rejection("no_consent", _no_consent, [{"code": "no_consent", "purpose": "marketing"}]),
    Rejection("topic_opted_out", _opted_out, [{"code": "topic_opted_out", "topic": "promotions"}]),
    Rejection("no_personalization_consent", _no_personalization, [{"code": "no_personalization_consent"}]),
    Rejection("no_location_consent", _no_location_consent, [{"code": "no_location_consent"}]),
    Rejection("quiet_hours", _quiet_short_ttl, [{"code": "quiet_hours", "until": "2026-11-24T08:00:00Z"}]),
    Rejection(
        "recent_complaint",
        _muted,
        [{"code": "recent_complaint", "topic": "promotions", "until": "2026-12-23T10:00:00Z"}],
    ),
    Rejection("campaign_paused", _paused, [{"code": "campaign_paused"}]),
    Rejection(
        "payload_pii_email",
        _content(body="Questions? Write to li.wei@example.com"),
        [{"code": "payload_pii", "field": "body", "kind": "email"}],
    ),
    Rejection(
        "payload_pii_phone",
        _content(title="Call +8613812345678 now"),
        [{"code": "payload_pii", "field": "title", "kind": "phone"}],
    ),
    Rejection(
        "payload_pii_card",
        _content(data={"coupon_code": "4111 1111 1111 1111"}),
        [{"code": "payload_pii", "field": "data.coupon_code", "kind": "card"}],
    ),
    Rejection(
        "payload_pii_email_url_escaped",
        _content(
            data={"deeplink": "https://shop.example.com/offer?utm_source=push&email=li.wei%40example.com"}
        ),
        [{"code": "payload_pii", "field": "data.deeplink", "kind": "email"}],
    ),
    Rejection(
        "payload_pii_email_past_decoys_in_another_field",
        _content(title="Save 50%25 on 2+1 &amp;amp; more", body="Mail alice&#37;40example.com"),
        [{"code": "payload_pii", "field": "body", "kind": "email"}],
    ),
    Rejection(
        "payload_pii_phone_in_keycaps",
        _content(body="Call 1\ufe0f\u20e33\ufe0f\u20e38\ufe0f\u20e30013\u034f8000 today"),
        [{"code": "payload_pii", "field": "body", "kind": "phone"}],
    ),
    Rejection(
        "payload_field_not_allowed",
        _content(data={"deeplink": "wallet://x", "msisdn_hash": "abc"}),
        [{"code": "payload_field_not_allowed", "field": "msisdn_hash"}],
    ),
    Rejection(  # a data key, named in the push's reasons, read as a label: `_` groups digits too
        "payload_pii_card_in_a_data_key_grouped_by_underscores",
        _content(data={"deeplink": "wallet://x", "4111_1111_1111_1111": "1"}),
        [
            {"code": "payload_field_not_allowed", "field": "data"},
            {"code": "payload_pii", "field": "data", "kind": "card"},
        ],
    ),
    Rejection(  # read as written too: a `_` joined the 1 to the card's first group
        "payload_pii_card_in_a_data_key_behind_an_underscore",
        _content(data={"deeplink": "wallet://x", "1_4111-1111-1111-1111": "1"}),
        [
            {"code": "payload_field_not_allowed", "field": "data"},
            {"code": "payload_pii", "field": "data", "kind": "card"},
        ],
    ),
    Rejection(
        "payload_too_large",
        _content(title="x" * 101),
        [{"code": "payload_too_large", "field": "title", "limit": 100}],
    ),
    Rejection(
        "payload_too_large_body",
        _content(body="y" * 501),
        [{"code": "payload_too_large", "field": "body", "limit": 500}],
    ),
    Rejection(
        "payload_too_large_total",
        _content(data={"deeplink": "wallet://x", "image_url": "https://img.example/" + "a" * 4000}),
        [{"code": "payload_too_large", "field": "payload", "limit": 3840}],
    ),
]


@pytest.mark.parametrize("case", REJECTIONS, ids=[c.name for c in REJECTIONS])
def test_rejected_with_reason(world: World, case: Rejection) -> None:
    fields = case.prepare(world)
    answer = world.submit(**fields)
    assert answer["outcome"] == "rejected"
    assert answer["reasons"] == case.reasons
    assert answer.get("deliver_after") is None
    # A rejection is recorded in the decision log, but nothing goes to the outbox, and its
    # content is not kept: it will never be delivered or shown.
    row = world.row(answer["push_id"])
    assert (row["outcome"], row["status"]) == ("rejected", "rejected")
    assert row["content"] is None
    assert world.count("outbox") == 0


def test_the_tests_cover_every_submission_reason_code() -> None:
    submission_codes = {str(r["code"]) for case in REJECTIONS for r in case.reasons}
    submission_codes |= {"frequency_capped", "topic_interval"}  # proven by the frequency tests below
    submission_codes |= {"location_stale", "not_nearby"}  # at the sending: `test_location_is_judged...`
    assert submission_codes == ALL_REASON_CODES - DISPATCH_ONLY_REASON_CODES


def test_rejection_keeps_every_reason_that_applied(world: World) -> None:
    world.user("u1", purposes=("location",), device=False)
    answer = world.submit("u1", topic="recommendations", title="y" * 101)
    assert answer["outcome"] == "rejected"
    assert answer["reasons"] == [
        {"code": "no_device"},
        {"code": "payload_too_large", "field": "title", "limit": 100},
        {"code": "no_consent", "purpose": "marketing"},
        {"code": "no_consent", "purpose": "personalization"},
    ]


def test_removed_device_gives_no_device(world: World) -> None:
    world.user("dev")
    headers = world.as_user("dev")
    device_id = world.client.get("/v1/me/devices", headers=headers).json()[0]["device_id"]
    assert world.client.delete(f"/v1/me/devices/{device_id}", headers=headers).status_code == 204
    assert world.submit("dev")["reasons"] == [{"code": "no_device"}]


@pytest.mark.parametrize(("ttl", "outcome"), [(36_000, "rejected"), (36_001, "deferred")])
def test_quiet_hours_ttl_boundary(world: World, ttl: int, outcome: str) -> None:
    """At 22:00 the window ends in exactly 10 h: a push expiring then cannot be delivered."""
    world.user("tim")
    world.clock.advance(hours=12)
    answer = world.submit("tim", ttl_seconds=ttl)
    assert answer["outcome"] == outcome
    assert answer["reasons"] == [{"code": "quiet_hours", "until": "2026-11-24T08:00:00Z"}]


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_a_transactional_push_that_asks_for_consents_or_a_place_is_judged_on_them(
    world: World, batch: bool
) -> None:
    """A transactional push's unit reads the consents and the location only for a push that is
    personalized or near a place (`policies.state_parts_for`). Read for none, these would be
    judged on a blank state: `no_personalization_consent`, `no_location_consent`."""
    _located(world)
    given = world.client.put(
        "/v1/me/consents/personalization",
        json={"granted": True, "notice_version": "v1"},
        headers=world.as_user("u1"),
    )
    assert given.status_code == 200, given.text
    asks: list[Json] = [
        {"personalized": True},
        {"near": {"geohash": "wx4g"}},
        {"personalized": True, "near": {"geohash": "wx4g"}},
    ]
    bodies = [
        world.body("u1", topic="transactional", title="Your order", body="It has shipped", **a) for a in asks
    ]
    if batch:
        answer = world.client.post("/v1/pushes/batch", json={"pushes": bodies}, headers=world.key)
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
    else:
        results = [world.client.post("/v1/pushes", json=b, headers=world.key).json() for b in bodies]
    assert [r["outcome"] for r in results] == ["queued"] * 3, results


@pytest.mark.parametrize(
    ("prepare", "status", "reasons"),
    [
        (_inside, "delivered", []),
        (_stale, "rejected", [{"code": "location_stale", "max_age_minutes": 30}]),
        (_not_nearby, "rejected", [{"code": "not_nearby"}]),
    ],
    ids=["inside", "location_stale", "not_nearby"],
)
def test_location_is_judged_when_the_push_is_sent(
    world: World, prepare: Callable[[World], Json], status: str, reasons: list[Json]
) -> None:
    """Not at submission: its answer goes back at once, and a sender that could stop the push
    afterwards (pausing its campaign) read where the user was from `queued` against `not_nearby`
    with nothing sent (tests/api/test_pushes_near_tell_nothing_refused.py)."""
    answer = world.submit(**prepare(world), topic="nearby_offers")
    assert (answer["outcome"], answer["reasons"]) == ("queued", [])
    assert world.dispatch() == 1
    read = world.client.get(f"/v1/pushes/{answer['push_id']}", headers=world.key).json()
    assert (read["status"], read["reasons"]) == (status, reasons)
    # Counted where they are given: at submission no location reason is.
    registry = world.runtime.metrics.registry
    for code in ("not_nearby", "location_stale"):
        given = sum(r["code"] == code for r in reasons)
        assert (registry.get_sample_value("cgw_decision_reasons_total", {"code": code}) or 0) == given
    if status == "delivered":
        why = world.client.get("/v1/me/notifications", headers=world.as_user("u1")).json()[0]["why"]
        assert "consent:location" in why
        assert len(why) == len(set(why)), why  # the consent and location rules both named it


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_a_push_near_a_place_reads_the_users_location_only_when_it_is_sent(world: World, batch: bool) -> None:
    """Submission leaves the location unjudged (above), so it has no reason to read it: personal
    data read needlessly is data exposed needlessly."""
    statements: list[str] = []
    writer = world.runtime.store.data.writer
    writer.run_sync(lambda conn: conn.set_trace_callback(statements.append))
    try:
        body = world.body(topic="nearby_offers", **_inside(world))
        if batch:
            answer = world.client.post("/v1/pushes/batch", json={"pushes": [body]}, headers=world.key)
            assert answer.json()["results"][0]["outcome"] == "queued", answer.text
        else:
            assert world.client.post("/v1/pushes", json=body, headers=world.key).json()["outcome"] == "queued"
        submitted = len(statements)
        assert world.dispatch() == 1
    finally:
        writer.run_sync(lambda conn: conn.set_trace_callback(None))
    read = ["FROM locations" in s for s in statements]
    assert not any(read[:submitted]), statements[:submitted]
    assert any(read[submitted:])  # as it is sent: so the trace sees the reads it looks for


def test_a_dry_run_near_an_area_is_refused_and_tells_nothing(world: World) -> None:
    """Decided and never recorded, dry runs near ever finer geohash prefixes found one user's
    stored location: 87 of them named the whole cell, and no audit showed a thing."""
    world.user("u2", purposes=("marketing", "location"))
    assert world.client.put("/v1/me/location", json=BEIJING, headers=world.as_user("u2")).status_code == 200
    answers = [
        world.client.post(
            "/v1/pushes",
            json=world.body("u2", topic="nearby_offers", near={"geohash": near}, dry_run=True),
            headers=world.key,
        )
        for near in ("wx4g0b", "zzzzzz")  # where the user is, and nowhere near
    ]
    inside, outside = (assert_problem(answer, 400, "dry_run") for answer in answers)
    assert inside == outside
    batch = {"pushes": [world.body("u2", topic="nearby_offers", near={"geohash": "wx4g0b"}, dry_run=True)]}
    assert_problem(
        world.client.post("/v1/pushes/batch", json=batch, headers=world.key), 400, "pushes[0].dry_run"
    )
    assert (
        world.submit("u2", topic="nearby_offers", dry_run=True)["outcome"] == "queued"
    )  # no `near`: decided


# -- frequency ----------------------------------------------------------------------------------


def test_weekly_cap_three_days_then_a_fourth(world: World) -> None:
    world.user("fay")
    topics = ["promotions", "flash_sales", "product_tips"]
    for topic in topics:
        assert world.submit("fay", topic=topic)["outcome"] == "queued"
        assert world.dispatch() == 1  # sent: a push left waiting past its expiry would count nowhere
        world.clock.advance(days=1)
    fourth = world.submit("fay", topic="feedback_requests")
    assert fourth["outcome"] == "rejected"
    assert fourth["reasons"] == [{"code": "frequency_capped", "window": "week", "limit": 3}]
    # The window is rolling: a week after the first push there is room again.
    world.clock.advance(days=4)
    assert world.submit("fay", topic="feedback_requests")["outcome"] == "queued"


def test_daily_cap_two_on_the_same_day(world: World) -> None:
    world.user("gus")
    assert world.submit("gus", topic="promotions")["outcome"] == "queued"
    world.clock.advance(hours=2)
    second = world.submit("gus", topic="flash_sales")
    assert second["outcome"] == "rejected"
    assert second["reasons"] == [{"code": "frequency_capped", "window": "day", "limit": 1}]


def test_user_lowered_weekly_cap(world: World) -> None:
    world.user("hana", frequency={"max_per_week": 1})
    assert world.submit("hana", topic="promotions")["outcome"] == "queued"
    assert world.dispatch() == 1
    world.clock.advance(days=2)
    second = world.submit("hana", topic="flash_sales")
    assert second["reasons"] == [{"code": "frequency_capped", "window": "week", "limit": 1}]


def test_user_cap_zero_blocks_all_marketing_but_not_transactional(world: World) -> None:
    world.user("ivan", frequency={"max_per_week": 0})
    assert codes(world.submit("ivan")) == ["frequency_capped"]
    assert world.submit("ivan", topic="transactional")["outcome"] == "queued"


def test_topic_interval_same_topic_within_24_hours(world: World) -> None:
    world.user("jun")
    assert world.submit("jun")["outcome"] == "queued"
    assert world.dispatch() == 1  # sent at 10:00 (left waiting, it would count when it goes)
    world.clock.advance(hours=23)  # 09:00 on the next day: another calendar day, same topic
    again = world.submit("jun")
    assert again["outcome"] == "rejected"
    assert again["reasons"] == [{"code": "topic_interval", "topic": "promotions", "hours": 24}]
    world.clock.advance(hours=1)  # exactly 24 h later: allowed
    assert world.submit("jun")["outcome"] == "queued"


def test_a_push_still_waiting_as_quiet_hours_begin_counts_on_the_morning_it_will_go(world: World) -> None:
    """Queued at 20:59:30 and not sent by 21:00 (the worker behind), the first push goes at 08:00.
    Counted at 20:59:30 it left Tuesday's one push a day free, and the next was answered
    `deferred` to 08:00, to be refused there at dispatch: the sender was told it would go."""
    world.user("ona")
    world.clock.advance(hours=10, minutes=59, seconds=30)  # 20:59:30 UTC Monday
    assert world.submit("ona")["outcome"] == "queued"
    world.clock.advance(seconds=60)  # 21:00:30: quiet, the first push not sent yet
    second = world.submit("ona", topic="flash_sales")
    assert second["outcome"] == "rejected", second
    assert {"code": "frequency_capped", "window": "day", "limit": 1} in second["reasons"]


def test_rejected_pushes_do_not_count_against_caps(world: World) -> None:
    world.user("kai")
    assert world.submit("kai", title="x" * 101)["outcome"] == "rejected"
    assert world.submit("kai")["outcome"] == "queued"


def test_deferred_push_counts_on_the_day_it_is_delivered(world: World) -> None:
    world.user("lea")
    world.clock.advance(hours=12)  # 22:00 UTC Monday
    deferred = world.submit("lea")
    assert (deferred["outcome"], deferred["deliver_after"]) == ("deferred", "2026-11-24T08:00:00Z")
    world.clock.advance(hours=11)  # 09:00 Tuesday: the deferred push already uses today's slot
    assert world.submit("lea", topic="flash_sales")["reasons"] == [
        {"code": "frequency_capped", "window": "day", "limit": 1}
    ]


def test_daily_cap_follows_the_users_local_calendar_day(world: World) -> None:
    """Auckland is UTC+13 in November: 19:30 UTC Monday and 07:30 UTC Tuesday are both Tuesday there."""
    world.user("aroha", timezone="Pacific/Auckland")
    world.clock.advance(hours=9, minutes=30)  # 19:30 UTC = 08:30 Tuesday in Auckland
    assert world.submit("aroha", topic="promotions")["outcome"] == "queued"
    world.clock.advance(hours=12)  # 07:30 UTC Tuesday = 20:30 Tuesday in Auckland
    second = world.submit("aroha", topic="flash_sales")
    assert second["reasons"] == [{"code": "frequency_capped", "window": "day", "limit": 1}]
    world.clock.advance(hours=12)  # 08:30 Wednesday in Auckland (still Tuesday in UTC)
    assert world.submit("aroha", topic="flash_sales")["outcome"] == "queued"


class TestGatewayDefaultZone:
    """A user who set no zone lives in the gateway's configured zone (CGW_TIMEZONE)."""

    @pytest.fixture
    def settings(self, data_dir: Path) -> Settings:
        return Settings(data_dir=data_dir, worker_enabled=False, timezone="Asia/Shanghai")

    def test_quiet_hours_in_the_configured_zone(self, world: World) -> None:
        world.user("mei")
        assert world.submit("mei", dry_run=True)["outcome"] == "queued"  # 18:00 in Shanghai
        world.clock.advance(hours=3)  # 21:00 in Shanghai
        answer = world.submit("mei")
        assert (answer["outcome"], answer["deliver_after"]) == ("deferred", "2026-11-24T00:00:00Z")


# -- transactional ------------------------------------------------------------------------------


def test_transactional_skips_consent_caps_and_quiet_hours(world: World) -> None:
    world.user("max", purposes=(), frequency={"max_per_week": 0})
    world.clock.advance(hours=13)  # 23:00 UTC, inside quiet hours
    for _ in range(3):
        answer = world.submit("max", topic="transactional", title="Payment received", body="CNY 25.00")
        assert (answer["outcome"], answer["reasons"]) == ("queued", [])
    assert world.count("outbox") == 3


def test_transactional_is_still_minimized(world: World) -> None:
    world.user("ned", purposes=())
    answer = world.submit("ned", topic="transactional", body="Receipt sent to ned@example.org")
    assert answer["reasons"] == [{"code": "payload_pii", "field": "body", "kind": "email"}]
    answer = world.submit("ned", topic="transactional", data={"account_no": "1"})
    assert answer["reasons"] == [{"code": "payload_field_not_allowed", "field": "account_no"}]


def test_transactional_still_needs_a_device(world: World) -> None:
    world.user("oda", purposes=("location",), device=False)
    assert codes(world.submit("oda", topic="transactional")) == ["no_device"]


# -- pseudonymization ---------------------------------------------------------------------------


def test_user_id_is_never_stored(world: World) -> None:
    """In no table, read decrypted (the pseudonym is what is kept), and in no file's bytes either.
    The byte scan alone would pass a raw user id in a plaintext column: SQLCipher encrypts pages."""
    user_id = "wallet-user-7f3a9c-UNIQUE-MARKER"
    world.user(user_id)
    answer = world.submit(user_id)
    assert answer["outcome"] == "queued"
    world.submit("unknown-" + user_id)  # an unknown subject is recorded too
    assert scan_tables(readers(world.runtime), [user_id, "UNIQUE-MARKER"]) == {}
    world.runtime.store.data.checkpoint()
    assert scan_bytes(world.runtime.store.data_dir, [user_id, "UNIQUE-MARKER"]) == {}
    assert "UNIQUE-MARKER" not in world.client.get("/metrics").text


def test_subject_ref_and_user_id_address_the_same_subject(world: World) -> None:
    ref = world.user("pia")
    assert ref == world.runtime.store.pseudonyms.subject_ref("pia")
    by_ref = world.client.post("/v1/pushes", json=world.body(subject_ref=ref), headers=world.key).json()
    assert by_ref["outcome"] == "queued"
    # The same subject by user_id: the topic was pushed a moment ago and the day is used up.
    by_id = world.submit("pia")
    assert by_id["outcome"] == "rejected"
    assert set(codes(by_id)) == {"frequency_capped", "topic_interval"}
    notes = world.client.get("/v1/me/notifications", headers=world.as_user("pia")).json()
    assert [n["push_id"] for n in notes] == [by_ref["push_id"]]


def test_unknown_subject_ref_is_subject_unknown(world: World) -> None:
    ref = "sub_" + "a" * 52
    answer = world.client.post("/v1/pushes", json=world.body(subject_ref=ref), headers=world.key).json()
    assert answer["reasons"] == [{"code": "subject_unknown"}]


# -- idempotency --------------------------------------------------------------------------------


def test_same_key_same_body_same_answer_one_row(world: World) -> None:
    world.user("quinn")
    body = world.body("quinn", idempotency_key="order-42")
    first = world.client.post("/v1/pushes", json=body, headers=world.key)
    world.clock.advance(minutes=5)
    second = world.client.post("/v1/pushes", json=body, headers=world.key)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["outcome"] == "queued"
    assert world.count("pushes") == 1
    assert world.count("outbox") == 1


def test_replay_answers_the_original_decision_after_state_changed(world: World) -> None:
    world.user("rosa")
    body = world.body("rosa", idempotency_key="k-1")
    first = world.client.post("/v1/pushes", json=body, headers=world.key).json()
    assert first["outcome"] == "queued"
    withdraw = world.client.put(
        "/v1/me/consents/marketing",
        json={"granted": False, "notice_version": "v1"},
        headers=world.as_user("rosa"),
    )
    assert withdraw.status_code == 200
    world.clock.advance(hours=1)
    replay = world.client.post("/v1/pushes", json=body, headers=world.key).json()
    assert replay == first
    # A new key after the withdrawal is decided afresh.
    fresh = world.submit("rosa", topic="flash_sales")
    assert {"code": "no_consent", "purpose": "marketing"} in fresh["reasons"]


def test_replay_of_a_rejection_and_a_deferral(world: World) -> None:
    world.user("sam")
    world.clock.advance(hours=12)
    bodies = [world.body("sam", idempotency_key="d"), world.body("sam", idempotency_key="r", title="t" * 101)]
    originals = [world.client.post("/v1/pushes", json=b, headers=world.key).json() for b in bodies]
    assert [o["outcome"] for o in originals] == ["deferred", "rejected"]
    world.clock.advance(hours=20)
    replays = [world.client.post("/v1/pushes", json=b, headers=world.key).json() for b in bodies]
    assert replays == originals
    assert world.count("pushes") == 2


def test_push_rejected_at_dispatch_shows_the_new_status(world: World) -> None:
    world.user("wen")
    body = world.body("wen", idempotency_key="late-withdrawal")
    first = world.client.post("/v1/pushes", json=body, headers=world.key).json()
    withdraw = {"granted": False, "notice_version": "v1"}
    assert (
        world.client.put("/v1/me/consents/marketing", json=withdraw, headers=world.as_user("wen")).status_code
        == 200
    )
    assert world.dispatch() == 1
    read = world.client.get(f"/v1/pushes/{first['push_id']}", headers=world.key).json()
    assert (read["outcome"], read["status"]) == ("queued", "rejected")
    assert read["reasons"] == [{"code": "no_consent", "purpose": "marketing"}]


def test_replay_after_dispatch_is_still_the_submission_answer(world: World) -> None:
    """Regression: replays were answered from `pushes.reasons`, which dispatch overwrote, giving
    outcome "queued" with the dispatch-time reason no_consent."""
    world.user("wen")
    body = world.body("wen", idempotency_key="late-withdrawal")
    first = world.client.post("/v1/pushes", json=body, headers=world.key).json()
    withdraw = {"granted": False, "notice_version": "v1"}
    assert (
        world.client.put("/v1/me/consents/marketing", json=withdraw, headers=world.as_user("wen")).status_code
        == 200
    )
    assert world.dispatch() == 1
    replay = world.client.post("/v1/pushes", json=body, headers=world.key).json()
    assert replay == first


def test_subject_ref_replay_of_a_user_id_submission_is_the_same_push(world: World) -> None:
    ref = world.user("tao")
    first = world.submit("tao", idempotency_key="same")
    by_ref = world.body(subject_ref=ref, idempotency_key="same")
    again = world.client.post("/v1/pushes", json=by_ref, headers=world.key)
    assert again.status_code == 200, again.text
    assert again.json()["push_id"] == first["push_id"]


def test_same_key_different_body_is_422(world: World) -> None:
    world.user("uma")
    world.submit("uma", idempotency_key="dup")
    before = (world.count("pushes"), world.count("outbox"))
    changed = world.body("uma", idempotency_key="dup", title="Another title")
    assert_problem(world.client.post("/v1/pushes", json=changed, headers=world.key), 422, "idempotency_key")
    assert (world.count("pushes"), world.count("outbox")) == before


@pytest.mark.parametrize(("first_ttl", "retry_ttl"), [(None, 86400), (86400, None)])
def test_default_ttl_left_out_or_spelled_out_is_one_push(
    world: World, first_ttl: int | None, retry_ttl: int | None
) -> None:
    """Regression: the fingerprint kept the body's spelling, so a client that filled in the
    documented default on retry got 422 for the push it had already sent."""
    world.user("uma")
    first = world.client.post("/v1/pushes", json=ttl_body(world, first_ttl), headers=world.key)
    retry = world.client.post("/v1/pushes", json=ttl_body(world, retry_ttl), headers=world.key)
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json()
    assert world.count("pushes") == 1


def test_another_ttl_under_the_same_key_is_still_422(world: World) -> None:
    world.user("uma")
    world.client.post("/v1/pushes", json=ttl_body(world, None), headers=world.key)
    before = (world.count("pushes"), world.count("outbox"))
    for ttl in (3600, 86399):
        response = world.client.post("/v1/pushes", json=ttl_body(world, ttl), headers=world.key)
        assert_problem(response, 422, "idempotency_key")
    assert (world.count("pushes"), world.count("outbox")) == before


@pytest.mark.parametrize(
    ("first_ttl", "retry_ttl", "status"),
    [
        (None, 86400, 200),  # the TTL the push was given, spelled out
        (None, 3600, 422),  # today's default, which never applied to it
        (None, None, 200),  # the same spelling
        (86400, None, 422),  # left out, it now means 3600
    ],
)
def test_a_left_out_ttl_means_the_default_in_force_at_the_retry(
    world: World, first_ttl: int | None, retry_ttl: int | None, status: int
) -> None:
    """Regression: the other spelling was today's default, not the TTL the push was given, so
    after an admin changed the default the wrong retries were taken for the push."""
    world.user("uma")
    first = world.client.post("/v1/pushes", json=ttl_body(world, first_ttl), headers=world.key)
    admin = world.as_key("admin")
    assert (
        world.client.put("/v1/admin/policy", json={"default_ttl_seconds": 3600}, headers=admin).status_code
        == 200
    )
    retry = world.client.post("/v1/pushes", json=ttl_body(world, retry_ttl), headers=world.key)
    assert retry.status_code == status, retry.text
    if status == 200:
        assert retry.json() == first.json()
    assert world.count("pushes") == 1


def ttl_body(world: World, ttl: int | None) -> Json:
    body = world.body("uma", idempotency_key="ttl")
    if ttl is not None:
        body["ttl_seconds"] = ttl
    return body


def test_same_idempotency_key_from_another_api_key_is_another_push(world: World) -> None:
    world.user("vic")
    other = world.as_key("pushes:write")
    body = world.body("vic", idempotency_key="shared")
    mine = world.client.post("/v1/pushes", json=body, headers=world.key).json()
    theirs = world.client.post("/v1/pushes", json=body, headers=other).json()
    assert mine["push_id"] != theirs["push_id"]
    assert mine["outcome"] == "queued"
    assert theirs["outcome"] == "rejected"  # a second push on the same day for the same user
    assert world.count("pushes") == 2


# -- dry run ------------------------------------------------------------------------------------


def test_dry_run_decides_but_records_and_counts_nothing(world: World) -> None:
    world.user("wes")
    for _ in range(3):
        dry = world.submit("wes", dry_run=True)
        assert dry["outcome"] == "queued"
        assert dry["push_id"] is None
    assert (world.count("pushes"), world.count("outbox")) == (0, 0)
    # The daily cap is untouched by the dry runs.
    assert world.submit("wes")["outcome"] == "queued"
    dry = world.submit("wes", topic="flash_sales", dry_run=True)
    assert dry["reasons"] == [{"code": "frequency_capped", "window": "day", "limit": 1}]
    assert world.count("pushes") == 1


def decisions_metric(world: World) -> float:
    text = world.client.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("cgw_decisions_total{")
    )


def test_dry_run_is_not_counted_in_metrics(world: World) -> None:
    """Regression: dry runs (and idempotent replays) were counted in cgw_decisions_total."""
    world.user("wes")
    before = decisions_metric(world)
    for _ in range(3):
        world.submit("wes", dry_run=True)
    assert decisions_metric(world) == before


def test_real_decisions_are_counted_in_metrics_once(world: World) -> None:
    world.user("wes")
    before = decisions_metric(world)
    body = world.body("wes", idempotency_key="once")
    for _ in range(3):  # one decision, two replays
        assert world.client.post("/v1/pushes", json=body, headers=world.key).status_code == 200
    world.submit("wes", title="x" * 101)
    assert decisions_metric(world) == before + 2


def test_dry_run_answers_rejections_and_deferrals(world: World) -> None:
    world.user("xia", timezone="Europe/Berlin")
    world.clock.advance(hours=11)
    dry = world.submit("xia", dry_run=True)
    assert (dry["outcome"], dry["deliver_after"]) == ("deferred", "2026-11-24T07:00:00Z")
    assert world.submit("nobody", dry_run=True)["reasons"] == [{"code": "subject_unknown"}]
    assert world.count("pushes") == 0


def test_dry_run_does_not_use_the_idempotency_key(world: World) -> None:
    world.user("yan")
    world.submit("yan", idempotency_key="try", dry_run=True)
    real = world.submit("yan", idempotency_key="try", title="Different")
    assert real["outcome"] == "queued"
    assert real["push_id"] is not None


# -- reading a push -----------------------------------------------------------------------------


def test_get_push_shows_status_reasons_attempts_expiry(world: World) -> None:
    world.user("zoe", timezone="Europe/Berlin")
    world.clock.advance(hours=11)
    deferred = world.submit("zoe")
    read = world.client.get(f"/v1/pushes/{deferred['push_id']}", headers=world.key)
    assert read.status_code == 200
    got = read.json()
    assert got["push_id"] == deferred["push_id"]
    assert (got["status"], got["outcome"]) == ("deferred", "deferred")
    assert got["reasons"] == deferred["reasons"]
    assert got["attempts"] == 0
    assert got["expires_at"] == deferred["expires_at"] == "2026-11-24T21:00:00Z"
    assert got["deliver_after"] == "2026-11-24T07:00:00Z"
    assert got["topic"] == "promotions"
    assert got["created_at"] == "2026-11-23T21:00:00Z"

    rejected = world.submit("zoe", title="a" * 101)
    got = world.client.get(f"/v1/pushes/{rejected['push_id']}", headers=world.key).json()
    assert (got["status"], got["reasons"]) == ("rejected", rejected["reasons"])


def test_a_push_is_read_by_the_key_that_sent_it_and_campaign_readers_only(world: World) -> None:
    """Regression: any pushes:write or campaigns:read key read any push, reasons included."""
    world.user("zoe", timezone="Europe/Berlin")
    world.clock.advance(hours=11)  # quiet hours in Berlin: the reason names when they end there
    mine = world.submit("zoe", topic="transactional")["push_id"]
    writer = world.as_key("campaigns:write")
    campaign = world.client.post("/v1/campaigns", json={"name": "w", "topic": "promotions"}, headers=writer)
    in_campaign = world.submit("zoe", campaign_id=campaign.json()["campaign_id"])["push_id"]
    other_service, campaign_reader = world.as_key("pushes:write"), world.as_key("campaigns:read")
    for push_id in (mine, in_campaign):
        assert world.client.get(f"/v1/pushes/{push_id}", headers=world.key).status_code == 200
        assert_problem(world.client.get(f"/v1/pushes/{push_id}", headers=other_service), 404, "push_id")
    assert world.client.get(f"/v1/pushes/{in_campaign}", headers=campaign_reader).status_code == 200
    assert_problem(world.client.get(f"/v1/pushes/{mine}", headers=campaign_reader), 404, "push_id")


def test_get_unknown_push_is_404(world: World) -> None:
    assert_problem(world.client.get("/v1/pushes/psh_000000000000000000000000", headers=world.key), 404)


GET_PUSH_SCOPES = [
    (("pushes:write",), 404),  # past the guard, but another service's push
    (("campaigns:read",), 200),  # a campaign push
    (("campaigns:write",), 403),
    (("audit:read",), 403),
    (("complaints:write",), 403),
    (("admin",), 403),
]


def test_get_push_scopes(world: World) -> None:
    world.user("ann")
    writer = world.as_key("campaigns:write")
    campaign = world.client.post("/v1/campaigns", json={"name": "w", "topic": "promotions"}, headers=writer)
    push_id = world.submit("ann", campaign_id=campaign.json()["campaign_id"])["push_id"]
    for scopes, status in GET_PUSH_SCOPES:
        answer = world.client.get(f"/v1/pushes/{push_id}", headers=world.as_key(*scopes))
        assert answer.status_code == status, (scopes, answer.text)
        if status != 200:
            assert_problem(answer, status)


def test_push_api_refuses_users_and_anonymous_callers(world: World) -> None:
    world.user("ann")
    push_id = world.submit("ann")["push_id"]
    assert world.client.get(f"/v1/pushes/{push_id}", headers=world.as_user("ann")).status_code == 403
    assert world.client.get(f"/v1/pushes/{push_id}").status_code == 401
    before = world.count("pushes")
    for headers in (world.as_user("ann"), world.as_key("campaigns:read"), {}):
        answer = world.client.post("/v1/pushes", json=world.body("ann"), headers=headers)
        assert answer.status_code in (401, 403)
    assert world.count("pushes") == before


# -- the user's notifications -------------------------------------------------------------------


def test_notifications_list_own_accepted_pushes_with_why(world: World) -> None:
    world.user("bea")
    world.user("cal")
    queued = world.submit("bea", title="Bea's coupon", body="10% off coffee")
    world.submit("bea", topic="flash_sales", title="rejected one")  # frequency_capped: not listed
    world.submit("cal", title="Cal's coupon")
    notes = world.client.get("/v1/me/notifications", headers=world.as_user("bea"))
    assert notes.status_code == 200
    listed = notes.json()
    assert [n["push_id"] for n in listed] == [queued["push_id"]]
    note = listed[0]
    assert (note["title"], note["body"], note["topic"], note["status"]) == (
        "Bea's coupon",
        "10% off coffee",
        "promotions",
        "queued",
    )
    assert "consent:marketing" in note["why"]
    assert "topic:promotions on" in note["why"]
    assert any(fact.startswith("quiet hours: outside") for fact in note["why"])
    assert any(fact.startswith("frequency: 1 of 3 this week") for fact in note["why"])
    cal = world.client.get("/v1/me/notifications", headers=world.as_user("cal")).json()
    assert [n["title"] for n in cal] == ["Cal's coupon"]
    assert world.client.get("/v1/me/notifications", headers=world.as_user("stranger")).json() == []


def test_why_is_sealed_with_the_push_not_kept_in_clear(world: World) -> None:
    """What let a push through names the subject's time zone, quiet hours and cap: kept in the
    row's `allowed_by` in clear, where the preference document holding them is sealed."""
    world.user(
        "eve",
        timezone="Pacific/Chatham",
        quiet_hours={"start": "03:17", "end": "03:19"},
        frequency={"max_per_week": 2},
    )
    queued = world.submit("eve")
    assert queued["outcome"] == "queued", queued
    assert world.row(queued["push_id"])["allowed_by"] == "[]"
    plain = " ".join(
        str(value)
        for row in world.runtime.store.data.reader().execute("SELECT * FROM pushes")
        for value in row
        if not isinstance(value, bytes)
    )
    assert "Chatham" not in plain
    assert "03:17" not in plain
    expected = ["quiet hours: outside 03:17-03:19 Pacific/Chatham", "frequency: 1 of 2 this week"]
    (note,) = world.client.get("/v1/me/notifications", headers=world.as_user("eve")).json()
    assert set(expected) <= set(note["why"])
    exported = world.client.get("/v1/me/export", headers=world.as_user("eve")).json()
    assert set(expected) <= set(exported["notifications"][0]["why"])


def test_notifications_include_deferred_pushes(world: World) -> None:
    world.user("dan")
    world.clock.advance(hours=12)
    deferred = world.submit("dan")
    notes = world.client.get("/v1/me/notifications", headers=world.as_user("dan")).json()
    assert [(n["push_id"], n["status"], n["at"]) for n in notes] == [
        (deferred["push_id"], "deferred", "2026-11-24T08:00:00Z")
    ]


# -- decision log -------------------------------------------------------------------------------


def test_decision_log_row_per_decision_with_policy_version(world: World) -> None:
    world.user("eve")
    admin = world.as_key("admin")
    version = world.client.get("/v1/admin/policy", headers=admin).json()["version"]
    first = world.submit("eve")
    changed = world.client.put("/v1/admin/policy", json={"max_per_day": 2}, headers=admin)
    assert changed.status_code == 200, changed.text
    new_version = changed.json()["version"]
    assert new_version != version
    second = world.submit("eve", topic="flash_sales")  # allowed under the new daily cap
    third = world.submit("eve", topic="product_tips")
    assert [a["outcome"] for a in (first, second, third)] == ["queued", "queued", "rejected"]

    rows = [world.row(a["push_id"]) for a in (first, second, third)]
    assert [r["policy_version"] for r in rows] == [version, new_version, new_version]
    assert [r["outcome"] for r in rows] == ["queued", "queued", "rejected"]
    assert '"frequency_capped"' in rows[2]["reasons"]
    assert [r["content"] is not None for r in rows] == [True, True, False]  # a rejection keeps no text
    assert world.count("pushes") == 3


def test_content_is_sealed_in_the_data_files(world: World) -> None:
    world.user("fox")
    title = "Sealed-title-Q7Z3 exclusive offer"
    body = "Sealed-body-K9W2 only for you"
    answer = world.submit("fox", title=title, body=body)
    row = world.row(answer["push_id"])
    assert title.encode() not in row["content"]
    assert body.encode() not in row["content"]
    marks = ["Sealed-title-Q7Z3", "Sealed-body-K9W2"]
    assert scan_tables(readers(world.runtime), marks) == {}  # no column, sealed or not, holds them
    # The bytes on disk, while the WAL still holds the write and after a checkpoint folded it in.
    data_dir = world.runtime.store.data_dir
    assert (data_dir / f"{DATA_FILE}-wal").stat().st_size > 0, "no live WAL to scan"
    assert scan_bytes(data_dir, marks) == {}
    world.runtime.store.data.checkpoint()
    assert scan_bytes(data_dir, marks) == {}
    # ...and yet the user can read it back.
    notes = world.client.get("/v1/me/notifications", headers=world.as_user("fox")).json()
    assert notes[0]["title"] == title


def test_idempotency_keys_are_stored_only_as_keyed_hashes(world: World) -> None:
    """A service may put anything in an idempotency key, even an e-mail; it is not stored as given."""
    raw = "order-for-someone@example.com-42"
    world.user("alice")
    first = world.submit("alice", idempotency_key=raw)
    again = world.submit("alice", idempotency_key=raw)
    assert again["push_id"] == first["push_id"]
    stored = [r[0] for r in world.runtime.store.data.reader().execute("SELECT idempotency_key FROM pushes")]
    assert stored
    assert all(raw not in value for value in stored)


def test_a_replay_after_the_worker_deferred_the_push_is_the_first_answer(world: World) -> None:
    """The replay took `deliver_after` from the row, which the worker sets when it defers a push:
    queued at 20:59, deferred at dispatch after 21:00, it replayed `queued` with a time."""
    world.user("emil")
    world.clock.advance(hours=21 - FIXED_NOW.hour, minutes=-FIXED_NOW.minute - 1)  # 20:59, before quiet hours
    body = world.body("emil", idempotency_key="queued-then-quiet")
    first = world.client.post("/v1/pushes", json=body, headers=world.key).json()
    assert (first["outcome"], first["deliver_after"]) == ("queued", None)
    world.clock.advance(minutes=2)
    assert world.dispatch() == 1
    read = world.client.get(f"/v1/pushes/{first['push_id']}", headers=world.key).json()
    assert (read["status"], read["deliver_after"] is not None) == ("deferred", True)
    assert world.client.post("/v1/pushes", json=body, headers=world.key).json() == first
