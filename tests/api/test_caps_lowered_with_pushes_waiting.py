"""A cap an admin lowers while a user's pushes wait lets the earliest through, in order.

At dispatch a push was judged with every other waiting push of its user counted, those planned
after it too: under the lowered cap the earliest were refused and the latest kept, and when the
latest was then refused for its own content (a data key the same change disallowed), the user
got none of the pushes the cap still allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient

from gateway.runtime import Runtime

Client = TestClient[Litestar]
Json = dict[str, Any]
KeyHeaders = Callable[..., Headers]
LOOSE = {"max_per_day": 3, "topic_interval_hours": 0}


def _set_policy(client: Client, as_key: KeyHeaders, **settings: Any) -> None:
    answer = client.put("/v1/admin/policy", json=settings, headers=as_key("admin"))
    assert answer.status_code == 200, answer.text


def _three_waiting(
    client: Client, clock: FakeClock, as_user: Callable[[str], Headers], key: Headers, **last: Any
) -> list[str]:
    user = as_user("ines")
    body = {"granted": True, "notice_version": "v1"}
    assert client.put("/v1/me/consents/marketing", json=body, headers=user).status_code == 200
    device = {"platform": "fcm", "token": "fcm-device-of-ines"}
    assert client.post("/v1/me/devices", json=device, headers=user).status_code == 201
    ids = []
    for i in range(3):
        push = {"idempotency_key": f"k{i}", "user_id": "ines", "topic": "promotions", "title": f"Offer {i}",
                "body": "Today"} | (last if i == 2 else {})  # fmt: skip
        answer = client.post("/v1/pushes", json=push, headers=key)
        assert answer.json()["outcome"] == "queued", answer.text
        ids.append(answer.json()["push_id"])
        clock.advance(minutes=1)
    return ids


def _statuses(client: Client, runtime: Runtime, key: Headers, ids: list[str]) -> list[str]:
    client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 100)
    return [client.get(f"/v1/pushes/{push_id}", headers=key).json()["status"] for push_id in ids]


def test_a_cap_lowered_lets_the_earliest_waiting_push_through(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: Callable[[str], Headers], as_key: KeyHeaders
) -> None:
    _set_policy(client, as_key, **LOOSE)
    key = as_key("pushes:write")
    ids = _three_waiting(client, clock, as_user, key)
    _set_policy(client, as_key, **LOOSE, max_per_week=1)

    assert _statuses(client, runtime, key, ids) == ["delivered", "rejected", "rejected"]


def test_a_waiting_push_refused_for_its_content_does_not_cost_the_others_the_cap(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: Callable[[str], Headers], as_key: KeyHeaders
) -> None:
    _set_policy(client, as_key, **LOOSE, allowed_data_keys={"promotions": ["deeplink", "coupon_code"]})
    key = as_key("pushes:write")
    ids = _three_waiting(client, clock, as_user, key, data={"coupon_code": "SAVE10"})
    _set_policy(client, as_key, **LOOSE, max_per_week=1, allowed_data_keys={"promotions": ["deeplink"]})

    assert _statuses(client, runtime, key, ids) == ["delivered", "rejected", "rejected"]


def test_pushes_planned_at_one_instant_go_in_the_order_they_were_decided(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: Callable[[str], Headers], as_key: KeyHeaders
) -> None:
    """Review of 0e78d25: one user's pushes of one batch are planned at the same instant, and
    counted each other at dispatch: under the lowered cap none went."""
    _set_policy(client, as_key, **LOOSE)
    key = as_key("pushes:write")
    user = as_user("ines")
    body = {"granted": True, "notice_version": "v1"}
    assert client.put("/v1/me/consents/marketing", json=body, headers=user).status_code == 200
    device = {"platform": "fcm", "token": "fcm-device-of-ines"}
    assert client.post("/v1/me/devices", json=device, headers=user).status_code == 201
    pushes = [
        {
            "idempotency_key": f"k{i}",
            "user_id": "ines",
            "topic": "promotions",
            "title": f"Offer {i}",
            "body": "Today",
        }
        for i in range(3)
    ]
    answer = client.post("/v1/pushes/batch", json={"pushes": pushes}, headers=key)
    assert answer.json()["counts"] == {"queued": 3}, answer.text
    ids = [result["push_id"] for result in answer.json()["results"]]
    _set_policy(client, as_key, **LOOSE, max_per_week=1)

    assert _statuses(client, runtime, key, ids) == ["delivered", "rejected", "rejected"]
