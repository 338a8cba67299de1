"""Complaints through HTTP: the automatic actions, operator handling, the campaign auto-pause.

FakeClock starts at 2026-11-23 10:00 UTC (outside the default 21:00-08:00 quiet hours for
users in UTC). The background worker is off; `dispatch` runs the dispatcher by hand on the
app's own event loop through the TestClient's blocking portal.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXED_NOW, FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem, audience, onboard, readers, scan_bytes, scan_tables

from gateway.runtime import Runtime
from storage import ledger
from storage.connections import connect
from storage.store import DATA_FILE

Client = TestClient[Litestar]
Json = dict[str, Any]
UserHeaders = Callable[[str], Headers]
KeyHeaders = Callable[..., Headers]

MISSING_PUSH = "psh_" + "0" * 24


# -- helpers ------------------------------------------------------------------------------------


def dispatch(client: Client, runtime: Runtime, limit: int = 1_000) -> int:
    """Run the dispatcher once on the app's event loop (the worker is disabled in tests)."""
    claimed: int = client.blocking_portal.call(runtime.dispatcher.run_once, "test-owner", limit)
    return claimed


def item(key: str, user_id: str, topic: str = "promotions", **fields: Any) -> Json:
    base: Json = {
        "idempotency_key": key,
        "user_id": user_id,
        "topic": topic,
        "title": "Winter sale",
        "body": "20% off today",
    }
    return base | fields


def submit(client: Client, key: Headers, body: Json) -> Json:
    answer = client.post("/v1/pushes", json=body, headers=key)
    assert answer.status_code == 200, answer.text
    result: Json = answer.json()
    return result


def batch(client: Client, key: Headers, items: list[Json]) -> Json:
    answer = client.post("/v1/pushes/batch", json={"pushes": items}, headers=key)
    assert answer.status_code == 200, answer.text
    result: Json = answer.json()
    return result


def status_of(client: Client, key: Headers, push_id: str) -> Json:
    answer = client.get(f"/v1/pushes/{push_id}", headers=key)
    assert answer.status_code == 200, answer.text
    result: Json = answer.json()
    return result


