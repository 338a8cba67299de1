"""`HEAD` where `GET` is served, as GET answers it less the body (gateway.head), told apart from
GET in the request log and the metrics, and in the audit access log a read of its route.
Every route and role is in test_authz_matrix.py; a real server's bytes in
tests/e2e/test_serve_head.py."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families
from support import logged

Client = TestClient[Litestar]


def _requests(client: Client) -> dict[tuple[str, str, str], float]:
    text = client.get("/metrics").text
    family = next(f for f in text_string_to_metric_families(text) if f.name == "cgw_http_requests")
    return {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for s in family.samples
        if s.name.endswith("_total")
    }


def test_a_user_s_head_is_answered_and_recorded_as_head(
    client: Client, as_user: Callable[[str], Headers], caplog: pytest.LogCaptureFixture
) -> None:
    user = as_user("head-user-4471")
    with caplog.at_level(logging.INFO, logger="gateway.http"):
        got = client.get("/v1/me/preferences", headers=user)
        head = client.head("/v1/me/preferences", headers=user)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == got.headers["content-length"] != "0"
    assert head.headers["content-type"] == "application/json"

    counts = _requests(client)
    assert counts[("HEAD", "/v1/me/preferences", "200")] == 1
    assert counts[("GET", "/v1/me/preferences", "200")] == 1
    lines = [json.loads(line) for line in logged(caplog).splitlines()]
    methods = [line["method"] for line in lines if line.get("route") == "/v1/me/preferences"]
    assert methods == ["GET", "HEAD"]


def test_a_head_with_no_credential_is_refused_as_its_get(client: Client) -> None:
    head = client.head("/v1/me/export")
    assert (head.status_code, head.content) == (401, b"")
    assert head.headers["www-authenticate"] == client.get("/v1/me/export").headers["www-authenticate"]


def test_an_auditor_s_head_is_in_the_access_log(client: Client, as_key: Callable[..., Headers]) -> None:
    """Its answer's headers tell how much the read found, so it is a read like any other."""
    auditor = as_key("audit:read")
    assert client.head("/v1/audit/consent-events", headers=auditor).status_code == 200
    assert client.head("/v1/audit/nothing/here", headers=auditor).status_code == 404
    entries = client.get("/v1/audit/access-log", headers=auditor).json()["entries"]
    assert [e["route"] for e in entries][:2] == [
        "/v1/audit/consent-events",
        "HEAD /v1/audit/* (no such route)",
    ]
