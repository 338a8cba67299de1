"""The request log and the request counter record the status the client got, also for a refusal
raised by the authentication middleware (before any handler ran), and every answer carries its
request id, the one the log line has."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families
from support import assert_problem, logged

Client = TestClient[Litestar]


def _logged(caplog: pytest.LogCaptureFixture, route: str) -> list[tuple[int, str]]:
    """(status, request id) of each request line for `route`."""
    return [
        (int(getattr(record, "status", 0)), str(getattr(record, "request_id", "")))
        for record in caplog.records
        if record.name == "gateway.http" and getattr(record, "route", None) == route
    ]


def _counted(client: Client, method: str, route: str) -> dict[str, float]:
    """`cgw_http_requests_total` for one method and route, by status."""
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    return {
        s.labels["status"]: s.value
        for s in families["cgw_http_requests"].samples
        if s.name == "cgw_http_requests_total" and s.labels["method"] == method and s.labels["route"] == route
    }


def test_a_request_without_credentials_is_logged_and_counted_as_401(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="gateway.http"):
        refused = client.get("/v1/me/preferences")
    assert_problem(refused, 401)
    assert _logged(caplog, "/v1/me/preferences") == [(401, refused.headers["x-request-id"])]
    assert _counted(client, "GET", "/v1/me/preferences") == {"401": 1}


def test_a_bad_token_is_401_and_a_wrong_role_stays_403(
    client: Client, as_user: Callable[[str], Headers], caplog: pytest.LogCaptureFixture
) -> None:
    route = "/v1/pushes/batch"
    with caplog.at_level(logging.INFO, logger="gateway.http"):
        bad = client.post(route, json={"pushes": []}, headers={"Authorization": "Bearer not-a-token"})
        wrong_role = client.post(route, json={"pushes": []}, headers=as_user("log-user"))
    assert_problem(bad, 401)
    assert_problem(wrong_role, 403)
    assert _logged(caplog, route) == [
        (401, bad.headers["x-request-id"]),
        (403, wrong_role.headers["x-request-id"]),
    ]
    assert _counted(client, "POST", route) == {"401": 1, "403": 1}


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/v1/nope", 404), ("DELETE", "/healthz", 405)]
)
def test_a_request_no_route_takes_is_logged_and_counted_with_its_id(
    client: Client, caplog: pytest.LogCaptureFixture, method: str, path: str, status: int
) -> None:
    """Regression: the router's refusals never reached the route-level middleware, so a scan of
    paths or methods left no log line, no count and no request id."""
    with caplog.at_level(logging.INFO, logger="gateway.http"):
        answer = client.request(method, f"{path}?user_id=someone@example.com")
    assert answer.status_code == status
    assert _logged(caplog, "unmatched") == [(status, answer.headers["x-request-id"])]
    assert "someone" not in logged(caplog)  # the query string in no field of the line
    assert _counted(client, method, "unmatched") == {str(status): 1.0}


def test_a_routed_request_is_logged_once(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gateway.http"):
        answer = client.get("/healthz")
    assert _logged(caplog, "/healthz") == [(200, answer.headers["x-request-id"])]
    assert _logged(caplog, "unmatched") == []
    assert answer.headers.get_list("x-request-id") == [answer.headers["x-request-id"]]


def test_the_log_scan_reads_every_field_as_the_process_writes_it(caplog: pytest.LogCaptureFixture) -> None:
    """Control for the privacy scans above: `logged` renders `extra=` fields, which `caplog.text`
    leaves out, and only the test client's own httpx lines are dropped."""
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("gateway.devices").info("device registered", extra={"device_token": "tok-in-extra"})
        logging.getLogger("httpx").info("HTTP Request: GET /v1/x?user_id=client-side")
        logging.getLogger("httpx").warning("gave up on relay-side")
    assert "tok-in-extra" not in caplog.text
    lines = logged(caplog).splitlines()
    assert len(lines) == 2
    assert '"device_token":"tok-in-extra"' in lines[0]
    assert "client-side" not in lines[1]
    assert "relay-side" in lines[1]


def test_a_routes_latency_is_kept_apart_by_method(client: Client, as_user: Callable[[str], Headers]) -> None:
    """One template serves reads and writes (`/v1/me/preferences`: GET and PATCH); their
    latencies mixed in one series would hide a slow write behind fast reads."""
    me = as_user("alice")
    client.get("/v1/me/preferences", headers=me)
    client.get("/v1/me/preferences", headers=me)
    moved = client.patch("/v1/me/preferences", json={"timezone": "Europe/Berlin"}, headers=me)
    assert moved.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    counts = {
        s.labels["method"]: s.value
        for s in families["cgw_http_request_seconds"].samples
        if s.name == "cgw_http_request_seconds_count" and s.labels["route"] == "/v1/me/preferences"
    }
    assert counts == {"GET": 2, "PATCH": 1}
