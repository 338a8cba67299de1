"""Pushes decided while an admin changes the policy: by the newest rules, whichever process
decides them, and a replay still gets its first answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from conftest import FakeClock
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings
from policies.settings import PolicySettings

Client = TestClient[Litestar]
AsKey = Callable[..., dict[str, str]]


def policy(**changes: Any) -> dict[str, Any]:
    settings: dict[str, Any] = msgspec.to_builtins(msgspec.structs.replace(PolicySettings(), **changes))
    return settings


def push(key: str, **fields: Any) -> dict[str, Any]:
    return {"idempotency_key": key, "user_id": "nobody", "topic": "transactional", "title": "Paid",
            "body": "CNY 12.00"} | fields  # fmt: skip


def test_another_process_decides_by_the_policy_an_admin_just_changed(
    client: Client, runtime: Runtime, as_key: AsKey, settings: Settings, clock: FakeClock
) -> None:
    """Regression: a second `serve` on the same data dir kept the rules it started with until
    its dispatcher happened to claim something, and recorded its decisions under that version."""
    sender = as_key("pushes:write")
    with TestClient(create_app(settings, clock)) as other:
        assert other.post("/v1/pushes", headers=sender, json=push("warm-up")).status_code == 200
        changed = client.put(
            "/v1/admin/policy", headers=as_key("admin"),
            json=policy(default_ttl_seconds=3600, max_ttl_seconds=3600),
        )  # fmt: skip
        assert changed.status_code == 200, changed.text

        assert_problem(
            other.post("/v1/pushes", headers=sender, json=push("long", ttl_seconds=86400)), 400, "ttl_seconds"
        )
        answer = other.post("/v1/pushes", headers=sender, json=push("default"))
        assert answer.status_code == 200, answer.text
        assert answer.json()["expires_at"] == "2026-11-23T11:00:00Z"
    version = runtime.store.data.reader().execute(
        "SELECT policy_version FROM pushes WHERE push_id = ?", (answer.json()["push_id"],)
    )
    assert version.fetchone()[0] == changed.json()["version"]


def test_a_replay_keeps_its_answer_after_the_maximum_ttl_was_lowered(client: Client, as_key: AsKey) -> None:
    sender = as_key("pushes:write")
    week = push("weekly", ttl_seconds=7 * 86400)
    first = client.post("/v1/pushes", headers=sender, json=week)
    assert first.status_code == 200, first.text
    lowered = client.put("/v1/admin/policy", headers=as_key("admin"), json=policy(max_ttl_seconds=86400))
    assert lowered.status_code == 200, lowered.text

    replay = client.post("/v1/pushes", headers=sender, json=week)
    batch = client.post("/v1/pushes/batch", headers=sender, json={"pushes": [week]})

    assert replay.status_code == 200, replay.text
    assert replay.json() == first.json()
    assert batch.status_code == 200, batch.text
    assert batch.json()["results"] == [first.json()]
    fresh = client.post(
        "/v1/pushes/batch", headers=sender, json={"pushes": [week, push("new", ttl_seconds=7 * 86400)]}
    )
    assert_problem(fresh, 400, "pushes[1].ttl_seconds")
