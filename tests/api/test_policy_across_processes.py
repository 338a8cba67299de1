"""A policy change reaches a delivery worker running as its own process.

`PUT /v1/admin/policy` is served by `serve`; a `consent-gateway worker` beside it has its own
`PolicySource`, loaded when it started. Here a second `Runtime` on the same data directory
stands in for that process: it is built before the change, then runs a dispatch round."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient

from gateway.errors import InvalidInput
from gateway.runtime import Runtime
from gateway.schemas.complaints import ComplaintCreate
from gateway.schemas.me import Frequency, PreferencesUpdate, QuietHours
from gateway.settings import Settings
from policies.settings import PolicySettings
from storage.connections import Connection

Client = TestClient[Litestar]


def _consented_push(
    client: Client, as_user: Callable[[str], Headers], service: Headers, user_id: str
) -> dict[str, Any]:
    """A user with marketing consent and a device, and a promotions push queued for them."""
    user = as_user(user_id)
    consent = {"granted": True, "notice_version": "v1"}
    assert client.put("/v1/me/consents/marketing", json=consent, headers=user).status_code == 200
    device = {"platform": "fcm", "token": f"fcm-policy-{user_id}"}
    assert client.post("/v1/me/devices", json=device, headers=user).status_code == 201
    push = {"idempotency_key": "k1", "user_id": user_id, "topic": "promotions", "title": "t", "body": "b"}
    answer: dict[str, Any] = client.post("/v1/pushes", json=push, headers=service).json()
    return answer


def test_a_separate_worker_judges_by_the_policy_changed_after_it_started(
    client: Client,
    runtime: Runtime,
    settings: Settings,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    service, admin = as_key("pushes:write"), as_key("admin")
    submitted = _consented_push(client, as_user, service, "alice")
    assert submitted["outcome"] == "queued", submitted
    worker = Runtime(settings, clock)
    try:
        policy = client.get("/v1/admin/policy", headers=admin).json()["settings"]
        changed = client.put("/v1/admin/policy", json={**policy, "max_per_week": 0}, headers=admin)
        assert changed.status_code == 200, changed.text

        assert client.blocking_portal.call(worker.dispatcher.run_once, "worker-process", 10) == 1

        read = client.get(f"/v1/pushes/{submitted['push_id']}", headers=service).json()
        assert read["status"] == "rejected"
        assert [r["code"] for r in read["reasons"]] == ["frequency_capped"]
        assert worker.policy.version.version == runtime.policy.version.version == 1
    finally:
        worker.close()


def test_a_second_process_files_complaints_and_takes_preferences_under_the_newest_policy(
    client: Client,
    runtime: Runtime,
    settings: Settings,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    """Only submissions and dispatch caught up with a change made by another process: a second
    `serve` that took no push kept muting complaints' topics for the old number of days, judging
    campaigns by the old rate, and taking quiet hours and weekly caps the new policy refuses."""
    service, admin = as_key("pushes:write"), as_key("admin")
    push_id = _consented_push(client, as_user, service, "bea")["push_id"]
    other = Runtime(settings, clock)  # started before the change
    try:
        policy = client.get("/v1/admin/policy", headers=admin).json()["settings"]
        changed = {**policy, "min_quiet_minutes": 600, "max_per_week": 1, "complaint_mute_days": 2}
        assert client.put("/v1/admin/policy", json=changed, headers=admin).status_code == 200
        ref = runtime.store.pseudonyms.subject_ref("bea")

        short = PreferencesUpdate(quiet_hours=QuietHours("22:00", "22:30"))
        with pytest.raises(InvalidInput, match="at least 600 minutes"):
            client.blocking_portal.call(other.preferences.update, ref, short, "user")
        too_many = PreferencesUpdate(frequency=Frequency(3))
        with pytest.raises(InvalidInput, match="system cap of 1"):
            client.blocking_portal.call(other.preferences.update, ref, too_many, "user")
        assert other.preferences.read(ref).frequency.max_per_week == 1

        complaint = ComplaintCreate(push_id=push_id, reason="irrelevant")
        client.blocking_portal.call(other.complaints.file, ref, complaint, "user")
        (until,) = runtime.store.data.reader().execute("SELECT until FROM mutes").fetchone()
        assert datetime.fromisoformat(until) == clock() + timedelta(days=2)
    finally:
        other.close()


def test_a_version_read_in_a_rolled_back_group_gives_way_to_the_one_committed_under_its_number(
    client: Client,
    runtime: Runtime,
    settings: Settings,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    """A unit that refreshes the policy in the same writer group as an admin's change reads the
    new version before it is committed; the group then fails (a disk error), and another process
    commits other settings under the same number. Compared by number alone, this process went on
    judging by the settings that were never stored."""
    relaxed, strict = PolicySettings(max_per_day=5), PolicySettings(max_per_week=0)
    writer = runtime.store.data.writer

    def lost(conn: Connection) -> None:  # what SQLITE_IOERR or SQLITE_FULL do to the group
        conn.execute("ROLLBACK")
        raise OSError("disk I/O error")

    async def group_rolled_back() -> None:
        jobs = [
            asyncio.ensure_future(runtime.policy.change(relaxed, "admin", None)),
            asyncio.ensure_future(writer.run(runtime.policy.refresh)),
        ]
        await asyncio.sleep(0)
        await asyncio.gather(*jobs, writer.submit(lost), return_exceptions=True)

    other = Runtime(settings, clock)  # a second `serve` on the same data directory
    try:
        client.blocking_portal.call(group_rolled_back)
        stored = runtime.store.data.reader().execute("SELECT count(*) FROM policy_versions").fetchone()[0]
        assert (stored, runtime.policy.version.version) == (0, 1)  # read in the group, not stored
        clock.advance(seconds=1)
        client.blocking_portal.call(other.policy.change, strict, "admin", None)
    finally:
        other.close()

    submitted = _consented_push(client, as_user, as_key("pushes:write"), "bea")
    assert submitted["outcome"] == "rejected", submitted
    assert [r["code"] for r in submitted["reasons"]] == ["frequency_capped"]
    assert runtime.policy.settings == strict
