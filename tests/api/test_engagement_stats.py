"""Engagement events (`POST /v1/me/pushes/{push_id}/events`) and campaign statistics
(`GET /v1/campaigns/{id}/stats`) through HTTP, checked against hand-computed numbers.

FakeClock starts at 2026-11-23 10:00 UTC; users are in UTC unless they set a zone (Auckland is
at 23:00 then, inside the default quiet hours). The worker is off: `dispatch` runs the
dispatcher by hand on the app's loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem, audience, onboard

from gateway.runtime import Runtime

Client = TestClient[Litestar]
Json = dict[str, Any]
UserHeaders = Callable[[str], Headers]
KeyHeaders = Callable[..., Headers]

EVENT_TYPES = ("opened", "clicked", "converted", "dismissed")
MISSING_PUSH = "psh_" + "0" * 24


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


def batch(client: Client, key: Headers, items: list[Json]) -> Json:
    answer = client.post("/v1/pushes/batch", json={"pushes": items}, headers=key)
    assert answer.status_code == 200, answer.text
    result: Json = answer.json()
    return result


def event(client: Client, headers: Headers, push_id: str, kind: str) -> Any:
    return client.post(f"/v1/me/pushes/{push_id}/events", json={"type": kind}, headers=headers)


def events_recorded(runtime: Runtime) -> int:
    return int(runtime.store.data.reader().execute("SELECT count(*) FROM push_events").fetchone()[0])


def create_campaign(client: Client, writer: Headers, name: str = "Winter 2026") -> str:
    created = client.post("/v1/campaigns", json={"name": name, "topic": "promotions"}, headers=writer)
    assert created.status_code == 201, created.text
    campaign_id: str = created.json()["campaign_id"]
    return campaign_id


def stats(client: Client, reader: Headers, campaign_id: str, **query: str) -> Json:
    answer = client.get(f"/v1/campaigns/{campaign_id}/stats", params=query, headers=reader)
    assert answer.status_code == 200, answer.text
    result: Json = answer.json()
    return result


@pytest.fixture
def key(as_key: KeyHeaders) -> Headers:
    return as_key("pushes:write")


# -- engagement events --------------------------------------------------------------------------


def test_each_event_type_is_recorded_once_on_the_users_delivered_push(
    client: Client, runtime: Runtime, as_user: UserHeaders, key: Headers
) -> None:
    ada = onboard(client, as_user, "ada")
    push_id = batch(client, key, [item("p1", "ada")])["results"][0]["push_id"]
    assert dispatch(client, runtime) == 1
    for kind in EVENT_TYPES:
        first = event(client, ada, push_id, kind)
        assert first.status_code == 201, first.text
        assert first.json() == {"push_id": push_id, "type": kind, "recorded": True}
        again = event(client, ada, push_id, kind)
        assert again.status_code == 200, again.text
        assert again.json() == {"push_id": push_id, "type": kind, "recorded": False}
    assert events_recorded(runtime) == 4


def test_events_only_on_a_push_delivered_to_this_user(
    client: Client, runtime: Runtime, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    ada = onboard(client, as_user, "ada")
    onboard(client, as_user, "bo")
    onboard(client, as_user, "cy")
    delivered = batch(client, key, [item("b1", "bo"), item("a1", "ada")])["results"]
    bos_push, adas_push = (r["push_id"] for r in delivered)
    assert dispatch(client, runtime) == 2
    queued = batch(client, key, [item("c1", "cy")])["results"][0]["push_id"]  # not dispatched
    rejected = batch(client, key, [item("a2", "ada")])["results"][0]  # daily cap
    assert rejected["outcome"] == "rejected"

    for push_id in (bos_push, queued, rejected["push_id"], MISSING_PUSH):
        assert_problem(event(client, ada, push_id, "opened"), 404, "push_id")
    cy = as_user("cy")
    assert_problem(event(client, cy, queued, "opened"), 404, "push_id")  # cy's own, but not delivered
    assert_problem(event(client, as_user("stranger"), adas_push, "opened"), 404, "push_id")
    assert_problem(event(client, ada, "psh_not-an-id", "opened"), 400, "push_id")
    assert event(client, as_key("pushes:write"), adas_push, "opened").status_code in (401, 403)
    assert client.post(f"/v1/me/pushes/{adas_push}/events", json={"type": "opened"}).status_code == 401
    assert events_recorded(runtime) == 0


def test_bad_event_bodies_are_refused_naming_the_field(
    client: Client, runtime: Runtime, as_user: UserHeaders, key: Headers
) -> None:
    ada = onboard(client, as_user, "ada")
    push_id = batch(client, key, [item("p1", "ada")])["results"][0]["push_id"]
    dispatch(client, runtime)
    bad: list[tuple[Any, str]] = [
        ({"type": "viewed"}, "type"),
        ({"type": "OPENED"}, "type"),
        ({"type": None}, "type"),
        ({"type": 1}, "type"),
        ({}, "type"),
        ({"type": "opened", "at": "2026-11-23T10:00:00Z"}, "at"),
    ]
    for body, field in bad:
        answer = client.post(f"/v1/me/pushes/{push_id}/events", json=body, headers=ada)
        assert_problem(answer, 400, field)
    assert_problem(client.post(f"/v1/me/pushes/{push_id}/events", content=b"[", headers=ada), 400)
    assert events_recorded(runtime) == 0
    assert event(client, ada, push_id, "opened").status_code == 201


# -- campaign statistics ------------------------------------------------------------------------


def normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))


def test_stats_match_a_hand_computed_two_variant_campaign(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    writer, reader = as_key("campaigns:write"), as_key("campaigns:read")
    cid = create_campaign(client, writer)
    a_users = ["a1", "a2", "a3", "a4", "a5"]
    b_users = ["b1", "b2", "b3", "b4"]
    users = {u: onboard(client, as_user, u) for u in a_users + b_users}
    onboard(client, as_user, "kiri", timezone="Pacific/Auckland")  # 23:00 there: deferred
    onboard(client, as_user, "nocons-a", consent=False)

    def pushed(user: str, variant: str) -> Json:
        return item(f"{variant}-{user}", user, campaign_id=cid, variant=variant)

    plan = [(u, "A") for u in [*a_users, "ghost-a", "nocons-a"]] + [
        (u, "B") for u in [*b_users, "kiri", "ghost-b"]
    ]
    submitted = batch(client, key, [pushed(u, v) for u, v in plan])
    assert submitted["counts"] == {
        "queued": 9, "deferred": 1, "rejected": 3, "subject_unknown": 2, "no_consent": 1, "quiet_hours": 1,
    }  # fmt: skip
    push_of = {u: r["push_id"] for (u, _), r in zip(plan, submitted["results"], strict=True)}

    # a5 withdraws consent while the push is queued: stopped at dispatch, never delivered.
    withdraw = {"granted": False, "notice_version": "v1"}
    assert client.put("/v1/me/consents/marketing", json=withdraw, headers=users["a5"]).status_code == 200
    assert dispatch(client, runtime) == 9
    clock.advance(minutes=5)

    engagement = {
        "a1": ["opened", "clicked", "converted"], "a2": ["opened", "clicked"], "a3": ["opened"],
        "a4": ["dismissed"], "b1": ["opened", "clicked"], "b2": ["opened", "clicked"],
        "b3": ["opened", "clicked", "converted"], "b4": ["opened"],
    }  # fmt: skip
    for user, kinds in engagement.items():
        for kind in kinds:
            assert event(client, users[user], push_of[user], kind).status_code == 201
    complaint = {"push_id": push_of["a4"], "reason": "irrelevant"}
    assert client.post("/v1/me/complaints", json=complaint, headers=users["a4"]).status_code == 201
    complaint = {"push_id": push_of["b4"], "reason": "no_consent"}  # withdraws consent after receipt
    assert client.post("/v1/me/complaints", json=complaint, headers=users["b4"]).status_code == 201

    got = stats(client, reader, cid)
    assert (got["campaign_id"], got["status"], got["metric"]) == (cid, "active", "click_through_rate")
    assert got["variants"] == {
        "A": {
            "submitted": 7, "queued": 5, "deferred": 0, "rejected": 2,
            "rejected_by_reason": {"subject_unknown": 1, "no_consent": 1},
            "stopped_at_dispatch": 1, "stopped_at_dispatch_by_reason": {"no_consent": 1},
            "expired": 0, "delivered": 4, "failed": 0,
            "opened": 3, "clicked": 2, "converted": 1, "dismissed": 1, "complaints": 1,
            "opted_out_after_receipt": 0,
            "rates": {"open_rate": 0.75, "click_through_rate": 0.5, "conversion_rate": 0.25,
                      "complaint_rate": 0.25, "opt_out_rate": 0.0},
        },
        "B": {
            "submitted": 6, "queued": 4, "deferred": 1, "rejected": 1,
            "rejected_by_reason": {"subject_unknown": 1},
            "stopped_at_dispatch": 0, "stopped_at_dispatch_by_reason": {},
            "expired": 0, "delivered": 4, "failed": 0,
            "opened": 4, "clicked": 3, "converted": 1, "dismissed": 0, "complaints": 1,
            "opted_out_after_receipt": 1,
            "rates": {"open_rate": 1.0, "click_through_rate": 0.75, "conversion_rate": 0.25,
                      "complaint_rate": 0.25, "opt_out_rate": 0.25},
        },
    }  # fmt: skip

    # Click-through, B against A (the first by name): 2/4 vs 3/4.
    # pooled p = 5/8, SE0 = sqrt(5/8 * 3/8 * (1/4 + 1/4)) = 0.342327, z = 0.25 / SE0 = 0.730297
    # 95% CI, Newcombe's from Wilson intervals 2/4 (0.150039, 0.849961) and 3/4 (0.300642, 0.954413)
    (ctr,) = got["comparisons"]
    assert (ctr["metric"], ctr["control"], ctr["variant"]) == ("click_through_rate", "A", "B")
    assert (ctr["control_rate"], ctr["variant_rate"]) == (0.5, 0.75)
    assert ctr["difference"] == pytest.approx(0.25)
    assert ctr["z"] == pytest.approx(0.730297, abs=1e-5)
    assert ctr["p_value"] == pytest.approx(0.465209, abs=1e-5)
    assert ctr["ci95"] == pytest.approx([-0.319557, 0.655287], abs=1e-5)
    assert ctr["significant"] is False
    assert "sample too small" in ctr["verdict"]
    assert "4 deliveries" in ctr["verdict"]

    # Open rate with B as control: 4/4 vs 3/4; pooled 7/8, SE0 = sqrt(7/8 * 1/8 * 1/2) = 0.233854.
    (opens,) = stats(client, reader, cid, metric="open_rate", control="B")["comparisons"]
    assert (opens["control"], opens["variant"], opens["control_rate"], opens["variant_rate"]) == (
        "B",
        "A",
        1.0,
        0.75,
    )
    assert opens["difference"] == pytest.approx(-0.25)
    assert opens["z"] == pytest.approx(-1.069045, abs=1e-5)
    assert opens["p_value"] == pytest.approx(normal_two_sided_p(-1.069045), abs=1e-5)
    assert "sample too small" in opens["verdict"]

    (opt_out,) = stats(client, reader, cid, metric="opt_out_rate")["comparisons"]
    assert (opt_out["control_rate"], opt_out["variant_rate"]) == (0.0, 0.25)
    assert opt_out["z"] == pytest.approx(1.069045, abs=1e-5)  # pooled 1/8: SE0 = 0.233854 again


def test_a_clear_difference_is_called_significant(
    client: Client, runtime: Runtime, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    """40 deliveries each; 5 clicks on control, 20 on treatment.
    pooled p = 25/80 = 0.3125, SE0 = sqrt(0.3125 * 0.6875 * (2/40)) = 0.103645, z = 0.375 / SE0 = 3.618136,
    p = 2 * (1 - Phi(3.618136)) = 0.000297; 95% CI (Newcombe's, from Wilson intervals) =
    [0.173917, 0.538897]."""
    writer, reader = as_key("campaigns:write"), as_key("campaigns:read")
    cid = create_campaign(client, writer)
    users = audience(client, runtime, "ab", 80)
    variant = {u: ("control" if i < 40 else "treatment") for i, u in enumerate(users)}
    result = batch(client, key, [item(f"ab-{u}", u, campaign_id=cid, variant=variant[u]) for u in users])
    assert result["counts"] == {"queued": 80}
    assert dispatch(client, runtime) == 80
    clickers = users[:5] + users[40:60]
    for user, answer in zip(users, result["results"], strict=True):
        if user in clickers:
            assert event(client, as_user(user), answer["push_id"], "clicked").status_code == 201

    got = stats(client, reader, cid)
    assert {v: (s["delivered"], s["clicked"]) for v, s in got["variants"].items()} == {
        "control": (40, 5),
        "treatment": (40, 20),
    }
    (ctr,) = got["comparisons"]
    assert (ctr["control"], ctr["variant"], ctr["control_rate"], ctr["variant_rate"]) == (
        "control", "treatment", 0.125, 0.5,
    )  # fmt: skip
    assert ctr["difference"] == pytest.approx(0.375)
    assert ctr["z"] == pytest.approx(3.618136, abs=1e-5)
    assert ctr["p_value"] == pytest.approx(normal_two_sided_p(3.618136), rel=1e-4)
    assert ctr["p_value"] == pytest.approx(0.000297, abs=1e-6)
    assert ctr["ci95"] == pytest.approx([0.173917, 0.538897], abs=1e-5)
    assert ctr["significant"] is True
    assert ctr["verdict"].startswith("treatment has a higher click_through_rate than control")
    assert "too small" not in ctr["verdict"]

    # Conversion: nobody converted, so the test has nothing to say.
    (conv,) = stats(client, reader, cid, metric="conversion_rate")["comparisons"]
    assert (conv["z"], conv["p_value"], conv["significant"]) == (None, None, False)
    assert conv["verdict"] == (
        "too few conversions to tell: at the rate of both variants together, each needs at least 5 "
        "deliveries expected with conversions and 5 without (control 40 deliveries, treatment 40)"
    )


def test_where_the_test_and_the_interval_disagree_neither_is_called(
    client: Client, runtime: Runtime, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    """34 deliveries each. Clicks 5 against 12: p = 0.0499, yet the 95% CI [-0.11%, +39.30%]
    reaches below zero; it was called "B has a higher click_through_rate" beside that interval.
    Conversions 11 against 19: p = 0.0507, yet the CI [+0.03%, +43.70%] is all above zero."""
    writer, reader = as_key("campaigns:write"), as_key("campaigns:read")
    cid = create_campaign(client, writer)
    users = audience(client, runtime, "edge", 68)
    variant = {u: ("A" if i < 34 else "B") for i, u in enumerate(users)}
    result = batch(client, key, [item(f"edge-{u}", u, campaign_id=cid, variant=variant[u]) for u in users])
    assert result["counts"] == {"queued": 68}
    assert dispatch(client, runtime) == 68
    did = {"clicked": users[:5] + users[34:46], "converted": users[:11] + users[34:53]}
    for user, answer in zip(users, result["results"], strict=True):
        for kind, who in did.items():
            if user in who:
                assert event(client, as_user(user), answer["push_id"], kind).status_code == 201

    for metric, p_value, ci in (
        ("click_through_rate", 0.0499, [-0.0011, 0.3930]),
        ("conversion_rate", 0.0507, [0.0003, 0.4370]),
    ):
        (got,) = stats(client, reader, cid, metric=metric)["comparisons"]
        assert (got["p_value"], got["ci95"]) == (
            pytest.approx(p_value, abs=1e-4),
            pytest.approx(ci, abs=1e-4),
        )
        assert got["significant"] is False
        assert got["verdict"].startswith(f"borderline difference in {metric} between B and A")


def test_rejected_by_reason_counts_each_code_once_per_push(
    client: Client, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    """Pushes, not reasons: one push short of two purposes is one `no_consent` push, one over
    both the day's and the week's cap is one `frequency_capped` push."""
    writer, reader = as_key("campaigns:write"), as_key("campaigns:read")
    created = client.post("/v1/campaigns", json={"name": "Carts", "topic": "cart_reminders"}, headers=writer)
    assert created.status_code == 201, created.text
    cid = created.json()["campaign_id"]
    onboard(client, as_user, "nocons", consent=False)
    capped = onboard(client, as_user, "capped", frequency={"max_per_week": 1})
    body = {"granted": True, "notice_version": "v1"}
    assert client.put("/v1/me/consents/personalization", json=body, headers=capped).status_code == 200
    pushes = [
        item(f"k{i}", user, topic="cart_reminders", campaign_id=cid, variant="A")
        for i, user in enumerate(["nocons", "capped", "capped"])
    ]
    result = batch(client, key, pushes)
    codes = [sorted(r["code"] for r in answer["reasons"]) for answer in result["results"]]
    assert codes == [
        ["no_consent", "no_consent"], [], ["frequency_capped", "frequency_capped", "topic_interval"],
    ]  # fmt: skip
    got = stats(client, reader, cid)["variants"]["A"]
    assert (got["submitted"], got["queued"], got["rejected"]) == (3, 1, 2)
    assert got["rejected_by_reason"] == {"no_consent": 1, "frequency_capped": 1, "topic_interval": 1}


def test_a_campaign_without_variants_has_one_default_group_and_no_comparison(
    client: Client, runtime: Runtime, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    writer, reader = as_key("campaigns:write"), as_key("campaigns:read")
    cid = create_campaign(client, writer)
    empty = stats(client, reader, cid)
    assert (empty["variants"], empty["comparisons"]) == ({}, [])
    onboard(client, as_user, "ada")
    batch(client, key, [item("1", "ada", campaign_id=cid), item("2", "ghost", campaign_id=cid)])
    dispatch(client, runtime)
    got = stats(client, reader, cid)
    assert list(got["variants"]) == ["default"]
    default = got["variants"]["default"]
    assert (default["submitted"], default["queued"], default["rejected"], default["delivered"]) == (
        2,
        1,
        1,
        1,
    )
    assert default["rates"]["click_through_rate"] == 0.0
    assert got["comparisons"] == []


def test_complaints_about_pushes_not_yet_delivered_leave_the_complaint_rate_a_proportion(
    client: Client, runtime: Runtime, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    # Once a 500: two complaints over one delivery made the rate 2 and the test's sqrt negative.
    writer, reader = as_key("campaigns:write"), as_key("campaigns:read")
    created = client.post(
        "/v1/campaigns", json={"name": "Receipts", "topic": "transactional"}, headers=writer
    )
    cid = created.json()["campaign_id"]
    ada = onboard(client, as_user, "ada")
    onboard(client, as_user, "bo")

    def push(key_: str, user: str, variant: str) -> Json:
        return item(key_, user, topic="transactional", campaign_id=cid, variant=variant)

    batch(client, key, [push("a1", "ada", "A"), push("b1", "bo", "B")])
    dispatch(client, runtime)
    for answer in batch(client, key, [push("a2", "ada", "A"), push("a3", "ada", "A")])["results"]:
        assert answer["outcome"] == "queued", answer
        complaint = {"push_id": answer["push_id"], "reason": "irrelevant"}
        assert client.post("/v1/me/complaints", json=complaint, headers=ada).status_code == 201
    got = stats(client, reader, cid, metric="complaint_rate")
    assert (got["variants"]["A"]["delivered"], got["variants"]["A"]["complaints"]) == (1, 0)
    assert got["variants"]["A"]["rates"]["complaint_rate"] == 0.0
    assert [c["metric"] for c in got["comparisons"]] == ["complaint_rate"]


def test_stats_refuse_bad_requests(client: Client, as_key: KeyHeaders) -> None:
    writer, reader = as_key("campaigns:write"), as_key("campaigns:read")
    cid = create_campaign(client, writer)
    assert_problem(client.get("/v1/campaigns/cmp_0000000000000000/stats", headers=reader), 404, "campaign_id")
    assert_problem(
        client.get(f"/v1/campaigns/{cid}/stats", params={"metric": "bounce_rate"}, headers=reader),
        400,
        "metric",
    )
    assert_problem(
        client.get(f"/v1/campaigns/{cid}/stats", params={"control": "Z"}, headers=reader), 400, "control"
    )
    assert_problem(
        client.get(f"/v1/campaigns/{cid}/stats", params={"control": "x" * 33}, headers=reader), 400, "control"
    )
    for scope in ("pushes:write", "complaints:write", "audit:read"):
        assert_problem(client.get(f"/v1/campaigns/{cid}/stats", headers=as_key(scope)), 403)
    assert client.get(f"/v1/campaigns/{cid}/stats").status_code == 401


def test_a_variant_with_no_delivery_has_no_rates_over_http(
    client: Client, runtime: Runtime, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    """Its only push refused (no such user): its rates are null, not 0.0, and so is the
    comparison's difference, which read as a drop of the control's whole rate."""
    writer, reader = as_key("campaigns:write"), as_key("campaigns:read")
    cid = create_campaign(client, writer)
    onboard(client, as_user, "ada")
    batch(
        client,
        key,
        [item("a", "ada", campaign_id=cid, variant="A"), item("c", "ghost", campaign_id=cid, variant="C")],
    )
    dispatch(client, runtime)
    got = stats(client, reader, cid)
    assert got["variants"]["A"]["rates"]["click_through_rate"] == 0.0
    assert set(got["variants"]["C"]["rates"].values()) == {None}
    (compared,) = got["comparisons"]
    assert (compared["control_rate"], compared["variant_rate"], compared["difference"]) == (0.0, None, None)
    assert (compared["p_value"], compared["p_value_adjusted"], compared["significant"]) == (None, None, False)
