"""Every route × every role, generated from the app's own route table.

Which roles a route admits is decided by the small PREFIX table below, keyed by path prefix, so a
route added later joins the matrix by itself — and a route under a prefix nobody classified fails
`test_every_route_is_classified` until whoever added it says who may call it.

A role the route does not admit gets 401 (no credential) or 403; an admitted role gets anything
else (the minimal body may well be a 400 or 404 — that is fine, it got past the guards).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings

Headers = dict[str, str]
ROLES = ("none", "user", "service", "auditor", "admin")
EVERYONE = frozenset(ROLES)
SERVICE_SCOPES = ("pushes:write", "campaigns:write", "campaigns:read", "complaints:write")

# Path prefix → roles admitted. Longest matching prefix wins; a prefix matches whole segments.
PREFIX: dict[str, frozenset[str]] = {
    "/v1/me": frozenset({"user"}),
    "/v1/admin": frozenset({"admin"}),
    "/v1/audit": frozenset({"auditor"}),
    "/v1/pushes": frozenset({"service"}),
    "/v1/campaigns": frozenset({"service"}),
    # Operators (`admin`) may pause, and only they may lift the complaint-rate rule's pause.
    "/v1/campaigns/{campaign_id:str}/pause": frozenset({"service", "admin"}),
    "/v1/campaigns/{campaign_id:str}/resume": frozenset({"service", "admin"}),
    "/v1/complaints": frozenset({"service"}),
    "/healthz": EVERYONE,
    "/readyz": EVERYONE,
    "/metrics": EVERYONE,
    "/.well-known": EVERYONE,
    # The pages are shells; they call the API with the visitor's own credential.
    **dict.fromkeys(PAGES := ("/preferences", "/audit", "/pages"), EVERYONE),
}
SKIPPED = ("/schema",)  # Litestar's OpenAPI routes, public by design

# Plausible values for path parameters, by name; anything else gets a value of its type.
PARAMS: dict[str, str] = {
    "purpose": "marketing",
    "device_id": "dev_" + "0" * 24,
    "key_id": "0" * 16,
    "push_id": "psh_" + "0" * 24,
    "campaign_id": "cmp_" + "0" * 24,
    "complaint_id": "cpl_" + "0" * 24,
    "subject_ref": "sub_" + "a" * 52,
    "topic": "promotions",
}
BY_TYPE = {"str": "x1", "int": "1", "uuid": "00000000-0000-4000-8000-000000000000", "path": "x1"}
_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")


def roles_for(path: str) -> frozenset[str] | None:
    """The roles admitted on `path`, or None when no prefix in the table covers it."""
    matches = [p for p in PREFIX if path == p or path.startswith(p.rstrip("/") + "/")]
    return PREFIX[max(matches, key=len)] if matches else None


def fill(path: str) -> str:
    return _PARAM.sub(lambda m: PARAMS.get(m.group(1), BY_TYPE.get(m.group(2) or "str", "x1")), path)


def operations(app: Litestar) -> list[tuple[str, str]]:
    """(method, path template) for every handler the app serves, OPTIONS/HEAD and /schema aside."""
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path.startswith(SKIPPED):
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                if method not in {"OPTIONS", "HEAD"}:
                    found.add((method, route.path))
    return sorted(found, key=lambda op: (op[1], op[0]))


def _read_route_table() -> tuple[list[tuple[str, str]], str | None]:
    """create_app() has no side effects (no disk, no keys), so the route table is read at collection.
    If the app cannot even be built, that is reported by one failing test, not a collection error
    that would stop the whole session."""
    try:
        app = create_app(Settings(data_dir=Path("unused-by-the-route-table"), worker_enabled=False))
    except Exception as exc:  # includes warnings turned into errors by the test configuration
        return [], f"{type(exc).__name__}: {exc}"
    return operations(app), None


OPERATIONS, APP_ERROR = _read_route_table()


@pytest.fixture(scope="module")
def matrix_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient[Litestar]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("matrix") / "data", worker_enabled=False)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def headers_for(matrix_client: TestClient[Litestar]) -> Callable[[str], Headers]:
    runtime: Runtime = matrix_client.app.state.runtime

    def key(*scopes: str) -> Headers:
        _, secret = runtime.api_keys.create_sync("matrix " + " ".join(scopes), scopes)
        return {"Authorization": f"Bearer {secret}"}

    table: dict[str, Headers] = {
        "none": {},
        "user": {"Authorization": f"Bearer {runtime.user_tokens.mint('matrix-user', runtime.clock())}"},
        "service": key(*SERVICE_SCOPES),
        "auditor": key("audit:read"),
        "admin": key("admin"),
    }
    return lambda role: table[role]


def test_the_matrix_sees_the_known_routes() -> None:
    """Guards against a route table read that silently finds nothing."""
    assert APP_ERROR is None, f"create_app() failed, so the matrix is empty: {APP_ERROR}"
    assert len(OPERATIONS) >= 16
    assert ("PUT", "/v1/me/consents/{purpose:str}") in OPERATIONS
    assert ("POST", "/v1/admin/keys/rotate-encryption") in OPERATIONS
    assert ("GET", "/healthz") in OPERATIONS


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_route_is_classified(method: str, path: str) -> None:
    assert roles_for(path) is not None, (
        f"{method} {path} is under no prefix of the authorization matrix: add its prefix to PREFIX "
        "in tests/api/test_authz_matrix.py with the roles that may call it"
    )


def test_prefix_matching_is_by_whole_segments() -> None:
    assert roles_for("/v1/me") == frozenset({"user"})
    assert roles_for("/v1/me/devices/{device_id:str}") == frozenset({"user"})
    assert roles_for("/v1/metrics") is None
    assert roles_for("/v1/administrator") is None
    assert roles_for("/healthz") == EVERYONE


def _call(client: TestClient[Litestar], method: str, path: str, headers: Headers) -> Any:
    body: dict[str, object] | None = {} if method in {"POST", "PUT", "PATCH"} else None
    return client.request(method, fill(path), headers=headers, json=body)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_authorization_matrix(
    matrix_client: TestClient[Litestar], headers_for: Callable[[str], Headers], method: str, path: str
) -> None:
    allowed = roles_for(path)
    assert allowed is not None, f"{path} is not classified (see test_every_route_is_classified)"
    problems = []
    # the admitted roles last, so a destructive call (DELETE /v1/me, key rotation) happens once
    for role in sorted(ROLES, key=lambda r: r in allowed):
        response = _call(matrix_client, method, path, headers_for(role))
        status = response.status_code
        if role in allowed:
            if status in {401, 403}:
                problems.append(f"{role}: admitted but got {status} {response.text[:120]}")
        else:
            expected = 401 if role == "none" else 403
            if status != expected:
                problems.append(f"{role}: expected {expected}, got {status} {response.text[:120]}")
            elif response.json().get("status_code") != expected:
                problems.append(f"{role}: refusal not in the error shape: {response.text[:120]}")
            elif [item["key"] for item in response.json().get("extra", [])] != ["Authorization"]:
                problems.append(f"{role}: refusal does not name Authorization: {response.text[:120]}")
        if status >= 500:
            problems.append(f"{role}: server error {status} {response.text[:120]}")
    assert not problems, f"{method} {fill(path)}:\n" + "\n".join(problems)


PATHS = sorted({path for _, path in OPERATIONS})


@pytest.mark.parametrize("path", PATHS)
def test_options_answers_on_every_route_with_the_routes_methods_and_nothing_else(
    matrix_client: TestClient[Litestar], headers_for: Callable[[str], Headers], path: str
) -> None:
    """Litestar answers OPTIONS itself and skips authentication for it; the guards of a
    controller ran on that answer too and refused it, even with the right credential."""
    methods = {m for m, p in OPERATIONS if p == path}
    for role in ROLES:
        response = matrix_client.options(fill(path), headers=headers_for(role))
        assert response.status_code == 204, f"{role}: {response.status_code} {response.text[:120]}"
        # All of them: Litestar 2 lists the methods of the path's first handler alone
        # (litestar-org/litestar#4169, fixed in its version 3), which gateway.options mends.
        head = {"HEAD"} if "GET" in methods or path.startswith("/pages/") else set()  # gateway.head
        assert set(response.headers["allow"].split(", ")) == methods | {"OPTIONS"} | head
        assert response.content == b""


GETS = [path for method, path in OPERATIONS if method == "GET"]


@pytest.mark.parametrize("path", GETS)
def test_head_answers_as_get_does_without_the_body(
    matrix_client: TestClient[Litestar], headers_for: Callable[[str], Headers], path: str
) -> None:
    """Load balancers and uptime checks ask `HEAD`; every GET route answered it 405. Each role
    gets the status and headers its GET gets (the same refusals), and no body."""
    varying = {"date", "x-request-id", "content-length"}  # the metrics and the access log grow
    for role in ROLES:
        got = matrix_client.get(fill(path), headers=headers_for(role))
        head = matrix_client.head(fill(path), headers=headers_for(role))
        assert head.status_code == got.status_code, f"{role}: {head.status_code} against {got.status_code}"
        assert head.content == b"", role
        assert {k: v for k, v in head.headers.items() if k not in varying} == {
            k: v for k, v in got.headers.items() if k not in varying
        }, role
        assert ("content-length" in head.headers) == ("content-length" in got.headers), role
