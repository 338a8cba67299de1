"""A push deferred to the morning of the user's old time zone counts where dispatch will send
it by the zone and quiet hours in force, or not at all if it will expire first. It counted at
its old time: a user who moved from New York to Tokyo had a push deferred to 08:00 in New York
(22:00 in Tokyo, inside their quiet hours there) refuse, under the day's cap, the one push of
their Tuesday in Tokyo; then the first went on Wednesday, or expired, and Tuesday had nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient

Client = TestClient[Litestar]
Json = dict[str, Any]
MONDAY_NIGHT_IN_NEW_YORK = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)  # 22:00 EST
TUESDAY_NOON_IN_TOKYO = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)  # 13:00 JST


def _onboard(client: Client, as_user: Callable[[str], Headers], timezone: str) -> Headers:
    user = as_user("mika")
    consent = {"granted": True, "notice_version": "v1"}
    assert client.put("/v1/me/consents/marketing", json=consent, headers=user).status_code == 200
    device = {"platform": "fcm", "token": "fcm-device-of-mika"}
    assert client.post("/v1/me/devices", json=device, headers=user).status_code == 201
    assert client.patch("/v1/me/preferences", json={"timezone": timezone}, headers=user).status_code == 200
    return user


def _push(client: Client, key: Headers, idempotency_key: str, topic: str, **fields: Any) -> Json:
    body = {
        "idempotency_key": idempotency_key,
        "user_id": "mika",
        "topic": topic,
        "title": "Sale",
        "body": "Today",
    }
    answer = client.post("/v1/pushes", json=body | fields, headers=key)
    assert answer.status_code == 200, answer.text
    result: Json = answer.json()
    return result


@pytest.mark.parametrize("ttl_hours", [24, 12])  # Wednesday 08:00 in Tokyo is within a day, not half
def test_a_push_deferred_in_the_old_zone_counts_where_the_new_one_sends_it(
    client: Client,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
    ttl_hours: int,
) -> None:
    user = _onboard(client, as_user, "America/New_York")
    key = as_key("pushes:write")
    clock.now = MONDAY_NIGHT_IN_NEW_YORK
    first = _push(client, key, "k1", "promotions", ttl_seconds=ttl_hours * 3600)
    assert (first["outcome"], first["deliver_after"]) == ("deferred", "2026-11-24T13:00:00Z")
    clock.now = TUESDAY_NOON_IN_TOKYO
    zone = {"timezone": "Asia/Tokyo"}
    assert client.patch("/v1/me/preferences", json=zone, headers=user).status_code == 200

    second = _push(client, key, "k2", "flash_sales")

    assert second["outcome"] == "queued", second


def test_a_push_deferred_by_unchanged_settings_still_counts(
    client: Client,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    """Nothing changed: the deferred push holds the day it goes on, as before."""
    _onboard(client, as_user, "Asia/Tokyo")
    key = as_key("pushes:write")
    clock.now = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)  # Tuesday 22:00 in Tokyo
    first = _push(client, key, "k1", "promotions")
    assert (first["outcome"], first["deliver_after"]) == ("deferred", "2026-11-24T23:00:00Z")
    clock.now = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)  # Wednesday 08:30 in Tokyo, not yet sent

    second = _push(client, key, "k2", "flash_sales")

    assert second["outcome"] == "rejected", second
    assert {r["code"] for r in second["reasons"]} == {"frequency_capped"}, second
