"""Property-based fuzzing of every operation in the app's own OpenAPI document, in process.

schemathesis loads `/schema/openapi.json` over its ASGI transport, which starts the app's
lifespan itself (and its pytest plugin shuts it down at teardown), so the Runtime exists before
the first request. Each operation is called with the credential of a role its path prefix
admits (the table in test_authz_matrix.py), and must never answer 5xx and must answer with a
documented status and body.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from litestar import Litestar
from litestar.testing import TestClient
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from test_authz_matrix import OPERATIONS, PAGES, SERVICE_SCOPES, roles_for

from gateway.runtime import Runtime

Headers = dict[str, str]
OPENAPI = "/schema/openapi.json"


@pytest.fixture
def api_schema(app: Litestar) -> Any:
    return schemathesis.openapi.from_asgi(OPENAPI, app)


@pytest.fixture
def role_headers(api_schema: Any, app: Litestar) -> dict[str, Headers]:
    """Credentials, made once the lifespan (started by from_asgi) has built the Runtime."""
    runtime: Runtime = app.state.runtime

    def key(*scopes: str) -> Headers:
        _, secret = runtime.api_keys.create_sync("fuzz", scopes)
        return {"Authorization": f"Bearer {secret}"}

    return {
        "none": {},
        "user": {"Authorization": f"Bearer {runtime.user_tokens.mint('fuzz-user', runtime.clock())}"},
        "service": key(*SERVICE_SCOPES),
        "auditor": key("audit:read"),
        "admin": key("admin"),
    }


def headers_for(path: str, role_headers: dict[str, Headers]) -> Headers:
    allowed = roles_for(path)
    assert allowed is not None, f"{path} is not classified in test_authz_matrix.PREFIX"
    role = "none" if "none" in allowed else sorted(allowed)[0]
    return role_headers[role]


def test_the_openapi_document_is_served_and_covers_every_route(client: TestClient[Litestar]) -> None:
    response = client.get(OPENAPI)
    assert response.status_code == 200, response.text
    paths = set(response.json()["paths"])
    assert {"/v1/me/preferences", "/v1/me/consents/{purpose}", "/v1/admin/keys", "/healthz"} <= paths


def _fuzz(operation: Any, mode: GenerationMode, headers: Headers, examples: int) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=[not_a_server_error, response_schema_conformance])

    run()


def _modes(operation: Any) -> list[tuple[GenerationMode, int]]:
    """Both modes, except for an operation with nothing to get wrong (no parameters, no body,
    no credentials: /healthz), for which Hypothesis can generate no negative case at all."""
    raw = operation.definition.raw
    negatable = raw.get("parameters") or raw.get("requestBody") or raw.get("security") != [{}]
    return [(GenerationMode.POSITIVE, 15), *([(GenerationMode.NEGATIVE, 5)] if negatable else [])]


# schemathesis' own pytest integration (`from_fixture(...).parametrize()`) reads `Function._nodeid`,
# which pytest 9 no longer has, so the operations are driven here with Hypothesis directly.
@pytest.mark.slow
def test_fuzz_every_operation(api_schema: Any, role_headers: dict[str, Headers]) -> None:
    failures: list[str] = []
    fuzzed = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        headers = headers_for(operation.path, role_headers)
        for mode, examples in _modes(operation):
            try:
                _fuzz(operation, mode, headers, examples)
            except Exception as exc:  # collect every operation's failure, then report them all
                failures.append(f"{operation.label} [{mode}]: {type(exc).__name__}: {exc}"[:2000])
        fuzzed += 1
    api = [(method, path) for method, path in OPERATIONS if not path.startswith(PAGES)]  # pages are HTML
    assert fuzzed >= len(api), f"only {fuzzed} of {len(api)} API routes are in the OpenAPI document"
    assert not failures, "\n\n".join(failures)
