"""Single pushes that reach the gateway together are decided together (gateway/services/
gathering.py), and each is still answered, refused and recorded as if it had come alone.

The requests go through the whole app concurrently, on the app's own event loop (an ASGI
transport run in the test client's portal), so they reach the push service in one turn.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

from gateway.runtime import Runtime
from storage.connections import Connection

Client = TestClient[Litestar]
Json = dict[str, Any]


def together(client: Client, requests: list[tuple[Json, Headers]]) -> list[httpx.Response]:
    """POST each body to /v1/pushes at once, through the app, on its own loop."""

    async def send() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            return list(
                await asyncio.gather(*(http.post("/v1/pushes", json=body, headers=h) for body, h in requests))
            )

    return client.blocking_portal.call(send)


def push(user_id: str, key: str, **fields: Any) -> Json:
    return {
        "idempotency_key": key, "user_id": user_id, "topic": "promotions", "title": "Winter sale",
        "body": "20% off at partner stores today", "data": {"deeplink": "wallet://offers/winter"},
    } | fields  # fmt: skip


@pytest.fixture
def key(as_key: Callable[..., Headers]) -> Headers:
    return as_key("pushes:write")


@pytest.fixture
def consented(client: Client, as_user: Callable[[str], Headers]) -> Callable[[str], None]:
    def make(user_id: str) -> None:
        headers = as_user(user_id)
        answer = client.put(
            "/v1/me/consents/marketing", json={"granted": True, "notice_version": "v1"}, headers=headers
        )
        assert answer.status_code == 200, answer.text
        device = {"platform": "fcm", "token": f"fcm-token-{user_id}"}
        answer = client.post("/v1/me/devices", json=device, headers=headers)
        assert answer.status_code == 201, answer.text

    return make


def pushes_stored(runtime: Runtime) -> int:
    return int(runtime.store.data.reader().execute("SELECT count(*) FROM pushes").fetchone()[0])


def test_each_push_is_refused_alone_and_the_others_are_recorded(
    client: Client, runtime: Runtime, key: Headers, consented: Callable[[str], None]
) -> None:
    for user in ("ana", "ben", "cai", "dee"):
        consented(user)
    first = client.post("/v1/pushes", json=push("ana", "used-before"), headers=key)
    assert first.status_code == 200, first.text
    before = pushes_stored(runtime)

    answers = together(
        client,
        [
            (push("ana", "used-before", title="Another sale"), key),  # the key again, another body
            (push("ben", "b-1"), key),
            (push("cai", "c-1", campaign_id="cmp_0123456789abcdef"), key),
            (push("cai", "c-2", ttl_seconds=10**7), key),
            (push("dee", "d-1"), key),
        ],
    )

    assert_problem(answers[0], 422, "idempotency_key")
    assert_problem(answers[2], 404, "campaign_id")
    assert_problem(answers[3], 400, "ttl_seconds")
    accepted = [answers[1].json(), answers[4].json()]
    assert [a["outcome"] for a in accepted] == ["queued", "queued"]
    assert pushes_stored(runtime) == before + 2
    for answer in accepted:
        read = client.get(f"/v1/pushes/{answer['push_id']}", headers=key)
        assert read.status_code == 200, read.text
        assert read.json()["status"] == "queued"


def test_pushes_to_one_person_arriving_together_count_against_each_others_caps(
    client: Client, key: Headers, consented: Callable[[str], None]
) -> None:
    consented("eva")  # the default: one marketing push a day
    answers = together(client, [(push("eva", f"e-{i}"), key) for i in range(3)])
    assert [a.status_code for a in answers] == [200, 200, 200]
    outcomes = [a.json()["outcome"] for a in answers]
    assert sorted(outcomes) == ["queued", "rejected", "rejected"]
    for answer in answers:
        if answer.json()["outcome"] == "rejected":
            assert "frequency_capped" in [r["code"] for r in answer.json()["reasons"]]


def test_the_same_push_twice_together_is_one_push(
    client: Client, runtime: Runtime, key: Headers, consented: Callable[[str], None]
) -> None:
    consented("fay")
    before = pushes_stored(runtime)
    twice = push("fay", "f-1")
    answers = together(client, [(twice, key), (twice, key)])
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json()
    assert pushes_stored(runtime) == before + 1


def test_a_dry_run_beside_a_real_push_is_decided_and_not_recorded(
    client: Client, runtime: Runtime, key: Headers, consented: Callable[[str], None]
) -> None:
    consented("gus")
    before = pushes_stored(runtime)
    dry, real = together(client, [(push("gus", "g-dry", dry_run=True), key), (push("gus", "g-1"), key)])
    assert dry.status_code == real.status_code == 200
    assert dry.json()["outcome"] == "queued"
    assert dry.json().get("push_id") is None
    assert real.json()["outcome"] == "queued"
    assert pushes_stored(runtime) == before + 1


def test_pushes_of_two_services_together_are_each_their_own(
    client: Client, as_key: Callable[..., Headers], consented: Callable[[str], None]
) -> None:
    """Idempotency keys are per API key: the same key from two services is two pushes."""
    consented("hal")
    consented("ida")
    one, other = as_key("pushes:write"), as_key("pushes:write")
    answers = together(client, [(push("hal", "shared"), one), (push("ida", "shared"), other)])
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json()["push_id"] != answers[1].json()["push_id"]


def decisions_counted(runtime: Runtime) -> float:
    """From the registry: `/metrics` answers 503 once storage has failed, as any read does."""
    return sum(
        sample.value
        for family in runtime.metrics.registry.collect()
        if family.name == "cgw_decisions"
        for sample in family.samples
        if sample.name == "cgw_decisions_total"
    )


def test_pushes_counted_only_once_kept(
    client: Client,
    runtime: Runtime,
    key: Headers,
    consented: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A unit refused at its commit (here its fsync fails, the OS boundary) kept none of its
    pushes, so none is a decision in the metrics: they were counted before the commit, and
    again when the client sent them once more."""
    for user in ("kim", "lee", "max"):
        consented(user)
    kept = together(client, [(push("kim", "k-0"), key)])
    assert [a.status_code for a in kept] == [200]
    before = decisions_counted(runtime)

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error (injected)")

    monkeypatch.setattr(os, "fdatasync", failing)
    answers = together(client, [(push(user, f"{user}-1"), key) for user in ("kim", "lee", "max")])
    monkeypatch.undo()
    assert [a.status_code for a in answers] == [503, 503, 503]
    assert decisions_counted(runtime) == before


