"""A policy change reaches a delivery worker running as its own process.

`PUT /v1/admin/policy` is served by `serve`; a `consent-gateway worker` beside it has its own
`PolicySource`, loaded when it started. Here a second `Runtime` on the same data directory
stands in for that process: it is built before the change, then runs a dispatch round."""

from __future__ import annotations

from collections.abc import Callable

from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient

from gateway.runtime import Runtime
from gateway.settings import Settings

Client = TestClient[Litestar]


def test_a_separate_worker_judges_by_the_policy_changed_after_it_started(
    client: Client,
    runtime: Runtime,
    settings: Settings,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    user, service, admin = as_user("alice"), as_key("pushes:write"), as_key("admin")
    assert client.put(
        "/v1/me/consents/marketing", json={"granted": True, "notice_version": "v1"}, headers=user
    )
    assert client.post("/v1/me/devices", json={"platform": "fcm", "token": "fcm-policy-token"}, headers=user)
    push = {"idempotency_key": "k1", "user_id": "alice", "topic": "promotions", "title": "t", "body": "b"}
    submitted = client.post("/v1/pushes", json=push, headers=service).json()
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
