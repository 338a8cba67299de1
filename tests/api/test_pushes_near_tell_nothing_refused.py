"""A service learns nothing of where a user is from a `near` push refused for another reason.

Reproduces a walk-through's probe over HTTP: with `pushes:write` and `campaigns:write`, a
service made a campaign, paused it, and aimed `near` pushes of that campaign at a user who
gave `location` consent. Each was refused `campaign_paused`, nothing reached the user, and the
answer listed `not_nearby` for an area the user was not in and nothing for the one they were:
their geohash-6, read for free. The same worked against a user already at their cap. Now the
answers, the pushes read back, and the batch counts are alike wherever the user is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient

Client = TestClient[Litestar]
Json = dict[str, Any]

BEIJING = {"lat": 39.9042, "lon": 116.4074}  # geohash-6 wx4g0b
INSIDE, OUTSIDE = "wx4g0b", "wx4g0c"


def _located_user(client: Client, headers: Headers) -> None:
    for purpose in ("marketing", "location"):
        given = client.put(
            f"/v1/me/consents/{purpose}", json={"granted": True, "notice_version": "v1"}, headers=headers
        )
        assert given.status_code == 200, given.text
    device = client.post(
        "/v1/me/devices", json={"platform": "fcm", "token": "fcm-token-gus"}, headers=headers
    )
    assert device.status_code == 201, device.text
    located = client.put("/v1/me/location", json=BEIJING, headers=headers)
    assert located.status_code == 200, located.text
    assert located.json()["geohash"] == INSIDE


def _push(n: int, geohash: str, **fields: Any) -> Json:
    return {
        "idempotency_key": f"probe-{n}",
        "user_id": "gus",
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


def test_a_push_refused_for_its_location_alone_still_says_not_nearby(
    client: Client, as_user: Callable[[str], Headers], as_key: Callable[..., Headers]
) -> None:
    _located_user(client, as_user("gus"))
    answer = client.post("/v1/pushes", json=_push(1, OUTSIDE), headers=as_key("pushes:write")).json()
    assert (answer["outcome"], answer["reasons"]) == ("rejected", [{"code": "not_nearby"}])