def test_one_subject_whose_data_does_not_open_costs_only_its_own_push(
    client: Client,
    runtime: Runtime,
    key: Headers,
    consented: Callable[[str], None],
    as_user: Callable[[str], Headers],
) -> None:
    """What pushes in one unit share (the subjects' keys, their state opened) failed for all
    when one subject's sealed preferences no longer opened (bit rot, a restore gone wrong):
    every push of the unit answered 500 and none was kept. Each is done again alone now."""
    for user in ("nia", "oto", "pia"):
        consented(user)
    answer = client.patch("/v1/me/preferences", json={"timezone": "Europe/Berlin"}, headers=as_user("oto"))
    assert answer.status_code == 200, answer.text
    oto = runtime.store.directory.resolve(runtime.store.pseudonyms.subject_ref("oto"))
    assert oto is not None

    def rot(conn: Connection) -> None:
        where = (oto.subject_id,)
        (doc,) = conn.execute("SELECT doc FROM preferences WHERE subject_id = ?", where).fetchone()
        rotten = doc[:-1] + bytes([doc[-1] ^ 1])
        conn.execute("UPDATE preferences SET doc = ? WHERE subject_id = ?", (rotten, *where))

    runtime.store.data.writer.run_sync(rot)
    before = pushes_stored(runtime)
    answers = together(client, [(push(user, f"{user}-1"), key) for user in ("nia", "oto", "pia")])
    assert [a.status_code for a in answers] == [200, 500, 200]
    assert pushes_stored(runtime) == before + 2
