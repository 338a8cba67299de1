"""Dispatch records the policy version it ended a push under (`final_policy_version`).

A push is decided at submission under one policy version (`policy_version`) and again at
dispatch, possibly under a newer one after `PUT /v1/admin/policy`. When dispatch ends the push
with its own reasons (`final_reasons`), the decision log must say which version gave them; a
push dispatch delivers without reasons of its own has none (null).

As in test_policy_across_processes, `worker_enabled=False` and the dispatcher runs by hand on
the app's loop through the TestClient's blocking portal; the FakeClock stands at 2026-11-23
10:00 UTC, outside the default quiet hours.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient

from gateway.runtime import Runtime
from gateway.settings import Settings
from storage.connections import connect
from storage.migrations import DATA_MIGRATIONS, migrate
from storage.repositories import pushes
from storage.repositories.pushes import PushRow

Client = TestClient[Litestar]
AsUser = Callable[[str], Headers]
Json = dict[str, Any]


@pytest.fixture
def service(as_key: Callable[..., Headers]) -> Headers:
    return as_key("pushes:write")


@pytest.fixture
def auditor(as_key: Callable[..., Headers]) -> Headers:
    return as_key("audit:read")


@pytest.fixture
def admin(as_key: Callable[..., Headers]) -> Headers:
    return as_key("admin")


def enrol(client: Client, as_user: AsUser, user_id: str) -> None:
    headers = as_user(user_id)
    answer = client.put(
        "/v1/me/consents/marketing", headers=headers, json={"granted": True, "notice_version": "v1"}
    )
    assert answer.status_code == 200, answer.text
    device = {"platform": "fcm", "token": f"fcm-token-{user_id}"}
    answer = client.post("/v1/me/devices", headers=headers, json=device)
    assert answer.status_code == 201, answer.text


def submit(client: Client, service: Headers, user_id: str) -> str:
    body = {
        "idempotency_key": f"idem-{user_id}",
        "user_id": user_id,
        "topic": "promotions",
        "title": "t",
        "body": "b",
    }
    answer = client.post("/v1/pushes", headers=service, json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "queued", answer.text
    return str(answer.json()["push_id"])


def lower_the_cap_to_zero(client: Client, admin: Headers) -> None:
    policy = client.get("/v1/admin/policy", headers=admin).json()["settings"]
    changed = client.put("/v1/admin/policy", json={**policy, "max_per_week": 0}, headers=admin)
    assert changed.status_code == 200, changed.text


def dispatch(client: Client, runtime: Runtime) -> int:
    claimed: int = client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 100)
    return claimed


def decision(client: Client, auditor: Headers, push_id: str) -> Json:
    answer = client.get("/v1/audit/decisions", headers=auditor, params={"push_id": push_id})
    assert answer.status_code == 200, answer.text
    (row,) = answer.json()["decisions"]
    got: Json = row
    return got


def read(client: Client, service: Headers, push_id: str) -> Json:
    answer = client.get(f"/v1/pushes/{push_id}", headers=service)
    assert answer.status_code == 200, answer.text
    got: Json = answer.json()
    return got


def test_final_reasons_carry_the_policy_version_dispatch_judged_by(
    client: Client,
    runtime: Runtime,
    as_user: AsUser,
    service: Headers,
    auditor: Headers,
    admin: Headers,
) -> None:
    enrol(client, as_user, "ada")
    enrol(client, as_user, "bo")
    delivered = submit(client, service, "ada")
    assert dispatch(client, runtime) == 1

    capped = submit(client, service, "bo")  # under version 0
    lower_the_cap_to_zero(client, admin)  # version 1
    assert dispatch(client, runtime) == 1

    row = decision(client, auditor, capped)
    assert (row["outcome"], row["status"], row["policy_version"]) == ("queued", "rejected", 0)
    assert [r["code"] for r in row["final_reasons"]] == ["frequency_capped"]
    assert row["final_policy_version"] == 1
    shown = read(client, service, capped)
    assert [r["code"] for r in shown["reasons"]] == ["frequency_capped"]
    assert shown["reasons_policy_version"] == 1

    row = decision(client, auditor, delivered)  # delivered without reasons of dispatch's own
    assert (row["status"], row["policy_version"]) == ("delivered", 0)
    assert (row["final_reasons"], row["final_policy_version"]) == ([], None)
    assert read(client, service, delivered)["reasons_policy_version"] == 0


def test_a_separate_worker_records_the_version_it_refreshed_to(
    client: Client,
    settings: Settings,
    clock: FakeClock,
    as_user: AsUser,
    service: Headers,
    auditor: Headers,
    admin: Headers,
) -> None:
    enrol(client, as_user, "ada")
    push_id = submit(client, service, "ada")
    worker = Runtime(settings, clock)  # started under version 0, like a `worker` process
    try:
        lower_the_cap_to_zero(client, admin)
        assert client.blocking_portal.call(worker.dispatcher.run_once, "worker-process", 10) == 1
    finally:
        worker.close()

    row = decision(client, auditor, push_id)
    assert (row["policy_version"], row["final_policy_version"]) == (0, 1)
    assert [r["code"] for r in row["final_reasons"]] == ["frequency_capped"]


def test_the_migration_leaves_existing_final_reasons_without_a_version(tmp_path: Path) -> None:
    conn = connect(tmp_path / "gateway.db", secrets.token_bytes(32))
    before = [m for m in DATA_MIGRATIONS if m[0] != "0013_final_policy_version"]
    migrate(conn, before)
    stamp = datetime(2026, 12, 2, 10, 0, tzinfo=UTC).isoformat()
    row = PushRow(
        push_id="psh_1", key_id="key_1", idempotency_key="psh_1", fingerprint=b"f" * 32, subject_id=None,
        topic="promotions", campaign_id=None, variant=None, outcome="queued", status="rejected",
        reasons="[]", allowed_by="[]", planned_at=stamp, deliver_after=None,
        expires_at="2026-12-03T10:00:00+00:00", created_at=stamp, updated_at=stamp, policy_version=0,
        content=None, final_reasons='[{"code":"no_consent"}]',
    )  # fmt: skip
    values = msgspec.structs.asdict(row)
    del values["final_policy_version"]  # the table has no such column yet
    conn.execute("BEGIN")
    conn.execute(
        f"INSERT INTO pushes ({', '.join(values)}) VALUES ({','.join('?' * len(values))})",  # noqa: S608
        tuple(values.values()),
    )
    conn.execute("COMMIT")

    assert migrate(conn, DATA_MIGRATIONS) == ["0013_final_policy_version"]
    migrated = pushes.get(conn, "psh_1")
    assert migrated is not None
    assert (migrated.final_reasons, migrated.final_policy_version) == ('[{"code":"no_consent"}]', None)
    assert migrate(conn, DATA_MIGRATIONS) == []
    conn.close()
