"""`GET`/`PUT /v1/admin/policy` as a versioned resource: the `ETag` names the version, and a
`PUT` with `If-Match` is refused (412, nothing written) if another change came in between, so
two admins editing at once cannot silently undo each other."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from conftest import FakeClock
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

from gateway.app import create_app
from gateway.settings import Settings
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


def test_the_same_settings_put_again_make_no_new_version(client: Client, as_key: AsKey) -> None:
    """A tool applying its desired state on a timer made a version, and an admin-log entry, each
    time. The defaults put first are still stored (version 0 is whatever the code's defaults
    are, so a PUT of them pins them); after that, the same settings again change nothing."""
    admin, auditor = as_key("admin"), as_key("audit:read")
    versions = [
        client.put("/v1/admin/policy", headers=admin, json=body()).json()["version"] for _ in range(2)
    ]
    versions += [
        client.put("/v1/admin/policy", headers=admin, json=body(default_ttl_seconds=3600)).json()["version"]
    ]
    again = client.put(
        "/v1/admin/policy",
        headers=admin | {"If-Match": f'"{versions[-1]}"'},
        json=body(default_ttl_seconds=3600),
    )
    assert (again.status_code, again.headers["etag"]) == (200, f'"{versions[-1]}"')
    assert versions == [1, 1, 2]
    logged = client.get("/v1/audit/admin-log", headers=auditor).json()["entries"]
    assert [entry["action"] for entry in logged].count("policy.changed") == 2


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


@pytest.mark.parametrize("if_match", ["7", "W/7", '"1" "2"', '"1', "", '"1";'])
def test_a_malformed_if_match_is_400_naming_it(client: Client, as_key: AsKey, if_match: str) -> None:
    admin = as_key("admin")
    before = client.get("/v1/admin/policy", headers=admin).json()
    response = client.put("/v1/admin/policy", headers=admin | {"If-Match": if_match}, json=body())
    assert_problem(response, 400, "If-Match")
    assert client.get("/v1/admin/policy", headers=admin).json() == before


@pytest.mark.parametrize(
    ("if_match", "status"),
    [
        ('W/"{v}"', 412),  # a weak tag never matches under If-Match's strong comparison (RFC 9110)
        ('"0{v}"', 412),  # tags are opaque strings, not numbers
        ('"x"', 412),
        ('"99999999999999999999"', 412),
        ('"x", "{v}"', 200),  # a list matches if any of its tags does
        ('W/"x" , "{v}" ,', 200),
        (', "{v}"', 200),  # empty list elements are ignored (RFC 9110, 5.6.1)
        (",", 412),  # a list of none matches nothing
    ],
)
def test_if_match_compares_entity_tags_as_rfc_9110_says(
    client: Client, as_key: AsKey, if_match: str, status: int
) -> None:
    admin = as_key("admin")
    version = client.get("/v1/admin/policy", headers=admin).json()["version"]
    header = {"If-Match": if_match.replace("{v}", str(version))}
    response = client.put("/v1/admin/policy", headers=admin | header, json=body(default_ttl_seconds=3600))
    assert response.status_code == status, response.text
    if status == 412:
        assert_problem(response, 412, "If-Match")


def test_a_change_made_by_another_process_is_what_get_and_if_match_see(
    client: Client, as_key: AsKey, settings: Settings, clock: FakeClock
) -> None:
    """Regression: GET answered this process's cached version, so after another process changed
    the policy every If-Match built from it was refused, again and again."""
    admin = as_key("admin")
    with TestClient(create_app(settings, clock)) as other:
        moved = other.put("/v1/admin/policy", headers=admin, json=body(default_ttl_seconds=7200))
        assert moved.status_code == 200, moved.text
    read = client.get("/v1/admin/policy", headers=admin)
    assert read.headers["etag"] == moved.headers["etag"]
    assert read.json()["settings"]["default_ttl_seconds"] == 7200
    again = client.put(
        "/v1/admin/policy",
        headers=admin | {"If-Match": read.headers["etag"]},
        json=body(default_ttl_seconds=60),
    )
    assert again.status_code == 200, again.text


def test_several_if_match_lines_are_one_list(client: Client, as_key: AsKey) -> None:
    admin = as_key("admin")
    version = client.get("/v1/admin/policy", headers=admin).json()["version"]
    lines = [*admin.items(), ("If-Match", '"999"'), ("If-Match", f'"{version}"')]
    response = client.put("/v1/admin/policy", headers=lines, json=body(default_ttl_seconds=3600))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "key", ["from", "message_type", "gcm_sender", "google_ad", "aps", "cgw_idempotency_key"]
)
def test_a_data_key_a_push_service_or_the_gateway_keeps_is_refused(
    client: Client, as_key: AsKey, key: str
) -> None:
    """FCM refuses a push carrying `from` or `google…` (400 INVALID_ARGUMENT), so such a push was
    accepted, then failed on every Android device; APNs's `aps` and our `cgw_idempotency_key` were
    overwritten on the way, the app never seeing the value."""
    admin = as_key("admin")
    before = client.get("/v1/admin/policy", headers=admin).json()["version"]
    keys = {"transactional": ["deeplink", key]}
    answer = client.put("/v1/admin/policy", json=body(allowed_data_keys=keys), headers=admin)
    assert_problem(answer, 400, "allowed_data_keys.transactional[1]")
    assert client.get("/v1/admin/policy", headers=admin).json()["version"] == before
    ordinary = {"transactional": ["deeplink", "from_city", "apps", "message"]}  # near, not kept
    assert (
        client.put("/v1/admin/policy", json=body(allowed_data_keys=ordinary), headers=admin).status_code
        == 200
    )


def test_a_data_key_listed_twice_is_refused(client: Client, as_key: AsKey) -> None:
    """It made a new policy version that allowed nothing the last did not."""
    admin = as_key("admin")
    before = client.get("/v1/admin/policy", headers=admin).json()["version"]
    keys = {"promotions": ["deeplink", "coupon_code", "deeplink"]}
    answer = client.put("/v1/admin/policy", json=body(allowed_data_keys=keys), headers=admin)
    assert_problem(answer, 400, "allowed_data_keys.promotions[2]")
    assert client.get("/v1/admin/policy", headers=admin).json()["version"] == before
