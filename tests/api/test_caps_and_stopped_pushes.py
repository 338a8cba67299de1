"""A push still waiting that dispatch is sure to stop holds no place in the user's caps.

It did: a push deferred to the morning, whose topic the user then switched off (or whose
campaign was paused), took the day's one marketing push, so the push the user still wanted was
refused `frequency_capped`; in the morning the first was stopped, and the user got nothing. The
user is in Auckland: 10:00 UTC is 23:00 there, inside the default quiet hours until 19:00 UTC.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import apns_token

from gateway.runtime import Runtime

Client = TestClient[Litestar]
Json = dict[str, Any]
KeyHeaders = Callable[..., Headers]
MORNING = timedelta(hours=9, minutes=1)  # 19:01 UTC, 08:01 in Auckland


def _onboard(client: Client, as_user: Callable[[str], Headers]) -> Headers:
    headers = as_user("kiri")
    body = {"granted": True, "notice_version": "v1"}
    assert client.put("/v1/me/consents/marketing", json=body, headers=headers).status_code == 200
    device = {"platform": "apns", "token": apns_token("kiri")}
    assert client.post("/v1/me/devices", json=device, headers=headers).status_code == 201
    zone = {"timezone": "Pacific/Auckland"}
    assert client.patch("/v1/me/preferences", json=zone, headers=headers).status_code == 200
    return headers


def _push(client: Client, key: Headers, idempotency_key: str, topic: str, **fields: Any) -> Json:
    body = {
        "idempotency_key": idempotency_key,
        "user_id": "kiri",
        "topic": topic,
        "title": "Sale",
        "body": "Today",
    }
    answer = client.post("/v1/pushes", json=body | fields, headers=key)
    assert answer.status_code == 200, answer.text
    result: Json = answer.json()
    return result


def _morning(client: Client, runtime: Runtime, clock: FakeClock, key: Headers, *push_ids: str) -> list[str]:
    clock.advance(seconds=MORNING.total_seconds())
    client.blocking_portal.call(runtime.dispatcher.run_once, "test-owner", 100)
    return [client.get(f"/v1/pushes/{push_id}", headers=key).json()["status"] for push_id in push_ids]


def test_a_waiting_push_of_a_topic_switched_off_since_holds_no_cap(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: Callable[[str], Headers], as_key: KeyHeaders
) -> None:
    kiri, key = _onboard(client, as_user), as_key("pushes:write")
    first = _push(client, key, "p1", "promotions")
    assert first["outcome"] == "deferred"
    off = {"topics": {"promotions": False}}
    assert client.patch("/v1/me/preferences", json=off, headers=kiri).status_code == 200

    wanted = _push(client, key, "q1", "flash_sales")

    assert (wanted["outcome"], [r["code"] for r in wanted["reasons"]]) == ("deferred", ["quiet_hours"])
    assert _morning(client, runtime, clock, key, first["push_id"], wanted["push_id"]) == [
        "rejected",
        "delivered",
    ]


def test_a_campaign_resubmitted_after_a_resume_is_not_capped_by_its_stopped_push(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: Callable[[str], Headers], as_key: KeyHeaders
) -> None:
    """README: a pause stops what was decided before it, even after a resume; the sender
    submits again with new idempotency keys. The resubmission was refused for the caps."""
    _onboard(client, as_user)
    key = as_key("pushes:write", "campaigns:write")
    campaign = client.post("/v1/campaigns", json={"name": "winter", "topic": "promotions"}, headers=key)
    assert campaign.status_code == 201, campaign.text
    campaign_id = campaign.json()["campaign_id"]
    first = _push(client, key, "p1", "promotions", campaign_id=campaign_id)
    assert first["outcome"] == "deferred"
    for step in ("pause", "resume"):
        assert client.post(f"/v1/campaigns/{campaign_id}/{step}", headers=key).status_code == 200

    again = _push(client, key, "p2", "promotions", campaign_id=campaign_id)

    assert (again["outcome"], [r["code"] for r in again["reasons"]]) == ("deferred", ["quiet_hours"])
    assert _morning(client, runtime, clock, key, first["push_id"], again["push_id"]) == [
        "rejected",
        "delivered",
    ]


def test_a_waiting_push_past_its_expiry_holds_no_cap(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: Callable[[str], Headers], as_key: KeyHeaders
) -> None:
    """Review of 2fbc180: a push deferred to the morning and expired before any dispatch round
    ran (the worker down, a backlog) only ever ends `expired`, yet it took the day's push: the
    next one was refused `frequency_capped` until a round had ended the first."""
    _onboard(client, as_user)
    key = as_key("pushes:write")
    first = _push(client, key, "p1", "promotions", ttl_seconds=10 * 3600)  # expires 20:00 UTC
    assert first["outcome"] == "deferred"
    clock.advance(hours=11)  # 21:00 UTC, 10:00 in Auckland: no round ran

    later = _push(client, key, "q1", "flash_sales")

    assert (later["outcome"], later["reasons"]) == ("queued", [])
    client.blocking_portal.call(runtime.dispatcher.run_once, "test-owner", 100)
    pushes = [client.get(f"/v1/pushes/{p['push_id']}", headers=key).json() for p in (first, later)]
    assert [p["status"] for p in pushes] == ["expired", "delivered"]
