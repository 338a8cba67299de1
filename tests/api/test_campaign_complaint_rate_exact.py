"""The complaint-rate rule pauses a campaign whose complaints reach the rate exactly, through HTTP.

Regression: the rule compared `complaints >= rate * deliveries` in floats, and for a rate such
as 0.28, 0.28 * 25 is 7.000000000000001: the 7th complaint in 25 deliveries, exactly 28%, did
not pause the campaign. FakeClock starts at 2026-11-23 10:00 UTC; the worker is off and
`dispatch` runs the dispatcher by hand on the app's loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import audience

from gateway.runtime import Runtime

Client = TestClient[Litestar]
Json = dict[str, Any]


def test_complaints_exactly_at_the_rate_pause_the_campaign(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    policy = {"complaint_pause_min_deliveries": 25, "complaint_pause_rate": 0.28}
    assert client.put("/v1/admin/policy", json=policy, headers=as_key("admin")).status_code == 200
    writer, reader, pusher = as_key("campaigns:write"), as_key("campaigns:read"), as_key("pushes:write")
    created = client.post("/v1/campaigns", json={"name": "Winter", "topic": "promotions"}, headers=writer)
    cid = created.json()["campaign_id"]

    users = audience(client, runtime, "user", 25)
    sale = {"topic": "promotions", "title": "Winter sale", "body": "20% off today", "campaign_id": cid}
    pushes = [sale | {"idempotency_key": f"winter-{user}", "user_id": user} for user in users]
    answer = client.post("/v1/pushes/batch", json={"pushes": pushes}, headers=pusher)
    assert answer.json()["counts"] == {"queued": 25}, answer.text
    sent = [result["push_id"] for result in answer.json()["results"]]
    assert client.blocking_portal.call(runtime.dispatcher.run_once, "test-owner", 100) == 25

    clock.advance(minutes=1)
    for n, (user, push_id) in enumerate(zip(users[:7], sent, strict=False), start=1):
        complaint = {"push_id": push_id, "reason": "irrelevant"}
        assert client.post("/v1/me/complaints", json=complaint, headers=as_user(user)).status_code == 201
        shown: Json = client.get(f"/v1/campaigns/{cid}", headers=reader).json()
        assert shown["status"] == ("paused" if n == 7 else "active"), (n, shown)

    assert (
        shown["pause_reason"]
        == "complaints about 7 of 25 deliveries (28.00%) reached the pause threshold of 28.00%"
    )
    assert shown["pause_evidence"] == {
        "rule": "complaint_rate", "complaints": 7, "deliveries": 25, "rate": 0.28, "threshold": 0.28,
        "min_deliveries": 25,
    }  # fmt: skip
