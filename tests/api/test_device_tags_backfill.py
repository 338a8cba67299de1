"""Devices stored before tags were kept (migration 0014) get theirs at the next start, and a
device two users had both registered goes to the one whose app registered it last. Before, such
a pair stayed shared: only the current holder's app keeps registering, and its registration
could not find the other user's row, whose token is sealed under that user's own key. When
nobody can tell who registered last (both registrations predate registration times, migration
0015), both are disabled until the holder's app registers again: a phone that may be someone
else's gets no pushes meanwhile."""

from __future__ import annotations

from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from test_erasure_crash import gateway, user

from gateway.runtime import Runtime
from gateway.settings import Settings

Client = TestClient[Litestar]
PHONE = {"platform": "fcm", "token": "fcm-shared-install-0001"}


def statuses(client: Client, headers: Headers) -> list[str]:
    return [d["status"] for d in client.get("/v1/me/devices", headers=headers).json()]


def register(client: Client, headers: Headers, body: dict[str, str]) -> int:
    answer = client.post("/v1/me/devices", json=body, headers=headers)
    assert answer.status_code in (200, 201), answer.text
    return answer.status_code


def as_before_tags(runtime: Runtime) -> None:
    """As a gateway before migration 0014 left the rows: no tags, no registration times, active."""
    runtime.store.data.writer.run_sync(
        lambda conn: conn.execute(
            "UPDATE devices SET token_tag = NULL, registered_at = NULL, status = 'active', disabled_at = NULL"
        )
    )


def shared_before_tags(client: Client, runtime: Runtime, clock: FakeClock) -> None:
    """Alice, then Dave, registered the same phone; Alice has a phone of her own too."""
    for name in ("alice", "dave"):
        assert register(client, user(runtime, name), PHONE) == 201
        clock.advance(minutes=1)
    register(client, user(runtime, "alice"), {"platform": "fcm", "token": "alice-own-phone"})
    as_before_tags(runtime)
    assert statuses(client, user(runtime, "alice")) == ["active", "active"]


def test_a_device_nobody_can_tell_who_registered_last_is_disabled_for_both_until_registered(
    settings: Settings, clock: FakeClock
) -> None:
    with gateway(settings, clock) as (client, runtime):
        shared_before_tags(client, runtime, clock)

    with gateway(settings, clock) as (client, runtime):
        untagged = runtime.store.data.reader().execute("SELECT count(*) FROM devices WHERE token_tag IS NULL")
        assert untagged.fetchone()[0] == 0
        assert statuses(client, user(runtime, "alice")) == ["disabled", "active"]  # her own phone kept
        assert statuses(client, user(runtime, "dave")) == ["disabled"]
        assert runtime.devices.tag_untagged() == 0  # nothing left: the next start only looks

        assert register(client, user(runtime, "dave"), PHONE) == 200  # the holder's app, at its start
        assert statuses(client, user(runtime, "dave")) == ["active"]
        assert statuses(client, user(runtime, "alice")) == ["disabled", "active"]


def test_the_user_whose_app_registered_since_keeps_the_device_over_an_earlier_registration(
    settings: Settings, clock: FakeClock
) -> None:
    """Not the upgrade itself (it tags before serving), but a registration by a second process
    on the same files racing a start."""
    with gateway(settings, clock) as (client, runtime):
        shared_before_tags(client, runtime, clock)
        # Alice logged in again on the phone: her app registers it, after Dave's first registration.
        clock.advance(minutes=1)
        assert register(client, user(runtime, "alice"), PHONE) == 200
        # Her registration could not find Dave's row, untagged still: both stay active till the start.
        assert statuses(client, user(runtime, "dave")) == ["active"]

    with gateway(settings, clock) as (client, runtime):
        assert statuses(client, user(runtime, "alice")) == ["active", "active"]
        assert statuses(client, user(runtime, "dave")) == ["disabled"]


def test_two_registrations_at_the_same_instant_tell_nothing(settings: Settings, clock: FakeClock) -> None:
    with gateway(settings, clock) as (client, runtime):
        shared_before_tags(client, runtime, clock)
        runtime.store.data.writer.run_sync(
            lambda conn: conn.execute("UPDATE devices SET registered_at = ?", (clock().isoformat(),))
        )

    with gateway(settings, clock) as (client, runtime):
        assert statuses(client, user(runtime, "alice")) == ["disabled", "active"]
        assert statuses(client, user(runtime, "dave")) == ["disabled"]


def test_a_pair_split_across_batches_is_released_all_the_same(settings: Settings, clock: FakeClock) -> None:
    with gateway(settings, clock) as (client, runtime):
        shared_before_tags(client, runtime, clock)
        assert runtime.devices.tag_untagged(batch=1) == 3  # one row per transaction
        assert statuses(client, user(runtime, "alice")) == ["disabled", "active"]
        assert statuses(client, user(runtime, "dave")) == ["disabled"]
