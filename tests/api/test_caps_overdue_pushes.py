"""A push still waiting past its planned time (the worker behind) counts against the caps where
dispatch will count it. Over a minute late, dispatch moves it to the time it sends it; the caps
counted it at its old time, so a push due at 23:59 and still waiting at 00:05 left the new day's
room free: the next push was answered `queued`, and refused `frequency_capped` when dispatch sent
the first on the new day. One past its expiry, which dispatch ends `expired`, holds no place
(storage leaves it out of the subject's state)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import Scripted

from gateway.runtime import Runtime
from gateway.services.dispatch import Dispatcher

Client = TestClient[Litestar]
Json = dict[str, Any]
KeyHeaders = Callable[..., Headers]


def _onboard(client: Client, as_user: Callable[[str], Headers]) -> None:
    user = as_user("tane")
    consent = {"granted": True, "notice_version": "v1"}
    assert client.put("/v1/me/consents/marketing", json=consent, headers=user).status_code == 200
    device = {"platform": "fcm", "token": "fcm-device-0001"}
    assert client.post("/v1/me/devices", json=device, headers=user).status_code == 201
    settings = {"timezone": "UTC", "quiet_hours": {"start": "03:00", "end": "07:00"}}
    assert client.patch("/v1/me/preferences", json=settings, headers=user).status_code == 200


def _push(client: Client, key: Headers, idempotency_key: str, topic: str, **fields: Any) -> Json:
    body = {
        "idempotency_key": idempotency_key,
        "user_id": "tane",
        "topic": topic,
        "title": "Sale",
        "body": "Today",
    }
    answer = client.post("/v1/pushes", json=body | fields, headers=key)
    assert answer.status_code == 200, answer.text
    result: Json = answer.json()
    return result


def _dispatch(client: Client, runtime: Runtime) -> int:
    rt = runtime
    providers: dict[str, Any] = {"fcm": Scripted("fcm", "delivered")}
    dispatcher = Dispatcher(rt.store, rt.clock, rt.settings, rt.policy, rt.metrics, providers)
    claimed: int = client.blocking_portal.call(dispatcher.run_once, "test-worker", 100)
    return claimed


def _status(client: Client, key: Headers, push_id: str) -> Json:
    answer: Json = client.get(f"/v1/pushes/{push_id}", headers=key).json()
    return answer


def test_a_push_overdue_past_midnight_takes_the_new_day_s_room(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: Callable[[str], Headers], as_key: KeyHeaders
) -> None:
    key = as_key("pushes:write")
    _onboard(client, as_user)
    clock.now = datetime(2026, 11, 23, 23, 59, tzinfo=UTC)
    first = _push(client, key, "k1", "promotions")
    assert first["outcome"] == "queued"

    clock.now = datetime(2026, 11, 24, 0, 5, tzinfo=UTC)  # nothing dispatched meanwhile
    second = _push(client, key, "k2", "flash_sales")
    assert second["outcome"] == "rejected"
    assert second["reasons"] == [{"code": "frequency_capped", "window": "day", "limit": 1}]

    clock.now = datetime(2026, 11, 24, 0, 6, tzinfo=UTC)
    assert _dispatch(client, runtime) == 1
    assert _status(client, key, first["push_id"])["status"] == "delivered"


def test_a_push_overdue_within_a_minute_still_counts_at_its_own_time(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: Callable[[str], Headers], as_key: KeyHeaders
) -> None:
    """Dispatch keeps the planned time of a push sent within a minute of it."""
    key = as_key("pushes:write")
    _onboard(client, as_user)
    clock.now = datetime(2026, 11, 23, 23, 59, 40, tzinfo=UTC)
    first = _push(client, key, "k1", "promotions")
    clock.now = datetime(2026, 11, 24, 0, 0, 20, tzinfo=UTC)
    second = _push(client, key, "k2", "flash_sales")
    assert second["outcome"] == "queued", second
    assert _dispatch(client, runtime) == 2
    assert _status(client, key, first["push_id"])["status"] == "delivered"
    assert _status(client, key, second["push_id"])["status"] == "delivered"


def test_a_push_overdue_past_its_expiry_holds_no_place(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: Callable[[str], Headers], as_key: KeyHeaders
) -> None:
    key = as_key("pushes:write")
    _onboard(client, as_user)
    clock.now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    first = _push(client, key, "k1", "promotions", ttl_seconds=60)
    assert first["outcome"] == "queued"

    clock.now = datetime(2026, 11, 23, 10, 5, tzinfo=UTC)
    second = _push(client, key, "k2", "flash_sales")
    assert second["outcome"] == "queued", second
    assert _dispatch(client, runtime) == 2
    assert _status(client, key, first["push_id"])["status"] == "expired"
    assert _status(client, key, second["push_id"])["status"] == "delivered"
