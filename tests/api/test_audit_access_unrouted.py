"""Audit calls that Litestar's router refuses (405 for a method the route does not take, 404 for
no such route) are in the access log too, as SECURITY.md says every Audit API call made with an
API key is: they never reached the controller, whose middleware logs the others, so probing
that way left no trace."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient

from gateway.runtime import Runtime

Client = TestClient[Litestar]
REF = "sub_" + "a" * 52


@pytest.fixture
def auditor(as_key: Callable[..., Headers]) -> Headers:
    return as_key("audit:read")


def _key_id(headers: Headers) -> str:
    return headers["Authorization"].removeprefix("Bearer cgw_").split("_", 1)[0]


def _log(client: Client, auditor: Headers) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = client.get("/v1/audit/access-log", headers=auditor).json()["entries"]
    return [e for e in entries if e["route"] != "/v1/audit/access-log"]


def test_refused_methods_and_unknown_paths_are_logged(
    client: Client, auditor: Headers, as_key: Callable[..., Headers]
) -> None:
    admin, service = as_key("admin"), as_key("pushes:write")
    calls: list[tuple[str, str, Headers, int, str]] = [
        ("POST", "/v1/audit/consent-events", auditor, 405, "POST /v1/audit/consent-events"),
        ("DELETE", "/v1/audit/access-log", auditor, 405, "DELETE /v1/audit/access-log"),
        ("PUT", "/v1/audit/ledger/verify", admin, 405, "PUT /v1/audit/ledger/verify"),
        ("PATCH", f"/v1/audit/subjects/{REF}", service, 405, "PATCH /v1/audit/subjects/{subject_ref}"),
        ("GET", "/v1/audit/nothing/here", auditor, 404, "GET /v1/audit/* (no such route)"),
        ("DELETE", "/v1/audit", admin, 404, "DELETE /v1/audit/* (no such route)"),
        ("GET", "/v1//audit//ledger/verify/", service, 403, "/v1/audit/ledger/verify"),  # routed
    ]
    for method, path, headers, status, _ in calls:
        assert client.request(method, path, headers=headers).status_code == status, (method, path)
    assert [(e["key_id"], e["route"], e["result_count"]) for e in _log(client, auditor)] == [
        (_key_id(headers), route, 0) for _, _, headers, _, route in calls
    ]


def test_what_is_logged_of_them_is_what_any_entry_keeps(client: Client, auditor: Headers) -> None:
    """The raw path is never logged, and the query string only as for any other entry: named
    parameters the routes take, each only in its shape."""
    path = "/v1/audit/users/alice@example.com"
    query = {"subject_ref": REF, "email": "alice@example.com", "purpose": "alice@example.com"}
    assert client.get(path, headers=auditor, params=query).status_code == 404
    assert (
        client.put(f"/v1/audit/subjects/{REF}", headers=auditor, params={"user_id": "alice"}).status_code
        == 405
    )
    log = _log(client, auditor)
    assert [(e["route"], e["filters"]) for e in log] == [
        (
            "GET /v1/audit/* (no such route)",
            {"subject_ref": REF, "purpose": "(not logged: not a valid value)"},
        ),
        (
            "PUT /v1/audit/subjects/{subject_ref}",
            {"user_id_subject_ref": log[1]["filters"]["user_id_subject_ref"]},
        ),
    ]
    assert "alice" not in json.dumps(log)


def test_calls_that_name_no_key_are_not_logged(
    client: Client, runtime: Runtime, auditor: Headers, as_user: Callable[[str], Headers]
) -> None:
    """As with a 401 or a user token on an audit route: nobody the log can name."""
    revoked = {"Authorization": "Bearer cgw_0123456789abcdef_notasecret"}
    for headers in ({}, as_user("bob"), revoked):
        assert client.post("/v1/audit/consent-events", headers=headers).status_code == 405
        assert client.get("/v1/audit/nothing", headers=headers).status_code == 404
    assert client.get("/v1/nothing", headers=auditor).status_code == 404  # not an audit path
    assert client.get("/v1/auditing", headers=auditor).status_code == 404
    assert _log(client, auditor) == []