def complain(client: Client, headers: Headers, **body: Any) -> Json:
    answer = client.post("/v1/me/complaints", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    result: Json = answer.json()
    assert result["complaint_id"].startswith("cpl_")
    return result


def set_policy(client: Client, as_key: KeyHeaders, **settings: Any) -> None:
    answer = client.put("/v1/admin/policy", json=settings, headers=as_key("admin"))
    assert answer.status_code == 200, answer.text


def codes(answer: Json) -> list[str]:
    return [str(r["code"]) for r in answer["reasons"]]


def table_count(runtime: Runtime, table: str) -> int:
    return int(runtime.store.data.reader().execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608


def delivered_push(
    client: Client, runtime: Runtime, key: Headers, user_id: str, idem: str, **fields: Any
) -> str:
    answer = submit(client, key, item(idem, user_id, **fields))
    assert answer["outcome"] == "queued", answer
    dispatch(client, runtime)
    assert status_of(client, key, answer["push_id"])["status"] == "delivered"
    push_id: str = answer["push_id"]
    return push_id


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def key(as_key: KeyHeaders) -> Headers:
    return as_key("pushes:write")


@pytest.fixture
def relaxed(client: Client, as_key: KeyHeaders) -> None:
    """Caps wide open, so only the complaint rules can stop a push."""
    set_policy(client, as_key, max_per_day=10, max_per_week=50, topic_interval_hours=0)


# -- automatic actions --------------------------------------------------------------------------


@pytest.mark.usefixtures("relaxed")
def test_a_complaint_mutes_the_pushs_topic_for_thirty_days_for_the_complainer_only(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: UserHeaders, key: Headers
) -> None:
    ada = onboard(client, as_user, "ada")
    onboard(client, as_user, "bo")
    first = delivered_push(client, runtime, key, "ada", "p1")
    filed = complain(client, ada, push_id=first, reason="irrelevant")
    assert filed["actions_taken"] == ["topic_muted"]

    until = "2026-12-23T10:00:00Z"
    muted = submit(client, key, item("p2", "ada"))
    assert muted["outcome"] == "rejected"
    assert muted["reasons"] == [{"code": "recent_complaint", "topic": "promotions", "until": until}]
    assert submit(client, key, item("o1", "ada", topic="flash_sales"))["outcome"] == "queued"
    assert submit(client, key, item("b1", "bo"))["outcome"] == "queued"

    clock.advance(days=30, seconds=-1)
    assert codes(submit(client, key, item("p3", "ada"))) == ["recent_complaint"]
    clock.advance(seconds=1)
    assert clock.now == at(until)
    assert submit(client, key, item("p4", "ada"))["outcome"] == "queued"


@pytest.mark.usefixtures("relaxed")
def test_the_preferences_say_which_topic_is_paused_and_until_when(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: UserHeaders, key: Headers
) -> None:
    """The topic's switch stays on (it is the user's), so without this the pause was invisible."""
    ada = onboard(client, as_user, "ada")
    first = delivered_push(client, runtime, key, "ada", "p1")
    assert complain(client, ada, push_id=first, reason="irrelevant")["actions_taken"] == ["topic_muted"]

    state = client.get("/v1/me/preferences", headers=ada).json()
    assert (state["topics"]["promotions"], state["paused_until"]) == (
        True,
        {"promotions": "2026-12-23T10:00:00Z"},
    )
    clock.advance(days=30)
    assert client.get("/v1/me/preferences", headers=ada).json()["paused_until"] == {}


@pytest.mark.usefixtures("relaxed")
def test_a_later_complaint_under_a_shorter_mute_length_keeps_the_longer_mute(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    """The mute's length lowered since the first complaint: a second one, about the same push,
    wrote its shorter mute over the first's, and gave the user back the pushes they refused."""
    ada = onboard(client, as_user, "ada")
    first = delivered_push(client, runtime, key, "ada", "p1")
    filed = complain(client, ada, push_id=first, reason="irrelevant")
    assert filed["actions_taken"] == ["topic_muted"]
    set_policy(client, as_key, complaint_mute_days=1)
    clock.advance(days=8)
    assert complain(client, ada, push_id=first, reason="other")["actions_taken"] == ["topic_muted"]

    muted = submit(client, key, item("p2", "ada"))
    assert muted["reasons"] == [
        {"code": "recent_complaint", "topic": "promotions", "until": "2026-12-23T10:00:00Z"}
    ]
    mutes = client.get("/v1/me/export", headers=ada).json()["mutes"]
    assert [(m["topic"], at(m["until"])) for m in mutes] == [("promotions", at("2026-12-23T10:00:00Z"))]
    assert mutes[0]["source"] == f"complaint:{filed['complaint_id']}"  # the mute that stands is the first's


def test_with_no_mute_length_a_complaint_says_nothing_was_muted(
    client: Client, runtime: Runtime, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    """Regression: with `complaint_mute_days` 0 the answer said `topic_muted` and the ledger
    recorded a mute ending at once, which muted nothing."""
    ada = onboard(client, as_user, "ada")
    set_policy(client, as_key, complaint_mute_days=0)
    first = delivered_push(client, runtime, key, "ada", "p1")
    assert complain(client, ada, push_id=first, reason="irrelevant")["actions_taken"] == []
    kinds = [e.kind for e in ledger.events(runtime.store.data.reader())]
    assert "complaint.topic_muted" not in kinds
    assert client.get("/v1/me/preferences", headers=ada).json()["paused_until"] == {}


def test_too_frequent_lowers_the_weekly_cap_to_one(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: UserHeaders, key: Headers
) -> None:
    ada = onboard(client, as_user, "ada")
    assert client.get("/v1/me/preferences", headers=ada).json()["frequency"] == {"max_per_week": 3}
    first = delivered_push(client, runtime, key, "ada", "p1")
    filed = complain(client, ada, push_id=first, reason="too_frequent")
    assert filed["actions_taken"] == ["topic_muted", "weekly_cap_lowered"]
    assert client.get("/v1/me/preferences", headers=ada).json()["frequency"] == {"max_per_week": 1}

    clock.advance(days=1)  # a new day, another topic: only the lowered weekly cap stands in the way
    answer = submit(client, key, item("t1", "ada", topic="flash_sales"))
    assert answer["reasons"] == [{"code": "frequency_capped", "window": "week", "limit": 1}]
    clock.advance(days=6)  # the delivered push leaves the rolling week
    assert submit(client, key, item("t2", "ada", topic="flash_sales"))["outcome"] == "queued"


def test_actions_taken_lists_only_what_was_done(client: Client, as_user: UserHeaders) -> None:
    ada = onboard(client, as_user, "ada")
    assert complain(client, ada, reason="too_frequent")["actions_taken"] == ["weekly_cap_lowered"]
    # Already at 1: nothing more to do, and nothing claimed.
    assert complain(client, ada, reason="too_frequent")["actions_taken"] == []

    bo = onboard(client, as_user, "bo")  # chose 0 a week: a complaint never raises it
    assert (
        client.patch("/v1/me/preferences", json={"frequency": {"max_per_week": 0}}, headers=bo).status_code
        == 200
    )
    assert complain(client, bo, reason="too_frequent")["actions_taken"] == []
    assert client.get("/v1/me/preferences", headers=bo).json()["frequency"] == {"max_per_week": 0}

    cy = onboard(client, as_user, "cy")
    for reason in ("irrelevant", "offensive", "privacy", "other"):
        assert complain(client, cy, reason=reason)["actions_taken"] == []
    listed = client.get("/v1/me/complaints", headers=cy).json()
    assert [(c["reason"], c["status"], c["flagged_for_review"]) for c in listed] == [
        (reason, "open", False) for reason in ("irrelevant", "offensive", "privacy", "other")
    ]

    dee = onboard(client, as_user, "dee", consent=False)  # nothing to withdraw: only flagged
    assert complain(client, dee, reason="no_consent")["actions_taken"] == ["flagged_for_review"]
    assert client.get("/v1/me/consents/history", headers=dee).json() == []


def test_no_consent_withdraws_marketing_consent_and_flags_the_complaint(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    ada = onboard(client, as_user, "ada")
    first = delivered_push(client, runtime, key, "ada", "p1")
    clock.advance(minutes=5)
    filed = complain(client, ada, push_id=first, reason="no_consent", comment="I never agreed to this")
    assert filed["actions_taken"] == ["topic_muted", "marketing_consent_withdrawn", "flagged_for_review"]

    history = client.get("/v1/me/consents/history", headers=ada).json()
    assert [(e["purpose"], e["granted"]) for e in history] == [("marketing", True), ("marketing", False)]
    withdrawal = history[-1]
    assert withdrawal["source"] == f"complaint:{filed['complaint_id']}"
    assert withdrawal["kind"] == "consent.withdrawn"
    assert withdrawal["notice_version"] == "v1"
    assert at(withdrawal["at"]) == clock.now
    assert withdrawal["receipt_id"]

    prefs = client.get("/v1/me/preferences", headers=ada).json()
    assert prefs["consents"]["marketing"]["granted"] is False
    answer = client.get("/v1/audit/ledger/verify", headers=as_key("audit:read"))
    assert answer.status_code == 200, answer.text
    verify = answer.json()
    assert verify["ok"] is True
    assert verify["first_invalid_seq"] is None

    (mine,) = client.get("/v1/me/complaints", headers=ada).json()
    assert mine["flagged_for_review"] is True
    assert mine["actions_taken"] == filed["actions_taken"]

    clock.advance(days=1)
    later = submit(client, key, item("p2", "ada", topic="product_tips"))
    assert later["reasons"] == [{"code": "no_consent", "purpose": "marketing"}]


def test_no_consent_withdraws_a_consent_given_under_a_notice_version_the_gate_now_refuses(
    client: Client, runtime: Runtime, as_user: UserHeaders, key: Headers
) -> None:
    """A notice version stored before the PII gate read it as a phone number (`138.1234.5678`
    passed the gate of its day) went back through the wire model's check: the complaint answered
    500, was not recorded, and the consent stayed given."""
    ada = onboard(client, as_user, "ada")
    first = delivered_push(client, runtime, key, "ada", "p1")
    runtime.store.data.writer.run_sync(
        lambda conn: conn.execute("UPDATE consents SET notice_version = '138.1234.5678'")
    )
    filed = complain(client, ada, push_id=first, reason="no_consent")
    assert "marketing_consent_withdrawn" in filed["actions_taken"]
    prefs = client.get("/v1/me/preferences", headers=ada).json()
    assert prefs["consents"]["marketing"]["granted"] is False
    history = client.get("/v1/me/consents/history", headers=ada).json()
    assert (history[-1]["kind"], history[-1]["notice_version"]) == ("consent.withdrawn", "138.1234.5678")


def test_a_complaint_about_a_transactional_push_mutes_nothing(
    client: Client, runtime: Runtime, as_user: UserHeaders, key: Headers
) -> None:
    ada = onboard(client, as_user, "ada")
    receipt = delivered_push(client, runtime, key, "ada", "t1", topic="transactional")
    assert complain(client, ada, push_id=receipt, reason="irrelevant")["actions_taken"] == []
    assert submit(client, key, item("t2", "ada", topic="transactional"))["outcome"] == "queued"


@pytest.mark.usefixtures("relaxed")
def test_queued_pushes_affected_by_the_actions_are_not_sent(
    client: Client, runtime: Runtime, data_dir: Path, as_user: UserHeaders, key: Headers
) -> None:
    """Each user has one delivered push and one still queued; a complaint arrives before the
    dispatcher runs, and the re-decision at dispatch stops the queued push with the reason."""
    cases = {
        "ada": ("irrelevant", True, "promotions", {"code": "recent_complaint", "topic": "promotions"}),
        "bo": ("no_consent", False, "flash_sales", {"code": "no_consent", "purpose": "marketing"}),
        "cy": (
            "too_frequent",
            False,
            "flash_sales",
            {"code": "frequency_capped", "window": "week", "limit": 1},
        ),
    }
    headers = {user: onboard(client, as_user, user) for user in cases}
    first = {user: delivered_push(client, runtime, key, user, f"{user}-1") for user in cases}
    waiting: dict[str, str] = {}
    for user, (reason, with_push, topic, _) in cases.items():
        answer = submit(client, key, item(f"{user}-2", user, topic=topic))
        assert answer["outcome"] == "queued"
        waiting[user] = answer["push_id"]
        complain(client, headers[user], reason=reason, **({"push_id": first[user]} if with_push else {}))
    sink = data_dir / "deliveries.jsonl"
    sent_before = sink.read_text()

    assert dispatch(client, runtime) == 3

    for user, (_, _, _, expected) in cases.items():
        ended = status_of(client, key, waiting[user])
        assert ended["status"] == "rejected", user
        assert [{k: v for k, v in r.items() if k != "until"} for r in ended["reasons"]] == [expected]
    assert sink.read_text() == sent_before


def test_someone_elses_or_an_unknown_push_is_not_found_and_nothing_is_done(
    client: Client, runtime: Runtime, as_user: UserHeaders, key: Headers
) -> None:
    onboard(client, as_user, "ada")
    eve = onboard(client, as_user, "eve")
    adas = delivered_push(client, runtime, key, "ada", "p1")
    ledger_before = table_count(runtime, "ledger")
    for headers in (eve, as_user("stranger-never-seen")):
        for push_id in (adas, MISSING_PUSH):
            body = {"push_id": push_id, "reason": "no_consent"}
            assert_problem(client.post("/v1/me/complaints", json=body, headers=headers), 404, "push_id")
    assert table_count(runtime, "complaints") == 0
    assert table_count(runtime, "mutes") == 0
    assert table_count(runtime, "ledger") == ledger_before
    assert client.get("/v1/me/preferences", headers=eve).json()["consents"]["marketing"]["granted"] is True
    assert client.get("/v1/me/complaints", headers=eve).json() == []


# -- bad input ----------------------------------------------------------------------------------

BAD_COMPLAINTS: list[tuple[Json, str]] = [
    ({"reason": "spam"}, "reason"),
    ({"reason": "other", "comment": "x" * 2_001}, "comment"),
    ({"reason": "other", "push_id": "not-a-push"}, "push_id"),
    ({"reason": "other", "push_id": 12}, "push_id"),
    ({}, "reason"),
    ({"reason": None}, "reason"),
    ({"reason": "other", "comment": 5}, "comment"),
    ({"reason": "other", "severity": "high"}, "severity"),
]


def test_bad_complaints_are_refused_naming_the_field_and_record_nothing(
    client: Client, runtime: Runtime, as_user: UserHeaders, as_key: KeyHeaders
) -> None:
    ada = onboard(client, as_user, "ada")
    ledger_before = table_count(runtime, "ledger")
    for body, field in BAD_COMPLAINTS:
        assert_problem(client.post("/v1/me/complaints", json=body, headers=ada), 400, field)
    assert_problem(client.post("/v1/me/complaints", content=b"{not json", headers=ada), 400)
    assert client.post("/v1/me/complaints", json={"reason": "other"}).status_code == 401
    assert client.post(
        "/v1/me/complaints", json={"reason": "other"}, headers=as_key("pushes:write")
    ).status_code in (
        401,
        403,
    )
    assert table_count(runtime, "complaints") == 0
    assert table_count(runtime, "ledger") == ledger_before
    assert client.get("/v1/me/complaints", headers=ada).json() == []
    assert client.get("/v1/me/preferences", headers=ada).json()["frequency"] == {"max_per_week": 3}

    comment = "很" * 2_000  # the limit is in characters, not bytes
    complain(client, ada, reason="other", comment=comment)
    (mine,) = client.get("/v1/me/complaints", headers=ada).json()
    assert mine["comment"] == comment


# -- handling: open -> acknowledged -> resolved -------------------------------------------------


@pytest.fixture
def handler(as_key: KeyHeaders) -> Headers:
    return as_key("complaints:write")


def test_a_resolution_of_spaces_alone_is_refused_and_leaves_the_complaint_open(
    client: Client, as_user: UserHeaders, handler: Headers
) -> None:
    """The user reads it as the operator's answer: a blank one closed their complaint saying nothing."""
    ada = onboard(client, as_user, "ada")
    cid = complain(client, ada, reason="offensive", comment="Rude wording")["complaint_id"]
    refused = client.post(f"/v1/complaints/{cid}/resolve", json={"resolution": " \n "}, headers=handler)
    assert_problem(refused, 400, "resolution")
    assert client.get("/v1/me/complaints", headers=ada).json()[0]["status"] == "open"


def test_a_complaint_is_acknowledged_then_resolved_each_step_timed(
    client: Client, clock: FakeClock, as_user: UserHeaders, handler: Headers
) -> None:
    ada = onboard(client, as_user, "ada")
    filed = complain(client, ada, reason="offensive", comment="Rude wording in the title")
    cid = filed["complaint_id"]
    (opened,) = client.get("/v1/me/complaints", headers=ada).json()
    assert opened["status"] == "open"
    assert (opened["acknowledged_at"], opened["resolved_at"], opened["resolution"]) == (None, None, None)

    clock.advance(hours=2)
    ack = client.post(f"/v1/complaints/{cid}/acknowledge", headers=handler)
    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "acknowledged"
    assert ack.json()["resolved_at"] is None

    clock.advance(days=1, minutes=30)
    resolution = "Title wording changed; the copywriter has been briefed"
    done = client.post(f"/v1/complaints/{cid}/resolve", json={"resolution": resolution}, headers=handler)
    assert done.status_code == 200, done.text
    closed = done.json()
    assert closed["status"] == "resolved"
    assert closed["resolution"] == resolution

    created, acked, resolved = (at(closed[k]) for k in ("created_at", "acknowledged_at", "resolved_at"))
    assert created == FIXED_NOW
    assert acked - created == timedelta(hours=2)  # time to acknowledge
    assert resolved - acked == timedelta(days=1, minutes=30)
    assert resolved - created == timedelta(days=1, hours=2, minutes=30)  # time to resolve

    (mine,) = client.get("/v1/me/complaints", headers=ada).json()
    assert mine == closed
    assert mine["comment"] == "Rude wording in the title"


def test_a_complaint_of_a_user_who_erased_their_data_is_resolved_saying_the_text_is_not_kept(
    client: Client, as_user: UserHeaders, handler: Headers
) -> None:
    """The resolution is the user's to read, sealed under their key; erasure destroyed it. The
    answer said `resolution: null` as if the text had been lost, with nothing to tell why."""
    ada = onboard(client, as_user, "ada")
    cid = complain(client, ada, reason="offensive", comment="Rude wording in the title")["complaint_id"]
    assert (
        client.post(f"/v1/complaints/{cid}/acknowledge", headers=handler).json()["complainant_erased"]
        is False
    )
    assert client.delete("/v1/me", headers=ada).status_code == 204

    done = client.post(
        f"/v1/complaints/{cid}/resolve", json={"resolution": "Wording changed"}, headers=handler
    )
    assert done.status_code == 200, done.text
    closed = done.json()
    assert (closed["status"], closed["complainant_erased"]) == ("resolved", True)
    assert (closed["comment"], closed["resolution"]) == (None, None)


def test_handling_refuses_wrong_steps_unknown_ids_and_bad_resolutions(
    client: Client, as_user: UserHeaders, handler: Headers
) -> None:
    ada = onboard(client, as_user, "ada")
    cid = complain(client, ada, reason="other")["complaint_id"]
    ack, resolve = f"/v1/complaints/{cid}/acknowledge", f"/v1/complaints/{cid}/resolve"
    assert_problem(client.post(resolve, json={"resolution": "done"}, headers=handler), 409, "status")
    assert client.post(ack, headers=handler).status_code == 200
    assert_problem(client.post(ack, headers=handler), 409, "status")

    bad: list[tuple[Json, str]] = [
        ({}, "resolution"),
        ({"resolution": ""}, "resolution"),
        ({"resolution": "x" * 2_001}, "resolution"),
        ({"resolution": 7}, "resolution"),
        ({"resolution": "ok", "extra": 1}, "extra"),
    ]
    for body, field in bad:
        assert_problem(client.post(resolve, json=body, headers=handler), 400, field)
    (mine,) = client.get("/v1/me/complaints", headers=ada).json()
    assert (mine["status"], mine["resolved_at"], mine["resolution"]) == ("acknowledged", None, None)

    assert client.post(resolve, json={"resolution": "done"}, headers=handler).status_code == 200
    assert_problem(client.post(resolve, json={"resolution": "again"}, headers=handler), 409, "status")
    assert_problem(client.post(ack, headers=handler), 409, "status")
    (mine,) = client.get("/v1/me/complaints", headers=ada).json()
    assert (mine["status"], mine["resolution"]) == ("resolved", "done")

    for unknown in ("cpl_00000000000000000000", "nonsense"):
        assert_problem(
            client.post(f"/v1/complaints/{unknown}/acknowledge", headers=handler), 404, "complaint_id"
        )
        answer = client.post(f"/v1/complaints/{unknown}/resolve", json={"resolution": "x"}, headers=handler)
        assert_problem(answer, 404, "complaint_id")


def test_handling_needs_complaints_write(client: Client, as_user: UserHeaders, as_key: KeyHeaders) -> None:
    ada = onboard(client, as_user, "ada")
    cid = complain(client, ada, reason="other")["complaint_id"]
    ack, resolve = f"/v1/complaints/{cid}/acknowledge", f"/v1/complaints/{cid}/resolve"
    for scope in ("pushes:write", "campaigns:write", "campaigns:read", "audit:read", "admin"):
        other = as_key(scope)
        assert_problem(client.post(ack, headers=other), 403)
        assert_problem(client.post(resolve, json={"resolution": "x"}, headers=other), 403)
    assert client.post(ack).status_code == 401
    assert client.post(ack, headers=ada).status_code in (401, 403)
    (mine,) = client.get("/v1/me/complaints", headers=ada).json()
    assert (mine["status"], mine["acknowledged_at"]) == ("open", None)


def test_users_see_only_their_own_complaints(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: UserHeaders, key: Headers, handler: Headers
) -> None:
    ada = onboard(client, as_user, "ada")
    bo = onboard(client, as_user, "bo")
    adas_push = delivered_push(client, runtime, key, "ada", "p1")
    first = complain(client, ada, push_id=adas_push, reason="irrelevant", comment="Not for me")
    clock.advance(minutes=1)
    second = complain(client, ada, reason="privacy", comment="Why do you know my city?")
    complain(client, bo, reason="other", comment="Bo's own words")
    assert (
        client.post(f"/v1/complaints/{first['complaint_id']}/acknowledge", headers=handler).status_code == 200
    )
    client.post(
        f"/v1/complaints/{first['complaint_id']}/resolve",
        json={"resolution": "Topic muted for you"},
        headers=handler,
    )

    adas = client.get("/v1/me/complaints", headers=ada).json()
    assert [c["complaint_id"] for c in adas] == [first["complaint_id"], second["complaint_id"]]
    assert [(c["comment"], c["status"], c["resolution"]) for c in adas] == [
        ("Not for me", "resolved", "Topic muted for you"),
        ("Why do you know my city?", "open", None),
    ]
    assert (adas[0]["push_id"], adas[0]["topic"]) == (adas_push, "promotions")
    bos = client.get("/v1/me/complaints", headers=bo).json()
    assert [c["comment"] for c in bos] == ["Bo's own words"]
    assert client.get("/v1/me/complaints", headers=as_user("nobody-yet")).json() == []


def test_comment_and_resolution_are_sealed_at_rest(
    client: Client, runtime: Runtime, data_dir: Any, as_user: UserHeaders, handler: Headers
) -> None:
    ada = onboard(client, as_user, "ada")
    comment = "Complaint-comment-7f3a: the offer mentioned my divorce"
    resolution = "Resolution-text-91bc: segment removed"
    cid = complain(client, ada, reason="privacy", comment=comment)["complaint_id"]
    client.post(f"/v1/complaints/{cid}/acknowledge", headers=handler)
    assert (
        client.post(
            f"/v1/complaints/{cid}/resolve", json={"resolution": resolution}, headers=handler
        ).status_code
        == 200
    )
    marks = [comment, resolution, "Complaint-comment-7f3a", "Resolution-text-91bc"]
    assert scan_tables(readers(runtime), marks) == {}  # no column, read decrypted, holds them
    # The bytes on disk, while the WAL still holds the writes and after a checkpoint folded them in.
    assert (data_dir / f"{DATA_FILE}-wal").stat().st_size > 0, "no live WAL to scan"
    assert scan_bytes(data_dir, marks) == {}
    runtime.store.data.checkpoint()
    assert scan_bytes(data_dir, marks) == {}
    (mine,) = client.get("/v1/me/complaints", headers=ada).json()
    assert (mine["comment"], mine["resolution"]) == (comment, resolution)


# -- automatic campaign pause -------------------------------------------------------------------


def create_campaign(client: Client, writer: Headers, name: str = "Winter 2026") -> str:
    created = client.post("/v1/campaigns", json={"name": name, "topic": "promotions"}, headers=writer)
    assert created.status_code == 201, created.text
    campaign_id: str = created.json()["campaign_id"]
    return campaign_id


def send_campaign(
    client: Client, runtime: Runtime, key: Headers, campaign_id: str, users: list[str], tag: str = "c"
) -> dict[str, str]:
    """Submit one push per user in one batch, deliver them; returns user -> push_id."""
    result = batch(client, key, [item(f"{tag}-{u}", u, campaign_id=campaign_id) for u in users])
    assert result["counts"] == {"queued": len(users)}, result["counts"]
    dispatch(client, runtime)
    return {u: r["push_id"] for u, r in zip(users, result["results"], strict=True)}


def campaign(client: Client, reader: Headers, campaign_id: str) -> Json:
    answer = client.get(f"/v1/campaigns/{campaign_id}", headers=reader)
    assert answer.status_code == 200, answer.text
    result: Json = answer.json()
    return result


def delivered(runtime: Runtime, campaign_id: str) -> int:
    row = (
        runtime.store.data.reader()
        .execute("SELECT count(*) FROM pushes WHERE campaign_id = ? AND status = 'delivered'", (campaign_id,))
        .fetchone()
    )
    return int(row[0])


def test_campaign_pauses_when_complaints_reach_the_rate_after_the_minimum(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    set_policy(client, as_key, complaint_pause_min_deliveries=100, complaint_pause_rate=0.02)
    writer, reader = as_key("campaigns:write"), as_key("campaigns:read")
    users = audience(client, runtime, "pause", 160)
    cid = create_campaign(client, writer)

    pushes = send_campaign(client, runtime, key, cid, users[:60])
    complain(client, as_user(users[0]), push_id=pushes[users[0]], reason="irrelevant")
    pushes |= send_campaign(client, runtime, key, cid, users[60:150])
    assert delivered(runtime, cid) == 150
    assert campaign(client, reader, cid)["status"] == "active"  # 1/150
    complain(client, as_user(users[1]), push_id=pushes[users[1]], reason="irrelevant")
    assert campaign(client, reader, cid)["status"] == "active"  # 2/150 = 1.3% < 2%

    waiting = batch(client, key, [item(f"w-{u}", u, campaign_id=cid) for u in users[150:155]])
    assert waiting["counts"] == {"queued": 5}

    # The third complaint: 3/150 = 2% reaches the rate.
    clock.advance(minutes=10)
    complain(client, as_user(users[2]), push_id=pushes[users[2]], reason="offensive")
    paused = campaign(client, reader, cid)
    assert paused["status"] == "paused"
    assert at(paused["paused_at"]) == clock.now
    assert paused["pause_evidence"] == {
        "rule": "complaint_rate", "complaints": 3, "deliveries": 150, "rate": 0.02,
        "threshold": 0.02, "min_deliveries": 100,
    }  # fmt: skip

    # Pushes already queued are stopped at dispatch; later ones answer campaign_paused;
    # pushes outside the campaign still go.
    assert dispatch(client, runtime) == 5
    for answer in waiting["results"]:
        ended = status_of(client, key, answer["push_id"])
        assert (ended["status"], ended["reasons"]) == ("rejected", [{"code": "campaign_paused"}])
    later = submit(client, key, item("late-1", users[155], campaign_id=cid))
    assert later["reasons"] == [{"code": "campaign_paused"}]
    assert submit(client, key, item("late-2", users[156]))["outcome"] == "queued"

    assert client.post(f"/v1/campaigns/{cid}/resume", headers=writer).status_code == 403  # operators only
    resumed = client.post(f"/v1/campaigns/{cid}/resume", headers=as_key("admin"))
    assert resumed.status_code == 200, resumed.text
    assert (resumed.json()["status"], resumed.json()["pause_reason"]) == ("active", None)
    assert submit(client, key, item("late-3", users[157], campaign_id=cid))["outcome"] == "queued"
    assert campaign(client, reader, cid)["status"] == "active"


def test_a_threshold_lowered_pauses_the_campaigns_now_over_it(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    """Regression (a review): the rule was judged only at a delivery or a complaint, so a
    campaign over a threshold an admin had just lowered stayed active and sent another round;
    one done delivering stayed active for good."""
    set_policy(client, as_key, complaint_pause_min_deliveries=100, complaint_pause_rate=0.02)
    writer, reader = as_key("campaigns:write"), as_key("campaigns:read")
    users = audience(client, runtime, "lower", 100)
    cid = create_campaign(client, writer)
    quiet = create_campaign(client, writer, name="No complaints")
    pushes = send_campaign(client, runtime, key, cid, users)
    complain(client, as_user(users[0]), push_id=pushes[users[0]], reason="irrelevant")
    assert campaign(client, reader, cid)["status"] == "active"  # 1/100 < 2%
    clock.advance(minutes=5)

    set_policy(client, as_key, complaint_pause_min_deliveries=100, complaint_pause_rate=0.01)

    paused = campaign(client, reader, cid)
    assert paused["status"] == "paused"
    assert at(paused["paused_at"]) == clock.now
    reason = paused["pause_evidence"]
    assert (reason["rule"], reason["complaints"], reason["deliveries"], reason["threshold"]) == (
        "complaint_rate",
        1,
        100,
        0.01,
    )
    assert campaign(client, reader, quiet)["status"] == "active"


def test_deliveries_can_bring_a_campaign_with_complaints_past_the_minimum(
    client: Client, runtime: Runtime, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    set_policy(client, as_key, complaint_pause_min_deliveries=100, complaint_pause_rate=0.02)
    writer, reader = as_key("campaigns:write"), as_key("campaigns:read")
    users = audience(client, runtime, "grow", 110)
    cid = create_campaign(client, writer)
    pushes = send_campaign(client, runtime, key, cid, users[:60])
    for user in users[:2]:
        complain(client, as_user(user), push_id=pushes[user], reason="too_frequent")
    assert campaign(client, reader, cid)["status"] == "active"  # 2/60 is over the rate, under the minimum

    send_campaign(client, runtime, key, cid, users[60:])
    paused = campaign(client, reader, cid)
    assert paused["status"] == "paused"
    # Judged at each delivery: the 100th (2/100 = 2%) paused it.
    reason = paused["pause_evidence"]
    assert (reason["complaints"], reason["deliveries"], reason["rate"]) == (2, 100, 0.02)


def test_auto_pause_at_the_default_policy(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    """Defaults: 0.5% of deliveries after at least 200. At 199 deliveries one complaint (0.5%)
    does not pause; the 200th delivery brings the campaign past the minimum and pauses it."""
    writer, reader = as_key("campaigns:write"), as_key("campaigns:read")
    users = audience(client, runtime, "dflt", 201)
    cid = create_campaign(client, writer)
    pushes = send_campaign(client, runtime, key, cid, users[:199])
    complain(client, as_user(users[0]), push_id=pushes[users[0]], reason="irrelevant")
    assert campaign(client, reader, cid)["status"] == "active"

    send_campaign(client, runtime, key, cid, users[199:200])
    paused = campaign(client, reader, cid)
    assert paused["status"] == "paused"
    assert paused["pause_evidence"] == {
        "rule": "complaint_rate", "complaints": 1, "deliveries": 200, "rate": 0.005,
        "threshold": 0.005, "min_deliveries": 200,
    }  # fmt: skip
    answer = submit(client, key, item("after", users[200], campaign_id=cid))
    assert answer["reasons"] == [{"code": "campaign_paused"}]
    assert client.post(f"/v1/campaigns/{cid}/resume", headers=as_key("admin")).status_code == 200
    clock.advance(minutes=1)
    assert submit(client, key, item("after-resume", users[200], campaign_id=cid))["outcome"] == "queued"


def test_one_recipient_complaining_twice_about_one_push_counts_once(
    client: Client, runtime: Runtime, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    set_policy(client, as_key, complaint_pause_min_deliveries=100, complaint_pause_rate=0.02)
    writer, reader = as_key("campaigns:write"), as_key("campaigns:read")
    users = audience(client, runtime, "twice", 100)
    cid = create_campaign(client, writer)
    pushes = send_campaign(client, runtime, key, cid, users)
    angry = as_user(users[0])
    complain(client, angry, push_id=pushes[users[0]], reason="offensive")
    again = client.post(
        "/v1/me/complaints", json={"push_id": pushes[users[0]], "reason": "offensive"}, headers=angry
    )
    assert again.status_code in (200, 201, 409), again.text
    assert campaign(client, reader, cid)["status"] == "active"  # 1 recipient of 100 is 1% < 2%
    assert (
        client.get(f"/v1/campaigns/{cid}/stats", headers=reader).json()["variants"]["default"]["complaints"]
        == 1
    )


def test_a_push_refused_before_it_was_meant_for_the_user_cannot_be_complained_of(
    client: Client, runtime: Runtime, as_user: UserHeaders, key: Headers
) -> None:
    """A push rejected at submission (`no_device`) was never to be sent; its id is in the user's
    export. A complaint about it muted its topic for 30 days and was kept with its campaign."""
    bob = as_user("bob")
    body = {"granted": True, "notice_version": "v1"}
    assert client.put("/v1/me/consents/marketing", json=body, headers=bob).status_code == 200
    refused = submit(client, key, item("never-sent", "bob"))
    assert (refused["outcome"], refused["reasons"]) == ("rejected", [{"code": "no_device"}])
    exported = client.get("/v1/me/export", headers=bob).json()["notifications"]
    assert [n["push_id"] for n in exported] == [refused["push_id"]]

    complaint = {"push_id": refused["push_id"], "reason": "irrelevant"}
    assert_problem(client.post("/v1/me/complaints", json=complaint, headers=bob), 404, "push_id")
    assert table_count(runtime, "complaints") == 0
    assert table_count(runtime, "mutes") == 0


def test_a_complaints_events_bear_the_time_its_write_ran_not_when_it_was_asked(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: UserHeaders, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A complaint read the clock before waiting for the write lock, which another process may
    hold: a consent change committed meanwhile got the lower seq and the later time, so ledger
    times ran backwards and `?at=` answers read the consent withdrawn before it was. Here another
    connection holds the write lock while the complaint waits, and the clock moves on meanwhile."""
    user = onboard(client, as_user, "tock")
    read = threading.Event()
    reading = type(clock).__call__  # the fixture's class: conftest may be imported twice

    def noted(self: FakeClock) -> datetime:
        read.set()
        return reading(self)

    holder = connect(runtime.store.data.path, runtime.store.keys.database_key)
    holder.execute("BEGIN IMMEDIATE")
    try:
        monkeypatch.setattr(type(clock), "__call__", noted)
        with ThreadPoolExecutor(1) as pool:
            filed = pool.submit(client.post, "/v1/me/complaints", json={"reason": "no_consent"}, headers=user)
            assert read.wait(30)  # the complaint has read the clock on its way to the held lock
            clock.advance(seconds=5)
            holder.execute("ROLLBACK")
            assert filed.result(timeout=30).status_code == 201
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
    withdrawn = [e for e in ledger.events(runtime.store.data.reader()) if e.kind == "consent.withdrawn"]
    assert [at(e.at) for e in withdrawn] == [FIXED_NOW + timedelta(seconds=5)]
