"""`GET /v1/me/export` holds the user's activity too: complaints (with their comment and
resolution text), every push recorded for them (with its decrypted content and its delivery to
each device), the mutes their complaints set and their engagement events — and nothing of
anyone else's.

FakeClock starts at 2026-11-23 10:00 UTC, outside the default quiet hours; the worker is off and
`dispatch` runs the dispatcher by hand on the app's event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import apns_token, onboard

from gateway.runtime import Runtime

Client = TestClient[Litestar]
Json = dict[str, Any]
UserHeaders = Callable[[str], Headers]
KeyHeaders = Callable[..., Headers]

ALICE = "alice.export+test@example.com"
BOB = "bob.export+test@example.com"
SECTIONS = ("complaints", "notifications", "mutes", "events", "history")


# -- helpers ------------------------------------------------------------------------------------


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def push(user_id: str, idem: str, topic: str, tag: str, **fields: Any) -> Json:
    return {
        "idempotency_key": idem,
        "user_id": user_id,
        "topic": topic,
        "title": f"Your {topic} news {tag}",
        "body": f"Details for you alone {tag}",
        **fields,
    }


def submit(client: Client, key: Headers, body: Json) -> Json:
    answer: Json = ok(client.post("/v1/pushes", json=body, headers=key))
    return answer


def delivered(client: Client, runtime: Runtime, key: Headers, body: Json) -> str:
    answer = submit(client, key, body)
    assert answer["outcome"] == "queued", answer
    client.blocking_portal.call(runtime.dispatcher.run_once, "test-owner", 1_000)
    assert ok(client.get(f"/v1/pushes/{answer['push_id']}", headers=key))["status"] == "delivered"
    push_id: str = answer["push_id"]
    return push_id


def record(client: Client, headers: Headers, push_id: str, event: str) -> None:
    ok(client.post(f"/v1/me/pushes/{push_id}/events", json={"type": event}, headers=headers), 201)


def complain(client: Client, headers: Headers, **body: Any) -> str:
    complaint_id: str = ok(client.post("/v1/me/complaints", json=body, headers=headers), 201)["complaint_id"]
    return complaint_id


def export(client: Client, headers: Headers) -> Json:
    body: Json = ok(client.get("/v1/me/export", headers=headers))
    return body


@pytest.fixture
def key(client: Client, as_key: KeyHeaders) -> Headers:
    """Caps wide open, so only the complaint's mute stops a push."""
    policy = {"max_per_day": 10, "max_per_week": 50, "topic_interval_hours": 0}
    ok(client.put("/v1/admin/policy", json=policy, headers=as_key("admin")))
    return as_key("pushes:write")


# -- tests --------------------------------------------------------------------------------------


