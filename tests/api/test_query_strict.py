"""Under /v1/, a query parameter the route does not take, or one given twice, is refused 400 naming
it, before anything is read or written: the body's strictness, for queries. Regression: an
auditor's `GET /v1/audit/decisions?user_id=…` (a filter that route lacks) answered every
subject's decisions, and the access log recorded it as a lookup of that user."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

from gateway.app import read_strictly
from gateway.runtime import Runtime

Client = TestClient[Litestar]


@pytest.fixture
def auditor(as_key: Callable[..., Headers]) -> Headers:
    return as_key("audit:read")


def _push(key: str, user: str) -> dict[str, str]:
    return {"idempotency_key": key, "user_id": user, "topic": "transactional", "title": "t", "body": "b"}


def _decisions(runtime: Runtime) -> int:
    return int(runtime.store.data.reader().execute("SELECT count(*) FROM pushes").fetchone()[0])


def test_a_filter_the_route_lacks_is_refused_not_ignored(
    client: Client, auditor: Headers, as_key: Callable[..., Headers], runtime: Runtime
) -> None:
    service = as_key("pushes:write")
    for i, user in enumerate(("query-a", "query-b")):
        assert client.post("/v1/pushes", json=_push(f"q{i}", user), headers=service).status_code == 200
    assert len(client.get("/v1/audit/decisions", headers=auditor).json()["decisions"]) == 2

    refused = client.get("/v1/audit/decisions", params={"user_id": "query-a"}, headers=auditor)

    assert_problem(refused, 400, "user_id")
    assert "decisions" not in refused.json()
    entries = client.get("/v1/audit/access-log", headers=auditor).json()["entries"]  # oldest first
    assert [(e["route"], e["result_count"]) for e in entries[-2:]] == [
        ("/v1/audit/decisions", 2),
        ("/v1/audit/decisions", 0),  # the refused call: no results, however the log names it
    ]


def test_a_parameter_given_twice_is_refused(client: Client, auditor: Headers) -> None:
    assert_problem(client.get("/v1/audit/decisions?limit=1&limit=3", headers=auditor), 400, "limit")
    twice = client.get("/v1/audit/consent-events?purpose=marketing&purpose=location", headers=auditor)
    assert_problem(twice, 400, "purpose")


def test_the_parameters_a_route_takes_still_answer(client: Client, auditor: Headers) -> None:
    """By the names clients use: `from` and `to` are the handler's `start` and `end`."""
    window = {
        "from": "2026-01-01T00:00:00Z",
        "to": "2030-01-01T00:00:00Z",
        "limit": "5",
        "purpose": "marketing",
    }
    assert client.get("/v1/audit/consent-events", params=window, headers=auditor).status_code == 200
    proof = client.get("/v1/audit/ledger/proof/consistency?from=0&to=0", headers=auditor)
    assert [e["key"] for e in assert_problem(proof, 400)["extra"]] == ["from"]  # the proof's own
    assert "query parameter" not in proof.text, proof.text
    assert_problem(
        client.get("/v1/audit/consent-events", params={"start": "x"}, headers=auditor), 400, "start"
    )


def test_a_write_with_a_stray_parameter_writes_nothing(
    client: Client, as_key: Callable[..., Headers], runtime: Runtime
) -> None:
    refused = client.post(
        "/v1/pushes?dry_run=true", json=_push("stray", "query-c"), headers=as_key("pushes:write")
    )
    assert_problem(refused, 400, "dry_run")
    assert _decisions(runtime) == 0


@pytest.mark.parametrize("name", ["x" * 65, "alice@example.com", "", "13800138000 "])
def test_a_name_not_shaped_as_one_is_not_repeated(client: Client, auditor: Headers, name: str) -> None:
    """It is the client's text: a user id or an address pasted where a name goes."""
    refused = client.get("/v1/audit/decisions", params={name: "1"}, headers=auditor)
    assert_problem(refused, 400, "query")
    if name:
        assert name not in refused.text


def test_every_api_route_has_the_check(app: Litestar) -> None:
    """Litestar runs only the nearest `before_request`: one set on a controller or a handler
    would drop the check for its routes without a word."""
    handlers = [
        handler
        for route in app.routes
        if route.path.startswith("/v1/")
        for handler in getattr(route, "route_handlers", [])
    ]
    assert handlers
    assert {h.resolve_before_request() for h in handlers} == {read_strictly}


@pytest.mark.parametrize("path", ["/healthz?probe=1", "/readyz?from=monitor", "/preferences?lang=zh-CN"])
def test_pages_and_operations_routes_stay_lenient(client: Client, path: str) -> None:
    """A page reads `?lang=` in the browser; monitors add their own parameters."""
    assert client.get(path).status_code == 200


def test_options_names_the_methods_whatever_the_query(client: Client) -> None:
    """A CORS preflight carries the URL's query; Litestar answers OPTIONS itself, reading none."""
    answer = client.options("/v1/audit/decisions?subject_ref=x&subject_ref=y")
    assert answer.status_code == 204
    assert "GET" in answer.headers["allow"]
