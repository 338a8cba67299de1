"""A service learns nothing of where a user is from a `near` push refused for another reason.

Reproduces a walk-through's probe over HTTP: with `pushes:write` and `campaigns:write`, a
service made a campaign, paused it, and aimed `near` pushes of that campaign at a user who
gave `location` consent. Each was refused `campaign_paused`, nothing reached the user, and the
answer listed `not_nearby` for an area the user was not in and nothing for the one they were:
their geohash-6, read for free. The same worked against a user already at their cap, and (a
review of the first fix) against a push the service stopped after its answer, pausing the
campaign before dispatch. Now location is judged only when a push is sent, and then not for a
push another rule refuses: the answers, the pushes read back, and the batch counts are alike
wherever the user is, until a push is sent or refused for its location alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient

from gateway.runtime import Runtime

Client = TestClient[Litestar]
Json = dict[str, Any]

BEIJING = {"lat": 39.9042, "lon": 116.4074}  # geohash-6 wx4g0b
INSIDE, OUTSIDE = "wx4g0b", "wx4g0c"


def _located_user(client: Client, headers: Headers, device: str = "fcm-token-gus") -> None:
    for purpose in ("marketing", "location"):
        given = client.put(
            f"/v1/me/consents/{purpose}", json={"granted": True, "notice_version": "v1"}, headers=headers
        )
        assert given.status_code == 200, given.text
    registered = client.post("/v1/me/devices", json={"platform": "fcm", "token": device}, headers=headers)
    assert registered.status_code == 201, registered.text
    located = client.put("/v1/me/location", json=BEIJING, headers=headers)
    assert located.status_code == 200, located.text
    assert located.json()["geohash"] == INSIDE


def _push(n: int, geohash: str, user_id: str = "gus", **fields: Any) -> Json:
    return {
        "idempotency_key": f"probe-{n}",
        "user_id": user_id,
        "topic": "nearby_offers",
        "title": "Nearby",
        "body": "20% off at a store near you",
        "near": {"geohash": geohash},
    } | fields


def _paused_campaign(client: Client, writer: Headers) -> Json:
    created = client.post("/v1/campaigns", json={"name": "probe", "topic": "nearby_offers"}, headers=writer)
    assert created.status_code == 201, created.text
    campaign_id = created.json()["campaign_id"]
    assert client.post(f"/v1/campaigns/{campaign_id}/pause", headers=writer).status_code == 200
    return {"campaign_id": campaign_id}


def _at_the_cap(client: Client, writer: Headers) -> Json:
    first = client.post("/v1/pushes", json=_push(0, INSIDE), headers=writer)
    assert first.json()["outcome"] == "queued", first.text  # the day's one marketing push
    return {}


@pytest.mark.parametrize("refused_by", [_paused_campaign, _at_the_cap], ids=["paused campaign", "at the cap"])
def test_a_push_refused_otherwise_answers_alike_inside_and_outside(
    client: Client,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
    refused_by: Callable[[Client, Headers], Json],
) -> None:
    _located_user(client, as_user("gus"))
    service = as_key("pushes:write", "campaigns:write")
    extra = refused_by(client, service)

    answers = {
        where: client.post("/v1/pushes", json=_push(i, where, **extra), headers=service)
        for i, where in enumerate((INSIDE, OUTSIDE), start=1)
    }
    inside, outside = (answers[where].json() for where in (INSIDE, OUTSIDE))
    assert inside["outcome"] == outside["outcome"] == "rejected"
    assert inside["reasons"] == outside["reasons"]
    assert "not_nearby" not in str(outside["reasons"])
    read = [
        client.get(f"/v1/pushes/{answer['push_id']}", headers=service).json() for answer in (inside, outside)
    ]
    assert read[0]["reasons"] == read[1]["reasons"] == inside["reasons"]

    batch = client.post(
        "/v1/pushes/batch",
        json={"pushes": [_push(10 + i, where, **extra) for i, where in enumerate((INSIDE, OUTSIDE))]},
        headers=service,
    )
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert results[0]["reasons"] == results[1]["reasons"]
    assert "not_nearby" not in batch.json()["counts"]


def test_a_push_stopped_after_its_answer_tells_nothing_either(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], as_key: Callable[..., Headers]
) -> None:
    """The review of the first fix: answered at submission, `queued` inside and `not_nearby`
    outside, the service then paused its campaign, and the push inside ended `campaign_paused`
    at dispatch with nothing sent. Location is now judged only when a push is sent."""
    for user in ("gus", "hal"):  # both in the same cell; a push each, one aimed inside, one outside
        _located_user(client, as_user(user), f"fcm-token-{user}")
    service = as_key("pushes:write", "campaigns:write")
    created = client.post("/v1/campaigns", json={"name": "probe", "topic": "nearby_offers"}, headers=service)
    campaign = {"campaign_id": created.json()["campaign_id"]}
    answers = [
        client.post("/v1/pushes", json=_push(i, where, user, **campaign), headers=service).json()
        for i, (where, user) in enumerate(((INSIDE, "gus"), (OUTSIDE, "hal")), start=1)
    ]
    assert [(a["outcome"], a["reasons"]) for a in answers] == [("queued", [])] * 2
    assert client.post(f"/v1/campaigns/{campaign['campaign_id']}/pause", headers=service).status_code == 200
    asyncio.run(runtime.dispatcher.run_once("test-worker", 100))
    read = [client.get(f"/v1/pushes/{a['push_id']}", headers=service).json() for a in answers]
    assert [(r["status"], r["reasons"]) for r in read] == [("rejected", [{"code": "campaign_paused"}])] * 2


def test_a_push_refused_for_its_location_alone_says_so_when_sent(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], as_key: Callable[..., Headers]
) -> None:
    _located_user(client, as_user("gus"))
    service = as_key("pushes:write")
    answer = client.post("/v1/pushes", json=_push(1, OUTSIDE), headers=service).json()
    assert (answer["outcome"], answer["reasons"]) == ("queued", [])
    asyncio.run(runtime.dispatcher.run_once("test-worker", 100))
    read = client.get(f"/v1/pushes/{answer['push_id']}", headers=service).json()
    assert (read["status"], read["reasons"]) == ("rejected", [{"code": "not_nearby"}])
