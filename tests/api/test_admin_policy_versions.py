"""`GET`/`PUT /v1/admin/policy` as a versioned resource: the `ETag` names the version, and a
`PUT` with `If-Match` is refused (412, nothing written) if another change came in between, so
two admins editing at once cannot silently undo each other."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

from policies.settings import PolicySettings

Client = TestClient[Litestar]
AsKey = Callable[..., dict[str, str]]


def body(**changes: Any) -> dict[str, Any]:
    settings: dict[str, Any] = msgspec.to_builtins(msgspec.structs.replace(PolicySettings(), **changes))
    return settings


def test_get_and_put_carry_the_version_as_etag(client: Client, as_key: AsKey) -> None:
    admin = as_key("admin")
    read = client.get("/v1/admin/policy", headers=admin)
    assert read.headers["etag"] == f'"{read.json()["version"]}"'
    put = client.put(
        "/v1/admin/policy",
        headers=admin | {"If-Match": read.headers["etag"]},
        json=body(default_ttl_seconds=3600),
    )
    assert put.status_code == 200, put.text
    assert put.json()["version"] == read.json()["version"] + 1
    assert put.headers["etag"] == f'"{put.json()["version"]}"'


def test_a_stale_if_match_is_412_and_changes_nothing(client: Client, as_key: AsKey) -> None:
    admin = as_key("admin")
    seen = client.get("/v1/admin/policy", headers=admin).headers["etag"]
    first = client.put(
        "/v1/admin/policy", headers=admin | {"If-Match": seen}, json=body(default_ttl_seconds=3600)
    )
    assert first.status_code == 200, first.text
    second = client.put(
        "/v1/admin/policy", headers=admin | {"If-Match": seen}, json=body(default_ttl_seconds=7200)
    )
    assert_problem(second, 412, "If-Match")
    now = client.get("/v1/admin/policy", headers=admin).json()
    assert (now["version"], now["settings"]["default_ttl_seconds"]) == (first.json()["version"], 3600)


@pytest.mark.parametrize("if_match", [None, "*", " * "])
def test_without_a_version_the_last_write_wins(client: Client, as_key: AsKey, if_match: str | None) -> None:
    admin = as_key("admin")
    headers = admin if if_match is None else admin | {"If-Match": if_match}
    for ttl in (3600, 7200):
        assert (
            client.put("/v1/admin/policy", headers=headers, json=body(default_ttl_seconds=ttl)).status_code
            == 200
        )
    assert client.get("/v1/admin/policy", headers=admin).json()["settings"]["default_ttl_seconds"] == 7200


@pytest.mark.parametrize("if_match", ["7", 'W/"1"', '"x"', '"1", "2"', '"99999999999999999999"'])
def test_a_malformed_if_match_is_400_naming_it(client: Client, as_key: AsKey, if_match: str) -> None:
    admin = as_key("admin")
    before = client.get("/v1/admin/policy", headers=admin).json()
    response = client.put("/v1/admin/policy", headers=admin | {"If-Match": if_match}, json=body())
    assert_problem(response, 400, "If-Match")
    assert client.get("/v1/admin/policy", headers=admin).json() == before
