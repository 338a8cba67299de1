from __future__ import annotations

from litestar import Litestar
from litestar.testing import TestClient


def test_health_needs_no_credentials(client: TestClient[Litestar]) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"keys": "ok", "database": "ok"}


def test_the_openapi_document_says_which_routes_need_no_credentials(client: TestClient[Litestar]) -> None:
    """The public routes override the document's global requirement (any credential) with an empty
    one; every other operation names the credential it needs (gateway.routes.access)."""
    document = client.get("/schema/openapi.json").json()
    assert document["security"] == [{"userToken": []}, {"apiKey": []}]
    public = {"/healthz", "/readyz", "/metrics", "/.well-known/jwks.json"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                security = operation.get("security")
                if path in public:
                    assert security == [{}], f"{method.upper()} {path}"
                else:
                    assert security, f"{method.upper()} {path}"
                    assert all(set(r) <= {"userToken", "apiKey"} and r for r in security), path
