"""An API key revoked by one process stops working in every other process on the same data dir.

Each process caches the keys it has verified. `DELETE /v1/admin/keys/{key_id}` evicts the key
from the cache of the process that serves it; any other process (a second `serve` on the same
data dir) reads the key again once its cached verification is `MAX_AGE_SECONDS` old. Here the
key is verified (and so cached) by one process, revoked through the other, and must be refused
by the first within the bound. The in-process pair injects a short bound; the real processes
run with the default one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FakeClock
from litestar import Litestar
from litestar.testing import TestClient
from support import Server, assert_problem, serve_process

from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.services.api_keys import MAX_AGE_SECONDS, ApiKeyRegistry
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ADMIN_ROUTE = "/v1/admin/policy"
SHORT_MAX_AGE = 0.2
SLACK_SECONDS = 10.0  # for a loaded machine: the bound is checked, not how fast it is met


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _refused_within(get: Any, headers: dict[str, str], seconds: float) -> bool:
    """Whether `get(ADMIN_ROUTE)` with `headers` turns 401 before `seconds` (plus slack) pass;
    every answer until then must be the 200 of a key still cached."""
    deadline = time.monotonic() + seconds + SLACK_SECONDS
    while time.monotonic() < deadline:
        answer = get(ADMIN_ROUTE, headers=headers)
        if answer.status_code == 401:
            assert_problem(answer, 401, "Authorization")
            return True
        assert answer.status_code == 200, answer.text
        time.sleep(0.02)
    return False


def test_a_key_revoked_through_another_app_is_refused_within_the_bound(
    client: TestClient[Litestar], runtime: Runtime, settings: Settings, clock: FakeClock
) -> None:
    # Each request finds the registry on the runtime: a short bound instead of the default's wait.
    runtime.api_keys = ApiKeyRegistry(runtime.store, clock, max_age=SHORT_MAX_AGE)
    _, admin_secret = runtime.api_keys.create_sync("admin", ("admin",))
    victim, victim_secret = runtime.api_keys.create_sync("victim", ("admin",))
    admin, stolen = _bearer(admin_secret), _bearer(victim_secret)
    assert client.get(ADMIN_ROUTE, headers=stolen).status_code == 200  # cached here now

    with TestClient(create_app(settings, clock)) as other:
        revoked = other.delete(f"/v1/admin/keys/{victim.key_id}", headers=admin)
        assert revoked.status_code == 204, revoked.text
        assert_problem(other.get(ADMIN_ROUTE, headers=stolen), 401, "Authorization")

    assert _refused_within(client.get, stolen, SHORT_MAX_AGE), "the revoked key is still accepted"
    assert client.get(ADMIN_ROUTE, headers=admin).status_code == 200  # re-read after the bound, still live


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Two `consent-gateway serve` processes on one data dir; the first creates the dev keys."""
    data_dir = tmp_path / "data"
    with serve_process(data_dir, tmp_path / "first.stderr", {}) as first:
        with serve_process(data_dir, tmp_path / "second.stderr", {}) as second:
            yield first, second
            second.stop()
        first.stop()


def _create_key(server: Server, name: str, scope: str) -> str:
    created = server.cli("keys", "create", "--name", name, "--scope", scope)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


@pytest.mark.slow
def test_a_key_revoked_through_another_serve_process_is_refused_within_the_bound(
    two_servers: tuple[Server, Server],
) -> None:
    first, second = two_servers
    admin = _bearer(_create_key(first, "admin", "admin"))
    victim_secret = _create_key(first, "victim", "admin")
    victim_id = victim_secret.split("_")[1]
    stolen = _bearer(victim_secret)

    with (
        httpx.Client(base_url=first.base, timeout=10.0) as one,
        httpx.Client(base_url=second.base, timeout=10.0) as two,
    ):
        assert one.get(ADMIN_ROUTE, headers=stolen).status_code == 200  # cached by the first process
        revoked = two.delete(f"/v1/admin/keys/{victim_id}", headers=admin)
        assert revoked.status_code == 204, revoked.text

        assert _refused_within(one.get, stolen, MAX_AGE_SECONDS), "the revoked key is still accepted"

        # The last admin key is still refused revocation, whichever process is asked.
        admin_id = admin["Authorization"].split("_")[1]
        for http in (one, two):
            assert_problem(http.delete(f"/v1/admin/keys/{admin_id}", headers=admin), 409, "key_id")
        assert one.get(ADMIN_ROUTE, headers=admin).status_code == 200


def test_security_md_states_the_bound_in_force() -> None:
    security = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    assert f"for at most {MAX_AGE_SECONDS:g} s" in security
