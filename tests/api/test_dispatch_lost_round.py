"""A push whose round was lost mid-send (the worker killed after its sends went out, before
their answers were written) and that then ends unsent (consent withdrawn, its TTL run out)
keeps the lost round in its attempts: it may have reached the user, and an auditor reading
`rejected` or `expired` with no attempt would take it for a push never sent.

A review's probe on a real server (kill -9 while the relay held a push's answer) found such
pushes ending with `attempts: 0`. Here the lost round is what it leaves behind: the push
claimed under a lease, marked `sending`, and never settled.
"""

from __future__ import annotations

from datetime import timedelta

from test_dispatch_rules import World, world  # noqa: F401 (the fixture, on this module's clock)

from storage import outbox
from storage.connections import Connection


def lose_a_round(world: World, push_id: str) -> None:  # noqa: F811
    lease = timedelta(seconds=world.runtime.settings.worker_lease_seconds)
    now = world.clock()

    def claim(conn: Connection) -> None:
        claimed = outbox.claim(conn, "killed-worker", now, lease, 10)
        assert [c.push_id for c in claimed] == [push_id]
        conn.execute("UPDATE pushes SET status = 'sending' WHERE push_id = ?", (push_id,))

    world.runtime.store.data.writer.run_sync(claim)
    world.clock.advance(seconds=lease.total_seconds() + 1)


def test_a_push_sent_by_a_lost_round_then_withdrawn_from_keeps_its_attempt(world: World) -> None:  # noqa: F811
    world.user("ana")
    push_id = world.submit("ana")["push_id"]
    lose_a_round(world, push_id)
    withdraw = {"granted": False, "notice_version": "v1"}
    withdrawn = world.client.put("/v1/me/consents/marketing", json=withdraw, headers=world.as_user("ana"))
    assert withdrawn.status_code == 200, withdrawn.text

    assert world.run() == 1
    read = world.read(push_id)
    assert read["status"] == "rejected"
    assert [r["code"] for r in read["reasons"]] == ["no_consent"]
    assert read["attempts"] == 1
    assert world.outbox() == 0
    assert world.sink() == []  # nothing sent after the withdrawal


def test_a_push_sent_by_a_lost_round_then_expired_keeps_its_attempt(world: World) -> None:  # noqa: F811
    world.user("ben")
    push_id = world.submit("ben", ttl_seconds=60)["push_id"]
    lose_a_round(world, push_id)
    world.clock.advance(seconds=60)

    assert world.run() == 1
    read = world.read(push_id)
    assert read["status"] == "expired"
    assert read["attempts"] == 1


def test_a_push_never_claimed_before_ends_with_no_attempt(world: World) -> None:  # noqa: F811
    """The count is the claims' own: no lost round, no attempt."""
    world.user("cai")
    push_id = world.submit("cai", ttl_seconds=60)["push_id"]
    world.clock.advance(seconds=61)

    assert world.run() == 1
    read = world.read(push_id)
    assert read["status"] == "expired"
    assert read["attempts"] == 0