def test_export_holds_complaints_pushes_mutes_and_events_decrypted_and_only_the_users(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    alice, bob = onboard(client, as_user, ALICE), onboard(client, as_user, BOB)
    handler = as_key("complaints:write")
    data = {"deeplink": "wallet://orders/Aw7DATA"}
    receipt = delivered(client, runtime, key, push(ALICE, "a1", "transactional", "Aw7PAID", data=data))
    clock.advance(minutes=1)  # so that oldest-first has one order
    offer = delivered(client, runtime, key, push(ALICE, "a2", "promotions", "Aw7OFFER"))
    theirs = delivered(client, runtime, key, push(BOB, "b1", "promotions", "Bb9OFFER"))
    record(client, alice, receipt, "opened")
    record(client, alice, offer, "clicked")
    record(client, bob, theirs, "dismissed")
    clock.advance(minutes=5)
    comment = "Aw7NOTE my neighbour saw this on my lock screen"
    complaint = complain(client, alice, push_id=offer, reason="irrelevant", comment=comment)
    bobs = complain(client, bob, push_id=theirs, reason="privacy", comment="Bb9NOTE not for me")
    resolution = "Aw7DONE the campaign no longer targets you"
    ok(client.post(f"/v1/complaints/{complaint}/acknowledge", headers=handler))
    ok(client.post(f"/v1/complaints/{complaint}/resolve", json={"resolution": resolution}, headers=handler))
    muted = submit(client, key, push(ALICE, "a3", "promotions", "Aw7MUTED"))
    assert muted["outcome"] == "rejected"

    response = client.get("/v1/me/export", headers=alice)

    body = ok(response)
    # Complaints: exactly what GET /v1/me/complaints shows, texts decrypted.
    assert body["complaints"] == ok(client.get("/v1/me/complaints", headers=alice))
    [filed] = body["complaints"]
    assert (filed["complaint_id"], filed["push_id"]) == (complaint, offer)
    assert (filed["comment"], filed["status"], filed["resolution"]) == (comment, "resolved", resolution)
    # Pushes: every one recorded for her, the rejected one too, with what the screen list shows.
    pushes = {n["push_id"]: n for n in body["notifications"]}
    assert list(pushes) == [receipt, offer, muted["push_id"]]
    for shown in ok(client.get("/v1/me/notifications", headers=alice)):
        assert {k: v for k, v in pushes[shown["push_id"]].items() if k in shown} == shown
    [device] = body["devices"]
    assert {k: v for k, v in pushes[receipt].items() if k != "why"} == {
        "push_id": receipt, "status": "delivered", "topic": "transactional", "campaign_id": None,
        "variant": None, "title": "Your transactional news Aw7PAID",
        "body": "Details for you alone Aw7PAID", "data": data,
        "created_at": "2026-11-23T10:00:00Z", "at": "2026-11-23T10:00:00Z", "reasons": [],
        "outcome": "queued", "submitted_reasons": [], "deliver_after": None,
        "expires_at": "2026-11-24T10:00:00Z", "attempts": 1, "personalized": False, "near_geohash": None,
        "deliveries": [{
            "device_id": device["device_id"], "adapter": "file", "status": "delivered", "attempts": 1,
            "last_code": None, "updated_at": "2026-11-23T10:00:00Z",
        }],
    }  # fmt: skip
    assert [d["updated_at"] for d in pushes[offer]["deliveries"]] == ["2026-11-23T10:01:00Z"]
    assert "topic:transactional (contract)" in pushes[receipt]["why"]
    assert (pushes[offer]["title"], pushes[offer]["data"]) == ("Your promotions news Aw7OFFER", {})
    until = "2026-12-23T10:06:00Z"
    rejected = pushes[muted["push_id"]]
    assert (rejected["status"], rejected["title"], rejected["body"], rejected["data"]) == (
        "rejected", None, None, None
    )  # fmt: skip
    assert rejected["reasons"] == [{"code": "recent_complaint", "topic": "promotions", "until": until}]
    assert (rejected["outcome"], rejected["personalized"], rejected["near_geohash"]) == (
        "rejected",
        None,
        None,
    )
    assert rejected["deliveries"] == []  # never sent
    # Mutes and events.
    assert body["mutes"] == [{"topic": "promotions", "until": until, "source": f"complaint:{complaint}"}]
    assert body["events"] == [
        {"push_id": receipt, "type": "opened", "at": "2026-11-23T10:01:00Z"},
        {"push_id": offer, "type": "clicked", "at": "2026-11-23T10:01:00Z"},
    ]
    # Nothing of Bob's, and the sections before these are still there.
    [bobs_device] = export(client, bob)["devices"]
    for needle in ("Bb9", theirs, bobs, "dismissed", apns_token(BOB), bobs_device["device_id"]):
        assert needle not in response.text
    assert [d["token"] for d in body["devices"]] == [apns_token(ALICE)]
    assert body["held"] is True
    assert [h["purpose"] for h in body["consent_history"]] == ["marketing"]
    # ...and Bob's own export has his.
    theirs_export = export(client, bob)
    assert [c["comment"] for c in theirs_export["complaints"]] == ["Bb9NOTE not for me"]
    assert [n["title"] for n in theirs_export["notifications"]] == ["Your promotions news Bb9OFFER"]
    [(their_push, their_deliveries)] = [
        (n["push_id"], n["deliveries"]) for n in theirs_export["notifications"]
    ]
    assert (their_push, [d["device_id"] for d in their_deliveries]) == (theirs, [bobs_device["device_id"]])
    assert [e["type"] for e in theirs_export["events"]] == ["dismissed"]
    assert "Aw7" not in str(theirs_export)


def test_export_holds_each_device_s_delivery_record_and_no_token_twice(
    client: Client, runtime: Runtime, as_user: UserHeaders, key: Headers
) -> None:
    """Regression: the per-device delivery records (`deliveries`) were held about the user and
    left out of the export. Each push lists one per device, by device id: the token is in
    `devices` alone."""
    alice = onboard(client, as_user, ALICE)
    ok(
        client.post(
            "/v1/me/devices", json={"platform": "fcm", "token": "fcm-token-Aw7SECOND"}, headers=alice
        ),
        201,
    )
    sent = delivered(client, runtime, key, push(ALICE, "a1", "transactional", "Aw7BOTH"))

    response = client.get("/v1/me/export", headers=alice)

    body = ok(response)
    [notification] = body["notifications"]
    assert notification["push_id"] == sent
    records = notification["deliveries"]
    assert sorted(d["device_id"] for d in records) == sorted(d["device_id"] for d in body["devices"])
    for record in records:
        assert set(record) == {"device_id", "adapter", "status", "attempts", "last_code", "updated_at"}
        assert (record["status"], record["attempts"], record["updated_at"]) == (
            "delivered", 1, "2026-11-23T10:00:00Z"
        )  # fmt: skip
    for token in ("fcm-token-Aw7SECOND", apns_token(ALICE)):
        assert response.text.count(token) == 1  # in `devices`, nowhere else


def test_export_holds_every_earlier_preference_and_complaint_action_from_the_ledger(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: UserHeaders, key: Headers
) -> None:
    """Regression: the export kept only the ledger's consent events, so the time zones and quiet
    hours a user had set before (held, sealed, readable) were never shown to them."""
    alice, bob = onboard(client, as_user, ALICE), onboard(client, as_user, BOB)
    first = {"timezone": "America/Sao_Paulo", "quiet_hours": {"start": "23:17", "end": "06:43"}}
    ok(client.patch("/v1/me/preferences", json=first, headers=alice))
    clock.advance(minutes=1)
    ok(client.patch("/v1/me/preferences", json={"timezone": "Asia/Tokyo"}, headers=alice))
    ok(client.patch("/v1/me/preferences", json={"timezone": "Europe/Oslo"}, headers=bob))
    offer = delivered(client, runtime, key, push(ALICE, "a1", "promotions", "Aw7OFFER"))
    complaint = complain(client, alice, push_id=offer, reason="irrelevant")

    history = export(client, alice)["history"]

    changes = [h for h in history if h["kind"] == "preferences.changed"]
    assert [(h["at"], h["detail"]) for h in changes] == [
        ("2026-11-23T10:00:00Z", first), ("2026-11-23T10:01:00Z", {"timezone": "Asia/Tokyo"}),
    ]  # fmt: skip
    assert all(h["source"] == "preference_center" for h in changes)
    actions = [h for h in history if h["kind"].startswith("complaint.")]
    assert {h["kind"] for h in actions} == {"complaint.filed", "complaint.topic_muted"}
    assert all(h["source"] == f"complaint:{complaint}" and h["detail"] for h in actions)
    assert not [h for h in history if h["kind"].startswith("consent.")]  # those are consent_history
    assert [h["seq"] for h in history] == sorted(h["seq"] for h in history)
    assert "Europe/Oslo" not in str(history)


def test_export_holds_every_push_past_the_notifications_screen_limit(
    client: Client, as_user: UserHeaders, key: Headers
) -> None:
    alice = onboard(client, as_user, ALICE)
    items = [push(ALICE, f"t{i}", "transactional", f"Aw7N{i:04d}") for i in range(501)]
    answers = ok(client.post("/v1/pushes/batch", json={"pushes": items}, headers=key))["results"]
    assert {a["outcome"] for a in answers} == {"queued"}

    assert len(ok(client.get("/v1/me/notifications", headers=alice))) == 500
    listed = export(client, alice)["notifications"]
    # One batch shares one `created_at`, so compare without order.
    assert {n["push_id"]: n["title"] for n in listed} == {
        a["push_id"]: i["title"] for a, i in zip(answers, items, strict=True)
    }
    assert len(listed) == 501


def test_an_erased_user_who_comes_back_sees_none_of_the_old_activity(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: UserHeaders, key: Headers
) -> None:
    alice = onboard(client, as_user, ALICE)
    offer = delivered(client, runtime, key, push(ALICE, "a1", "promotions", "Aw7GONE"))
    record(client, alice, offer, "opened")
    complain(client, alice, push_id=offer, reason="irrelevant", comment="Aw7GONE comment")
    before = export(client, alice)
    assert all(before[section] for section in SECTIONS)
    [old_device] = before["devices"]
    assert [d["device_id"] for n in before["notifications"] for d in n["deliveries"]] == [
        old_device["device_id"]
    ]

    assert client.delete("/v1/me", headers=alice).status_code == 204
    gone = export(client, alice)
    assert gone["held"] is False
    assert {section: gone[section] for section in SECTIONS if gone[section] != []} == {}
    clock.advance(days=1)
    onboard(client, as_user, ALICE)

    back = export(client, alice)
    assert back["held"] is True
    assert {section: back[section] for section in SECTIONS if back[section] != []} == {}
    assert old_device["device_id"] not in str(back)
