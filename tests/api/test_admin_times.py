"""The admin answers give times as every other answer does (PRODUCT.md: "Times are RFC 3339 in
UTC"), in the `Z` form: a new key's `created_at` and a policy's `changed_at` went out as stored,
`2026-11-23T10:00:00+00:00`, so a client comparing them as text with the rest saw two spellings."""

from __future__ import annotations

from collections.abc import Callable

from conftest import FakeClock
from litestar import Litestar
from litestar.testing import TestClient

Client = TestClient[Litestar]
AsKey = Callable[..., dict[str, str]]


def test_a_new_key_says_when_it_was_made_in_the_z_form(client: Client, as_key: AsKey) -> None:
    created = client.post(
        "/v1/admin/keys", json={"name": "svc", "scopes": ["pushes:write"]}, headers=as_key("admin")
    )
    assert created.status_code == 201, created.text
    assert created.json()["created_at"] == "2026-11-23T10:00:00Z"


def test_a_policy_says_when_it_changed_in_the_z_form(client: Client, as_key: AsKey, clock: FakeClock) -> None:
    admin = as_key("admin")
    defaults = client.get("/v1/admin/policy", headers=admin).json()
    assert defaults["changed_at"] is None  # the built-in defaults were never changed by anyone
    clock.advance(minutes=5)
    put = client.put("/v1/admin/policy", json=defaults["settings"], headers=admin)
    assert put.status_code == 200, put.text
    assert put.json()["changed_at"] == "2026-11-23T10:05:00Z"
    assert client.get("/v1/admin/policy", headers=admin).json()["changed_at"] == "2026-11-23T10:05:00Z"
