"""`GET /v1/audit/policy/versions/{version}`: every decision records the policy version it was
judged by, and an auditor reads that version's settings, superseded ones included, with who put
it in force and when. No route gave a superseded version before."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

from gateway.runtime import Runtime
from policies.settings import PolicySettings

Client = TestClient[Litestar]
ROUTE = "/v1/audit/policy/versions"


def _settings(**changes: Any) -> dict[str, Any]:
    settings: dict[str, Any] = msgspec.to_builtins(msgspec.structs.replace(PolicySettings(), **changes))
    return settings


@pytest.fixture
def auditor(as_key: Callable[..., Headers]) -> Headers:
    return as_key("audit:read")


def test_superseded_versions_are_read_with_who_and_when(
    client: Client, runtime: Runtime, auditor: Headers, clock: FakeClock
) -> None:
    key, secret = runtime.api_keys.create_sync("operator", ("admin",))
    admin = {"Authorization": f"Bearer {secret}"}
    for ttl in (3600, 7200):
        put = client.put("/v1/admin/policy", headers=admin, json=_settings(default_ttl_seconds=ttl))
        assert put.status_code == 200, put.text
        clock.advance(hours=1)

    first = client.get(f"{ROUTE}/1", headers=auditor)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "version": 1, "settings": _settings(default_ttl_seconds=3600),
        "changed_by": f"key:{key.key_id}", "changed_at": "2026-11-23T10:00:00Z",
    }  # fmt: skip
    second = client.get(f"{ROUTE}/2", headers=auditor).json()
    assert (second["settings"]["default_ttl_seconds"], second["changed_at"]) == (7200, "2026-11-23T11:00:00Z")
    defaults = client.get(f"{ROUTE}/0", headers=auditor).json()
    assert defaults == {"version": 0, "settings": _settings(), "changed_by": "defaults", "changed_at": None}


def test_unknown_and_bad_versions(client: Client, auditor: Headers) -> None:
    assert_problem(client.get(f"{ROUTE}/1", headers=auditor), 404, "version")
    assert_problem(client.get(f"{ROUTE}/{'9' * 9}", headers=auditor), 404, "version")
    for bad in ("x", "-1", "1e0", "+1", "1.0", "01", "9" * 10):
        assert_problem(client.get(f"{ROUTE}/{bad}", headers=auditor), 400, "version")


def test_it_is_an_audit_read_logged_and_closed_to_others(
    client: Client, auditor: Headers, as_key: Callable[..., Headers]
) -> None:
    assert_problem(client.get(f"{ROUTE}/0", headers=as_key("admin")), 403)
    assert_problem(client.get(f"{ROUTE}/0", headers=as_key("pushes:write")), 403)
    assert client.get(f"{ROUTE}/0", headers=auditor).status_code == 200
    assert_problem(client.put(f"{ROUTE}/0", headers=auditor, json={}), 405)
    entries = client.get("/v1/audit/access-log", headers=auditor).json()["entries"]
    reads = [(e["route"], e["filters"], e["result_count"]) for e in entries if e["route"].startswith(ROUTE)]
    assert reads[:3] == [(f"{ROUTE}/{{version}}", {"version": "0"}, n) for n in (0, 0, 1)]
