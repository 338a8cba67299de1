"""POST /v1/pushes/batch and the campaign lifecycle (create, pause, resume) through HTTP.

FakeClock: 2026-11-23 10:00 UTC. Users are in UTC unless they set a zone; Auckland (NZDT,
UTC+13) is at 23:00 then, inside the default 21:00-08:00 quiet window.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import apns_token, assert_problem, onboard

from gateway.runtime import Runtime

Client = TestClient[Litestar]
Json = dict[str, Any]
UserHeaders = Callable[[str], Headers]
KeyHeaders = Callable[..., Headers]


def item(key: str, user_id: str, **fields: Any) -> Json:
    base: Json = {
        "idempotency_key": key,
        "user_id": user_id,
        "topic": "promotions",
        "title": "Winter sale",
        "body": "20% off today",
    }
    return base | fields


def counts(runtime: Runtime) -> tuple[int, int]:
    conn = runtime.store.data.reader()
    pushes = conn.execute("SELECT count(*) FROM pushes").fetchone()[0]
    outbox = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    return int(pushes), int(outbox)


@pytest.fixture
def key(as_key: KeyHeaders) -> Headers:
    return as_key("pushes:write")


def batch(client: Client, key: Headers, items: list[Json]) -> Json:
    answer = client.post("/v1/pushes/batch", json={"pushes": items}, headers=key)
    assert answer.status_code == 200, answer.text
    result: Json = answer.json()
    return result


# -- batch --------------------------------------------------------------------------------------


def test_batch_answers_each_item_in_order_with_counts(
    client: Client, runtime: Runtime, as_user: UserHeaders, key: Headers
) -> None:
    onboard(client, as_user, "ada")
    onboard(client, as_user, "kiri", timezone="Pacific/Auckland")
    result = batch(
        client,
        key,
        [
            item("1", "ada"),
            item("2", "nobody-knows-me"),
            item("3", "kiri"),
            item("4", "ada", topic="transactional", title="x" * 101),
        ],
    )
    outcomes = [(r["outcome"], [x["code"] for x in r["reasons"]]) for r in result["results"]]
    assert outcomes == [
        ("queued", []),
        ("rejected", ["subject_unknown"]),
        ("deferred", ["quiet_hours"]),
        ("rejected", ["payload_too_large"]),
    ]
    assert result["results"][2]["deliver_after"] == "2026-11-23T19:00:00Z"  # 08:00 NZDT
    assert result["counts"] == {
        "queued": 1,
        "deferred": 1,
        "rejected": 2,
        "subject_unknown": 1,
        "quiet_hours": 1,
        "payload_too_large": 1,
    }
    ids = [r["push_id"] for r in result["results"]]
    assert len(set(ids)) == 4
    assert counts(runtime) == (4, 2)
    got = client.get(f"/v1/pushes/{ids[2]}", headers=key).json()
    assert (got["status"], got["deliver_after"]) == ("deferred", "2026-11-23T19:00:00Z")


def test_batch_counts_caps_across_its_own_items(
    client: Client, runtime: Runtime, as_user: UserHeaders, key: Headers
) -> None:
    onboard(client, as_user, "bo")
    result = batch(
        client,
        key,
        [item("a", "bo"), item("b", "bo", topic="flash_sales"), item("c", "bo")],
    )
    answers = result["results"]
    assert [a["outcome"] for a in answers] == ["queued", "rejected", "rejected"]
    assert answers[1]["reasons"] == [{"code": "frequency_capped", "window": "day", "limit": 1}]
    assert answers[2]["reasons"] == [
        {"code": "frequency_capped", "window": "day", "limit": 1},
        {"code": "topic_interval", "topic": "promotions", "hours": 24},
    ]
    assert result["counts"] == {"queued": 1, "rejected": 2, "frequency_capped": 2, "topic_interval": 1}
    assert counts(runtime) == (3, 1)


def test_batch_counts_a_deferred_item_on_its_delivery_day(
    client: Client, runtime: Runtime, as_user: UserHeaders, key: Headers
) -> None:
    onboard(client, as_user, "kiri", timezone="Pacific/Auckland")  # 23:00 there: quiet hours
    result = batch(client, key, [item("a", "kiri"), item("b", "kiri", topic="flash_sales")])
    first, second = result["results"]
    assert (first["outcome"], first["deliver_after"]) == ("deferred", "2026-11-23T19:00:00Z")
    # Also deferred to 08:00 Tuesday in Auckland, the day the first one already uses.
    assert second["outcome"] == "rejected"
    assert {"code": "frequency_capped", "window": "day", "limit": 1} in second["reasons"]
    assert counts(runtime) == (2, 1)


def test_batch_and_single_submissions_share_the_caps(
    client: Client, as_user: UserHeaders, key: Headers
) -> None:
    onboard(client, as_user, "cy")
    single = client.post("/v1/pushes", json=item("s", "cy"), headers=key).json()
    assert single["outcome"] == "queued"
    result = batch(client, key, [item("b", "cy", topic="product_tips")])
    assert result["counts"] == {"rejected": 1, "frequency_capped": 1}


def test_batch_counts_each_reason_code_once_per_push(
    client: Client, runtime: Runtime, as_user: UserHeaders, key: Headers
) -> None:
    """`counts` says how many pushes a code stopped, not how many reasons carry it: a push short
    of two purposes, or over both the day's and the week's cap, counts once under its code."""
    device = {"platform": "apns", "token": apns_token("kai")}  # and no consent at all
    assert client.post("/v1/me/devices", json=device, headers=as_user("kai")).status_code == 201
    onboard(client, as_user, "lu", frequency={"max_per_week": 1})
    result = batch(
        client,
        key,
        [item("a", "kai", topic="cart_reminders"), item("b", "lu"), item("c", "lu", topic="flash_sales")],
    )
    reasons = [sorted(x["code"] for x in r["reasons"]) for r in result["results"]]
    assert reasons == [["no_consent", "no_consent"], [], ["frequency_capped", "frequency_capped"]]
    assert result["counts"] == {"queued": 1, "rejected": 2, "no_consent": 1, "frequency_capped": 1}


def test_batch_judges_each_items_content_though_alike_ones_share_a_verdict(
    client: Client, as_user: UserHeaders, key: Headers
) -> None:
    """A batch's items of one content share minimization's verdict (`ContentVerdicts`); an item
    differing from the one before in its body or data alone is judged on its own."""
    for user in ("u1", "u2", "u3", "u4", "u5"):
        onboard(client, as_user, user)
    result = batch(
        client,
        key,
        [
            item("a", "u1", topic="flash_sales"),
            item("b", "u2", topic="flash_sales"),
            item("c", "u3", topic="flash_sales", body="Mail ann@example.com"),
            item("d", "u4", topic="flash_sales", data={"surprise": "1"}),
            item("e", "u5", topic="flash_sales"),
        ],
    )
    reasons = [[x["code"] for x in r["reasons"]] for r in result["results"]]
    assert reasons == [[], [], ["payload_pii"], ["payload_field_not_allowed"], []]


@pytest.mark.parametrize(
    ("bad", "status", "field"),
    [
        ({"topic": "spam"}, 400, "pushes[2].topic"),
        ({"ttl_seconds": 604801}, 400, "pushes[2].ttl_seconds"),
        ({"idempotency_key": "k" * 129}, 400, "pushes[2].idempotency_key"),
        ({"dry_run": "true"}, 400, "pushes[2].dry_run"),
        ({"surprise": 1}, 400, "surprise"),
        ({"campaign_id": "cmp_0123456789abcdef"}, 404, "pushes[2].campaign_id"),
    ],
    ids=["topic", "ttl", "idempotency key", "dry_run string", "unknown field", "unknown campaign"],
)
def test_one_invalid_item_refuses_the_whole_batch(
    client: Client,
    runtime: Runtime,
    as_user: UserHeaders,
    key: Headers,
    bad: Json,
    status: int,
    field: str,
) -> None:
    onboard(client, as_user, "dee")
    items = [item("1", "dee"), item("2", "unknown-user"), item("3", "dee", topic="flash_sales") | bad]
    answer = client.post("/v1/pushes/batch", json={"pushes": items}, headers=key)
    assert_problem(answer, status, field)
    assert counts(runtime) == (0, 0)
    # Nothing was used up: the first item is still accepted afterwards.
    assert batch(client, key, items[:1])["results"][0]["outcome"] == "queued"


def test_batch_with_an_idempotency_conflict_records_nothing(
    client: Client, runtime: Runtime, as_user: UserHeaders, key: Headers
) -> None:
    onboard(client, as_user, "eli")
    items = [item("same", "eli"), item("same", "eli", title="Other")]
    assert_problem(
        client.post("/v1/pushes/batch", json={"pushes": items}, headers=key), 422, "idempotency_key"
    )
    assert counts(runtime) == (0, 0)


def test_batch_repeating_a_key_with_the_same_body_is_one_push(
    client: Client, runtime: Runtime, as_user: UserHeaders, key: Headers
) -> None:
    onboard(client, as_user, "fin")
    result = batch(client, key, [item("dup", "fin"), item("dup", "fin")])
    first, second = result["results"]
    assert first == second
    assert first["outcome"] == "queued"
    assert counts(runtime) == (1, 1)


def test_batch_replayed_gives_the_same_answers(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: UserHeaders, key: Headers
) -> None:
    onboard(client, as_user, "gil")
    items = [item("1", "gil"), item("2", "gil", topic="flash_sales"), item("3", "nobody")]
    first = batch(client, key, items)
    clock.advance(days=2)
    again = batch(client, key, items)
    assert again == first
    assert counts(runtime) == (3, 1)


def test_batch_dry_run_items_record_and_count_nothing(
    client: Client, runtime: Runtime, as_user: UserHeaders, key: Headers
) -> None:
    onboard(client, as_user, "hal")
    dry = batch(client, key, [item(str(i), "hal", dry_run=True) for i in range(3)])
    assert [r["outcome"] for r in dry["results"]] == ["queued"] * 3
    assert [r["push_id"] for r in dry["results"]] == [None] * 3
    assert counts(runtime) == (0, 0)
    mixed = batch(client, key, [item("d", "hal", dry_run=True), item("r", "hal", topic="flash_sales")])
    assert [r["outcome"] for r in mixed["results"]] == ["queued", "queued"]
    assert mixed["results"][0]["push_id"] is None
    assert counts(runtime) == (1, 1)
    # A dry run after a real item of the same batch sees it against the caps.
    onboard(client, as_user, "hub")
    later = batch(client, key, [item("r2", "hub"), item("d2", "hub", topic="product_tips", dry_run=True)])
    assert [r["outcome"] for r in later["results"]] == ["queued", "rejected"]
    assert later["results"][1]["reasons"] == [{"code": "frequency_capped", "window": "day", "limit": 1}]
    assert counts(runtime) == (2, 2)


def test_a_batch_of_exactly_10000_is_decided(
    client: Client, runtime: Runtime, as_user: UserHeaders, key: Headers
) -> None:
    onboard(client, as_user, "ivy")
    items = [item(str(i), f"user-{i % 50}", title="t", body="") for i in range(10_000)]
    items[1_234] = item("1234", "ivy")
    items[9_999] = item("9999", "ivy", topic="flash_sales")
    result = batch(client, key, items)
    assert len(result["results"]) == 10_000
    assert result["counts"] == {
        "queued": 1,
        "rejected": 9_999,
        "subject_unknown": 9_998,
        "frequency_capped": 1,
    }
    assert result["results"][1_234]["outcome"] == "queued"
    assert result["results"][9_999]["reasons"] == [{"code": "frequency_capped", "window": "day", "limit": 1}]
    assert counts(runtime) == (10_000, 1)


def test_batch_needs_pushes_write(client: Client, runtime: Runtime, as_key: KeyHeaders) -> None:
    for scope in ("campaigns:write", "campaigns:read", "audit:read", "admin"):
        answer = client.post("/v1/pushes/batch", json={"pushes": [item("1", "u")]}, headers=as_key(scope))
        assert_problem(answer, 403)
    assert counts(runtime) == (0, 0)


# -- campaigns ----------------------------------------------------------------------------------


def create_campaign(client: Client, writer: Headers, topic: str = "promotions") -> str:
    created = client.post("/v1/campaigns", json={"name": "Winter 2026", "topic": topic}, headers=writer)
    assert created.status_code == 201, created.text
    campaign_id: str = created.json()["campaign_id"]
    assert campaign_id.startswith("cmp_")
    return campaign_id


def test_campaign_pause_and_resume_gate_its_pushes(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    onboard(client, as_user, "jo")
    writer, reader = as_key("campaigns:write"), as_key("campaigns:read")
    campaign_id = create_campaign(client, writer)
    shown = client.get(f"/v1/campaigns/{campaign_id}", headers=reader).json()
    assert (shown["status"], shown["topic"], shown["paused_at"]) == ("active", "promotions", None)

    paused = client.post(f"/v1/campaigns/{campaign_id}/pause", headers=writer)
    assert paused.status_code == 200
    assert paused.json()["status"] == "paused"
    assert paused.json()["paused_at"] == "2026-11-23T10:00:00Z"
    answer = client.post("/v1/pushes", json=item("p1", "jo", campaign_id=campaign_id), headers=key).json()
    assert (answer["outcome"], answer["reasons"]) == ("rejected", [{"code": "campaign_paused"}])
    result = batch(client, key, [item("p2", "jo", campaign_id=campaign_id, variant="B")])
    assert result["counts"] == {"rejected": 1, "campaign_paused": 1}

    clock.advance(minutes=10)
    resumed = client.post(f"/v1/campaigns/{campaign_id}/resume", headers=writer)
    assert resumed.status_code == 200
    assert (resumed.json()["status"], resumed.json()["paused_at"]) == ("active", None)
    answer = client.post(
        "/v1/pushes", json=item("p3", "jo", campaign_id=campaign_id, variant="A"), headers=key
    ).json()
    assert answer["outcome"] == "queued"
    read = client.get(f"/v1/pushes/{answer['push_id']}", headers=reader).json()
    assert (read["campaign_id"], read["variant"]) == (campaign_id, "A")
    assert counts(runtime) == (3, 1)


def test_campaign_paused_is_kept_with_other_reasons(
    client: Client, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    onboard(client, as_user, "kim", topics={"promotions": False})
    writer = as_key("campaigns:write")
    campaign_id = create_campaign(client, writer)
    client.post(f"/v1/campaigns/{campaign_id}/pause", headers=writer)
    answer = client.post("/v1/pushes", json=item("1", "kim", campaign_id=campaign_id), headers=key).json()
    assert answer["reasons"] == [
        {"code": "topic_opted_out", "topic": "promotions"},
        {"code": "campaign_paused"},
    ]


CAMPAIGN_SCOPES = [
    (("campaigns:write",), 201, 200),
    (("campaigns:read",), 403, 403),
    (("pushes:write",), 403, 403),
    (("audit:read",), 403, 403),
    (("admin",), 403, 200),  # operators may pause and resume, not create
]


def test_campaign_scopes(client: Client, runtime: Runtime, as_key: KeyHeaders) -> None:
    writer, reader = as_key("campaigns:write"), as_key("campaigns:read")
    campaign_id = create_campaign(client, writer)
    expected_rows = 1
    for scopes, create, change in CAMPAIGN_SCOPES:
        headers = as_key(*scopes)
        answer = client.post("/v1/campaigns", json={"name": "x", "topic": "promotions"}, headers=headers)
        assert answer.status_code == create, (scopes, answer.text)
        expected_rows += create == 201
        for action, status_after in (("pause", "paused"), ("resume", "active")):
            answer = client.post(f"/v1/campaigns/{campaign_id}/{action}", headers=headers)
            assert answer.status_code == change, (scopes, action, answer.text)
            if change != 200:
                assert_problem(answer, change)
                client.post(f"/v1/campaigns/{campaign_id}/{action}", headers=writer)
            shown = client.get(f"/v1/campaigns/{campaign_id}", headers=reader).json()
            assert shown["status"] == status_after
    rows = runtime.store.data.reader().execute("SELECT count(*) FROM campaigns").fetchone()[0]
    assert rows == expected_rows


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "topic": "spam"}, "topic"),
        ({"name": "", "topic": "promotions"}, "name"),
        ({"topic": "promotions"}, "name"),
        ({"name": "x", "topic": "promotions", "budget": 5}, "budget"),
    ],
    ids=["unknown topic", "empty name", "no name", "unknown field"],
)
def test_bad_campaign_is_400(
    client: Client, runtime: Runtime, as_key: KeyHeaders, body: Json, field: str
) -> None:
    assert_problem(client.post("/v1/campaigns", json=body, headers=as_key("campaigns:write")), 400, field)
    assert runtime.store.data.reader().execute("SELECT count(*) FROM campaigns").fetchone()[0] == 0


def test_pause_or_resume_unknown_campaign_is_404(client: Client, as_key: KeyHeaders) -> None:
    writer = as_key("campaigns:write")
    for action in ("pause", "resume"):
        assert_problem(client.post(f"/v1/campaigns/cmp_0123456789abcdef/{action}", headers=writer), 404)
    assert_problem(client.get("/v1/campaigns/cmp_0123456789abcdef", headers=as_key("campaigns:read")), 404)


def test_campaign_push_must_match_its_topic_also_for_transactional(
    client: Client, runtime: Runtime, as_user: UserHeaders, as_key: KeyHeaders, key: Headers
) -> None:
    onboard(client, as_user, "lu")
    campaign_id = create_campaign(client, as_key("campaigns:write"), topic="transactional")
    ok = client.post(
        "/v1/pushes", json=item("1", "lu", topic="transactional", campaign_id=campaign_id), headers=key
    )
    assert ok.json()["outcome"] == "queued"
    wrong = client.post("/v1/pushes", json=item("2", "lu", campaign_id=campaign_id), headers=key)
    assert_problem(wrong, 400, "topic")
    assert counts(runtime) == (1, 1)
