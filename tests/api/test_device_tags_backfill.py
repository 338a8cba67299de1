"""Devices stored before tags were kept (migration 0014) get theirs at the next start, and a
device two users had both registered goes to the later one. Before, such a pair stayed shared:
only the current holder's app keeps registering, and its registration could not find the other
user's row, whose token is sealed under that user's own key."""

from __future__ import annotations

from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from test_erasure_crash import gateway, user

from gateway.settings import Settings

Client = TestClient[Litestar]
PHONE = "fcm-shared-install-0001"


def statuses(client: Client, headers: Headers) -> list[str]:
    return [d["status"] for d in client.get("/v1/me/devices", headers=headers).json()]


def test_a_device_two_users_registered_before_tags_goes_to_the_later_at_start(
    settings: Settings, clock: FakeClock
) -> None:
    with gateway(settings, clock) as (client, runtime):
        for name in ("alice", "dave"):
            answer = client.post(
                "/v1/me/devices", json={"platform": "fcm", "token": PHONE}, headers=user(runtime, name)
            )
            assert answer.status_code == 201, answer.text
            clock.advance(minutes=1)
        client.post(
            "/v1/me/devices",
            json={"platform": "fcm", "token": "alice-own-phone"},
            headers=user(runtime, "alice"),
        )
        # As a gateway before migration 0014 left them: no tags, and both registrations active.
        runtime.store.data.writer.run_sync(
            lambda conn: conn.execute(
                "UPDATE devices SET token_tag = NULL, status = 'active', disabled_at = NULL"
            )
        )
        assert statuses(client, user(runtime, "alice")) == ["active", "active"]

    with gateway(settings, clock) as (client, runtime):
        untagged = runtime.store.data.reader().execute("SELECT count(*) FROM devices WHERE token_tag IS NULL")
        assert untagged.fetchone()[0] == 0
        assert sorted(statuses(client, user(runtime, "alice"))) == ["active", "disabled"]
        assert statuses(client, user(runtime, "dave")) == ["active"]  # the later registration
        assert runtime.devices.tag_untagged() == 0  # nothing left: the next start only looks
