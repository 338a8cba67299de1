"""Refusals name the field a client sent, in `extra` as `{key, message}`, and echo nothing raw:
the framework's own refusals (missing or bad parameters) and the checks that span two fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

from gateway.runtime import Runtime

Client = TestClient[Litestar]
KeyHeaders = Callable[..., Headers]


def _named(body: dict[str, Any], field: str) -> None:
    """Named in `extra` itself, each item exactly `{key, message}` (Litestar's carried `source`)."""
    assert [set(item) for item in body["extra"]] == [{"key", "message"}] * len(body["extra"])
    assert body["extra"][0]["key"] == field, body


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/audit/ledger/proof/inclusion", "size"),
        ("/v1/audit/ledger/proof/consistency?to=5", "from"),
    ],
)
def test_a_missing_query_parameter_is_named_in_extra(
    client: Client, as_key: KeyHeaders, path: str, field: str
) -> None:
    """It was a 400 with no `extra`, the name only inside the text."""
    body = assert_problem(client.get(path, headers=as_key("audit:read")), 400)
    _named(body, field)


def test_a_bad_query_value_is_named_and_the_query_not_echoed(client: Client, as_key: KeyHeaders) -> None:
    """The detail was "Validation failed for GET <path>?<query>": a user id given beside a bad
    parameter came back in it."""
    answer = client.get(
        "/v1/audit/consent-events?user_id=marker-user-77&limit=0", headers=as_key("audit:read")
    )
    body = assert_problem(answer, 400)
    _named(body, "limit")
    assert "marker-user-77" not in answer.text


def test_a_missing_body_is_named_body(client: Client, as_key: KeyHeaders) -> None:
    body = assert_problem(client.post("/v1/pushes", headers=as_key("pushes:write")), 400)
    _named(body, "body")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"default_ttl_seconds": 7200, "max_ttl_seconds": 3600}, "default_ttl_seconds"),
        ({"min_quiet_minutes": 700}, "min_quiet_minutes"),
    ],
)
def test_a_policy_check_across_two_fields_names_one_of_them(
    client: Client, as_key: KeyHeaders, change: dict[str, int], field: str
) -> None:
    """Both were blamed on `body`."""
    admin = as_key("admin")
    read = client.get("/v1/admin/policy", headers=admin)
    current = read.json()["settings"]
    answer = client.put(
        "/v1/admin/policy", headers=admin | {"If-Match": read.headers["etag"]}, json=current | change
    )
    _named(assert_problem(answer, 400), field)
    assert client.get("/v1/admin/policy", headers=admin).json()["settings"] == current


@pytest.mark.parametrize("name", ["Winter\nsale", "Winter\x00sale", "Winter \u202eelas", "Winter\u200bsale"])
def test_a_campaign_name_is_one_printable_line(
    client: Client, runtime: Runtime, as_key: KeyHeaders, name: str
) -> None:
    """Shown to everyone who reads the campaign, as key names are: NUL, a line break and a bidi
    override were kept and shown back (201)."""
    answer = client.post(
        "/v1/campaigns", json={"name": name, "topic": "promotions"}, headers=as_key("campaigns:write")
    )
    _named(assert_problem(answer, 400), "name")
    assert runtime.store.data.reader().execute("SELECT count(*) FROM campaigns").fetchone() == (0,)
