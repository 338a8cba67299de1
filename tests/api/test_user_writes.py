"""A user's changes through the preference center are bounded: `CGW_USER_WRITES_PER_HOUR`.

Each change is kept, some for good (a consent change is a ledger event that erasure leaves in
place): a script with a user token filed 2,000 complaints in 3 s. Here the allowance is 20 an
hour, so bursts of 2: the third change is refused 429 with `Retry-After`, on every route that
changes something, and writes nothing; erasure and push events are never refused; reads are not
counted; another user is not affected; the gateway's clock refills the bucket.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXED_NOW, FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem, readers

from gateway.clock import system_clock
from gateway.errors import TooManyRequests
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.user_writes import UserWrites

Client = TestClient[Litestar]
PER_HOUR = 20  # bursts of 2; one more each 180 s
CONSENT = {"granted": True, "notice_version": "v1"}
CHANGES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "preferences": ("PATCH", "/v1/me/preferences", {"locale": "zh-CN"}),
    "consent": ("PUT", "/v1/me/consents/personalization", CONSENT),
    "device": ("POST", "/v1/me/devices", {"platform": "webhook", "token": "relay-device-limit-02"}),
    "device removed": ("DELETE", "/v1/me/devices/{device_id}", None),
    "location": ("PUT", "/v1/me/location", {"lat": 31.23, "lon": 121.47}),
    "complaint": ("POST", "/v1/me/complaints", {"reason": "other", "comment": "a note"}),
}


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, worker_enabled=False, user_writes_per_hour=PER_HOUR)


def rows(runtime: Runtime) -> dict[str, int]:
    counts = {}
    for name, conn in readers(runtime).items():
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            counts[f"{name}:{table}"] = int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])  # noqa: S608
    return counts


def spent(client: Client, user: Headers) -> str:
    """The user's burst spent: location consent, then a device; returns the device's id."""
    assert client.put("/v1/me/consents/location", json=CONSENT, headers=user).status_code == 200
    device = {"platform": "webhook", "token": "relay-device-limit-01"}
    answer = client.post("/v1/me/devices", json=device, headers=user)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["device_id"])


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_over_the_allowance_is_refused_and_writes_nothing(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], change: str
) -> None:
    user = as_user("busy-user")
    device_id = spent(client, user)
    before = rows(runtime)
    method, path, body = CHANGES[change]
    answer = client.request(method, path.format(device_id=device_id), json=body, headers=user)
    problem = assert_problem(answer, 429)
    assert answer.headers["retry-after"] == "180"
    assert "at most 20 an hour" in problem["detail"]
    assert rows(runtime) == before


def test_reads_erasure_and_other_users_are_not_held_back(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers]
) -> None:
    user = as_user("busy-user")
    spent(client, user)
    for path in ("/v1/me/preferences", "/v1/me/devices", "/v1/me/consents/history", "/v1/me/export"):
        assert client.get(path, headers=user).status_code == 200, path
    other = as_user("other-user")
    assert client.put("/v1/me/consents/marketing", json=CONSENT, headers=other).status_code == 200
    assert client.delete("/v1/me", headers=user).status_code == 204


def test_the_allowance_comes_back_with_time(
    client: Client, clock: FakeClock, as_user: Callable[[str], Headers]
) -> None:
    user = as_user("busy-user")
    spent(client, user)
    patch = {"timezone": "Asia/Shanghai"}
    assert client.patch("/v1/me/preferences", json=patch, headers=user).status_code == 429
    clock.advance(seconds=179)
    assert client.patch("/v1/me/preferences", json=patch, headers=user).headers["retry-after"] == "1"
    clock.advance(seconds=1)
    assert client.patch("/v1/me/preferences", json=patch, headers=user).status_code == 200
    assert client.patch("/v1/me/preferences", json=patch, headers=user).status_code == 429


def test_users_past_the_most_kept_start_again_and_zero_is_no_limit() -> None:
    writes = UserWrites(PER_HOUR, system_clock, most_users=2)
    writes.take("a")
    writes.take("a")
    with pytest.raises(TooManyRequests):
        writes.take("a")  # a burst of 2, spent
    writes.take("b")
    writes.take("c")  # two users kept at most: "a", the least recently seen, is forgotten ...
    writes.take("a")  # ... and starts again with a full bucket
    unlimited = UserWrites(0, system_clock)
    for _ in range(1000):
        unlimited.take("a")


@pytest.mark.parametrize("per_hour", [20, 27, 350, 600])
def test_a_client_that_waits_as_told_is_let_through(per_hour: int) -> None:
    """With 27 an hour the refill after exactly `Retry-After` seconds summed to a hair under one
    change, and the client that waited as told was refused again."""
    clock = FakeClock(FIXED_NOW)
    writes = UserWrites(per_hour, clock)
    for _ in range(30):
        while True:
            try:
                writes.take("a")
            except TooManyRequests as refused:
                clock.advance(seconds=refused.retry_after)
                break
        writes.take("a")  # waited exactly as long as told
