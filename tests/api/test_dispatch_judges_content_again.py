"""Dispatch scans a push's content again unless it passed the very rule that would judge it now.

Rule 2 (minimization) reads the push's topic, title, body and data, the settings and its own
code. A push keeps the `content_key` of the code and settings it was accepted under; dispatch
skips the scan only while that key is in force. An admin's change to the policy (a shorter
body, a data key no longer allowed) stops the push at dispatch, in this process or in a worker
started before the change; so does an upgrade that tightens the rule under the same policy
version (its `RULE_REVISION` raised). The dispatcher runs by hand on the app's loop
(`worker_enabled=False`), as in test_final_policy_version.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient

from gateway.runtime import Runtime
from gateway.settings import Settings
from policies import minimization

Client = TestClient[Litestar]
AsKey = Callable[..., Headers]
AsUser = Callable[[str], Headers]


@pytest.fixture
def service(as_key: AsKey) -> Headers:
    return as_key("pushes:write")


def submit(client: Client, service: Headers, as_user: AsUser, user_id: str) -> str:
    device = {"platform": "fcm", "token": f"fcm-token-{user_id}"}
    answer = client.post("/v1/me/devices", headers=as_user(user_id), json=device)
    assert answer.status_code == 201, answer.text
    body = {
        "idempotency_key": f"idem-{user_id}",
        "user_id": user_id,
        "topic": "transactional",
        "title": "Payment received",
        "body": "Your payment of 12.50 went through.",
        "data": {"deeplink": "wallet://receipts"},
    }
    answer = client.post("/v1/pushes", headers=service, json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "queued", answer.text
    return str(answer.json()["push_id"])


def change_policy(client: Client, as_key: AsKey, **changes: Any) -> None:
    admin = as_key("admin")
    policy = client.get("/v1/admin/policy", headers=admin).json()["settings"]
    changed = client.put("/v1/admin/policy", json={**policy, **changes}, headers=admin)
    assert changed.status_code == 200, changed.text


def ended(client: Client, service: Headers, push_id: str) -> tuple[str, list[dict[str, Any]], int | None]:
    answer = client.get(f"/v1/pushes/{push_id}", headers=service)
    assert answer.status_code == 200, answer.text
    push = answer.json()
    return push["status"], push["reasons"], push["reasons_policy_version"]


def test_a_push_accepted_under_the_policy_in_force_is_sent(
    client: Client, runtime: Runtime, service: Headers, as_user: AsUser
) -> None:
    push_id = submit(client, service, as_user, "ada")
    assert client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 10) == 1
    assert ended(client, service, push_id) == ("delivered", [], 0)


def test_a_body_too_long_for_the_new_policy_is_not_sent(
    client: Client, runtime: Runtime, service: Headers, as_key: AsKey, as_user: AsUser
) -> None:
    push_id = submit(client, service, as_user, "ada")
    change_policy(client, as_key, body_max_chars=10)
    assert client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 10) == 1
    status, reasons, version = ended(client, service, push_id)
    assert (status, version) == ("rejected", 1)
    assert reasons == [{"code": "payload_too_large", "field": "body", "limit": 10}]


def test_a_worker_started_before_the_change_judges_the_content_by_the_new_policy(
    client: Client,
    settings: Settings,
    clock: FakeClock,
    service: Headers,
    as_key: AsKey,
    as_user: AsUser,
) -> None:
    push_id = submit(client, service, as_user, "ada")
    worker = Runtime(settings, clock)  # under version 0, like a `worker` process
    try:
        change_policy(client, as_key, allowed_data_keys={"transactional": []})
        assert client.blocking_portal.call(worker.dispatcher.run_once, "worker-process", 10) == 1
    finally:
        worker.close()
    status, reasons, version = ended(client, service, push_id)
    assert (status, version) == ("rejected", 1)
    assert reasons == [{"code": "payload_field_not_allowed", "field": "deeplink"}]


def test_an_upgrade_that_tightens_the_rule_scans_the_pushes_queued_before(
    client: Client,
    settings: Settings,
    clock: FakeClock,
    service: Headers,
    as_user: AsUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    push_id = submit(client, service, as_user, "ada")
    # The new release refuses the data key this push carries, under the same policy version,
    # and runs as a process started after the upgrade.
    monkeypatch.setattr(minimization, "RULE_REVISION", minimization.RULE_REVISION + 1)
    monkeypatch.setattr(minimization, "RESERVED_DATA_KEY", re.compile("deeplink"))
    upgraded = Runtime(settings, clock)
    try:
        assert client.blocking_portal.call(upgraded.dispatcher.run_once, "upgraded-worker", 10) == 1
    finally:
        upgraded.close()
    status, reasons, version = ended(client, service, push_id)
    assert (status, version) == ("rejected", 0)
    assert reasons == [{"code": "payload_field_not_allowed", "field": "deeplink"}]
