"""Pushes accepted at one instant get ids in the order they are accepted, across requests too:
the order the pushes, outbox and delivery indexes are written in (tests/unit/storage/test_push_ids.py).
FakeClock holds the instant still, so every push here shares one millisecond."""

from __future__ import annotations

from collections.abc import Callable

from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import audience

from gateway.runtime import Runtime


def test_ids_follow_the_order_of_acceptance_within_one_millisecond(
    client: TestClient[Litestar], runtime: Runtime, as_key: Callable[..., Headers]
) -> None:
    users = audience(client, runtime, "ordered", 60)
    pusher = as_key("pushes:write")
    sale = {"topic": "promotions", "title": "Winter sale", "body": "20% off today"}
    ids: list[str] = []
    for part in (users[:25], users[25:50]):
        pushes = [sale | {"idempotency_key": f"order-{user}", "user_id": user} for user in part]
        answer = client.post("/v1/pushes/batch", json={"pushes": pushes}, headers=pusher)
        assert answer.json()["counts"] == {"queued": 25}, answer.text
        ids.extend(result["push_id"] for result in answer.json()["results"])
    for user in users[50:]:
        single = sale | {"idempotency_key": f"order-{user}", "user_id": user}
        answer = client.post("/v1/pushes", json=single, headers=pusher)
        assert answer.json()["outcome"] == "queued", answer.text
        ids.append(answer.json()["push_id"])
    assert len(set(ids)) == 60
    assert ids == sorted(ids)
