"""Erasure and the pushes a user was sent: nothing derived from their content outlives it.

A push row keeps, besides its sealed content (unreadable once the data key is destroyed), a keyed
hash of the whole request, title and body included, to tell a replay from a different push under
the same idempotency key. It is keyed with the pseudonymization key, which erasure does not
destroy, so whoever holds that key could confirm a guess of what an erased user was sent. Erasure
blanks it. The idempotency key's hash stays: a replay still gets the answer it was given and
never makes a second push, even once the user has come back.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

from conftest import FakeClock
from litestar import Litestar
from litestar.testing import TestClient

from gateway.runtime import Runtime

Client = TestClient[Litestar]
Headers = dict[str, str]
Json = dict[str, Any]

ERASED = "erin.erased@example.com"
KEPT = "kim.kept@example.com"


def _ready(client: Client, as_user: Callable[[str], Headers], user_id: str) -> None:
    headers = as_user(user_id)
    answer = client.post(
        "/v1/me/devices", json={"platform": "fcm", "token": f"fcm-{user_id}"}, headers=headers
    )
    assert answer.status_code == 201, answer.text


def _push(user_id: str, key: str) -> Json:
    return {
        "idempotency_key": key,
        "user_id": user_id,
        "topic": "transactional",
        "title": "Your refund was paid",
        "body": "EUR 42.17 is on its way to your card",
        "data": {"deeplink": "wallet://refunds/7"},
    }


def _submit(client: Client, key: Headers, body: Json) -> Json:
    answer = client.post("/v1/pushes", json=body, headers=key)
    assert answer.status_code == 200, answer.text
    result: Json = answer.json()
    return result


def _hashes(runtime: Runtime, push_id: str) -> tuple[str, bytes]:
    row = (
        runtime.store.data.reader()
        .execute("SELECT idempotency_key, fingerprint FROM pushes WHERE push_id = ?", (push_id,))
        .fetchone()
    )
    assert row is not None
    return str(row[0]), bytes(row[1])


def _idempotency_hash(runtime: Runtime, idempotency_key: str) -> str:
    """What the gateway stores for a service's idempotency key: its HMAC's first 128 bits, in hex
    (`idempotency_ref` in storage/repositories/pushes.py)."""
    return hmac.digest(
        runtime.store.keys.pseudonym_key, b"idempotency|" + idempotency_key.encode(), "sha256"
    ).hex()[:32]


def test_erasure_blanks_the_fingerprints_of_the_users_pushes(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], as_key: Callable[..., Headers]
) -> None:
    key = as_key("pushes:write")
    for user in (ERASED, KEPT):
        _ready(client, as_user, user)
    erased = _submit(client, key, _push(ERASED, "refund-erin-1"))
    kept = _submit(client, key, _push(KEPT, "refund-kim-1"))
    assert erased["outcome"] == kept["outcome"] == "queued"
    assert len(_hashes(runtime, erased["push_id"])[1]) == 32

    assert client.delete("/v1/me", headers=as_user(ERASED)).status_code == 204

    assert _hashes(runtime, erased["push_id"]) == (_idempotency_hash(runtime, "refund-erin-1"), b"")
    kept_idempotency, kept_fingerprint = _hashes(runtime, kept["push_id"])
    assert kept_idempotency == _idempotency_hash(runtime, "refund-kim-1")
    assert len(kept_fingerprint) == 32


def test_a_replay_after_erasure_gets_the_answer_it_was_given(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], as_key: Callable[..., Headers]
) -> None:
    key = as_key("pushes:write")
    for user in (ERASED, KEPT):
        _ready(client, as_user, user)
    first = _submit(client, key, _push(ERASED, "refund-erin-2"))
    kept = _submit(client, key, _push(KEPT, "refund-kim-2"))
    assert client.delete("/v1/me", headers=as_user(ERASED)).status_code == 204

    assert _submit(client, key, _push(ERASED, "refund-erin-2")) == first
    # Back as a new subject with a device: the old key still names the old push, not a second one.
    _ready(client, as_user, ERASED)
    pushes_before = runtime.store.data.reader().execute("SELECT count(*) FROM pushes").fetchone()[0]
    assert _submit(client, key, _push(ERASED, "refund-erin-2")) == first
    assert runtime.store.data.reader().execute("SELECT count(*) FROM pushes").fetchone()[0] == pushes_before
    assert _submit(client, key, _push(KEPT, "refund-kim-2")) == kept


def test_a_push_to_a_user_already_erased_is_kept_without_a_fingerprint(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], as_key: Callable[..., Headers]
) -> None:
    """A service that has not heard of the erasure yet sends one more: refused, and kept for its
    idempotency key as the pushes before the erasure are, without the hash of its content."""
    key = as_key("pushes:write")
    _ready(client, as_user, ERASED)
    assert client.delete("/v1/me", headers=as_user(ERASED)).status_code == 204

    late = _submit(client, key, _push(ERASED, "refund-erin-3"))

    assert [r["code"] for r in late["reasons"]] == ["subject_erased"]
    assert _hashes(runtime, late["push_id"]) == (_idempotency_hash(runtime, "refund-erin-3"), b"")
    assert _submit(client, key, _push(ERASED, "refund-erin-3")) == late
    assert _submit(client, key, {**_push(ERASED, "refund-erin-3"), "body": "another"}) == late


def _marketing_with(client: Client, as_user: Callable[[str], Headers], user_id: str, **prefs: Any) -> Headers:
    """A user with a device, marketing consent and these preferences; their headers."""
    _ready(client, as_user, user_id)
    headers = as_user(user_id)
    given = client.put(
        "/v1/me/consents/marketing", json={"granted": True, "notice_version": "n1"}, headers=headers
    )
    assert given.status_code == 200, given.text
    changed = client.patch("/v1/me/preferences", json=prefs, headers=headers)
    assert changed.status_code == 200, changed.text
    return headers


def _allowed_by(runtime: Runtime, push_id: str) -> str:
    row = runtime.store.data.reader().execute("SELECT allowed_by FROM pushes WHERE push_id = ?", (push_id,))
    return str(row.fetchone()[0])


def test_erasure_blanks_what_allowed_the_users_pushes(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], as_key: Callable[..., Headers]
) -> None:
    """Why a push was let through names the user's time zone, quiet window and weekly cap. Sealed
    with the push's content now, it goes with the user's key. A row stored before migration 0018
    kept it in clear beside their sealed preferences, which erasure deletes, so erasure blanks
    it (this test writes such a row)."""
    key = as_key("pushes:write")
    for user in (ERASED, KEPT):
        _marketing_with(
            client, as_user, user, timezone="Pacific/Chatham", quiet_hours={"start": "00:00", "end": "00:01"}
        )
    marketing = {"topic": "promotions", "title": "Sale", "body": "10% off", "data": {}}
    erased = _submit(client, key, _push(ERASED, "sale-erin") | marketing)
    kept = _submit(client, key, _push(KEPT, "sale-kim") | marketing)
    assert (erased["outcome"], kept["outcome"]) == ("queued", "queued"), (erased, kept)
    assert _allowed_by(runtime, erased["push_id"]) == "[]"  # sealed, not kept in clear
    legacy = '["quiet hours: outside 00:00-00:01 Pacific/Chatham"]'
    runtime.store.data.writer.run_sync(
        lambda conn: conn.execute("UPDATE pushes SET allowed_by = ?", (legacy,))
    )
    assert "Pacific/Chatham" in _allowed_by(runtime, erased["push_id"])

    assert client.delete("/v1/me", headers=as_user(ERASED)).status_code == 204

    assert _allowed_by(runtime, erased["push_id"]) == "[]"
    assert "Pacific/Chatham" in _allowed_by(runtime, kept["push_id"])


def test_erasure_leaves_reasons_their_codes_without_the_users_settings(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], as_key: Callable[..., Headers]
) -> None:
    """A quiet window's end (in UTC, so the time zone shows) and the user's weekly cap were kept in
    the reasons of the pushes they deferred or refused."""
    key = as_key("pushes:write")
    headers = _marketing_with(
        client, as_user, ERASED, timezone="Pacific/Chatham", quiet_hours={"start": "22:00", "end": "23:59"},
        frequency={"max_per_week": 1},
    )  # fmt: skip
    marketing = {"title": "Sale", "body": "10% off", "data": {}}
    deferred = _submit(client, key, _push(ERASED, "sale-1") | marketing | {"topic": "promotions"})
    capped = _submit(client, key, _push(ERASED, "sale-2") | marketing | {"topic": "flash_sales"})
    assert [r["code"] for r in deferred["reasons"]] == ["quiet_hours"], deferred
    assert "frequency_capped" in [r["code"] for r in capped["reasons"]], capped

    assert client.delete("/v1/me", headers=headers).status_code == 204

    reader = runtime.store.data.reader()
    rows = reader.execute(
        "SELECT reasons, deliver_after, planned_at, created_at FROM pushes WHERE push_id IN (?, ?) "
        "ORDER BY push_id",
        (deferred["push_id"], capped["push_id"]),
    )
    for reasons, deliver_after, planned_at, created_at in rows:
        assert deliver_after is None
        assert planned_at in (None, created_at)  # not the end of their quiet window
        for reason in json.loads(reasons):
            assert set(reason) <= {"code", "topic", "window"}, reason
    assert "frequency_capped" in [r["code"] for r in json.loads(_reasons(runtime, capped["push_id"]))]
    # Nor does the deferred push wait in the outbox for their morning: it is due, and ends erased.
    (due,) = reader.execute("SELECT due_at FROM outbox WHERE push_id = ?", (deferred["push_id"],)).fetchone()
    assert (
        due
        == reader.execute(
            "SELECT created_at FROM pushes WHERE push_id = ?", (deferred["push_id"],)
        ).fetchone()[0]
    )
    client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 100)
    shown = client.get(f"/v1/pushes/{deferred['push_id']}", headers=key).json()
    assert (shown["status"], shown["reasons"]) == ("rejected", [{"code": "subject_erased"}]), shown


def test_erasure_leaves_no_time_a_push_reached_the_user_at(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    """A push deferred to the user's morning was sent and opened then. Its row's last change, its
    delivery's and its event's times were kept: in Kathmandu (+05:45) a morning begins at a
    quarter past the hour in UTC, which gives their time zone away as the deferral's time did."""
    key = as_key("pushes:write")
    headers = _marketing_with(client, as_user, ERASED, timezone="Asia/Kathmandu")
    clock.advance(hours=6)  # 16:00 UTC, 21:45 in Kathmandu: quiet until 08:00 there, 02:15 UTC
    marketing = {"topic": "promotions", "title": "Sale", "body": "10% off", "data": {}}
    deferred = _submit(client, key, _push(ERASED, "sale-morning") | marketing)
    assert deferred["deliver_after"] == "2026-11-24T02:15:00Z", deferred
    clock.advance(hours=10, minutes=15, seconds=7)
    assert client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 100) == 1
    push_id = deferred["push_id"]
    opened = client.post(f"/v1/me/pushes/{push_id}/events", json={"type": "opened"}, headers=headers)
    assert opened.status_code == 201, opened.text
    reader = runtime.store.data.reader()
    times = (
        "SELECT p.created_at, p.updated_at, d.updated_at, e.at FROM pushes p "
        "JOIN deliveries d ON d.push_id = p.push_id JOIN push_events e ON e.push_id = p.push_id "
        "WHERE p.push_id = ?"
    )
    created, *reached = reader.execute(times, (push_id,)).fetchone()
    assert {t[11:19] for t in reached} == {"02:15:07"}  # what the test is about, before the erasure

    clock.advance(days=2)
    assert client.delete("/v1/me", headers=headers).status_code == 204

    created_after, *reached = reader.execute(times, (push_id,)).fetchone()
    assert (created_after, reached) == (created, [created] * 3)
    shown = client.get(f"/v1/pushes/{push_id}", headers=key).json()
    assert shown["status"] == "delivered"
    assert shown["updated_at"] == shown["created_at"], shown


def _reasons(runtime: Runtime, push_id: str) -> str:
    row = runtime.store.data.reader().execute("SELECT reasons FROM pushes WHERE push_id = ?", (push_id,))
    return str(row.fetchone()[0])
