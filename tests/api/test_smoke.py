from __future__ import annotations

from litestar import Litestar
from litestar.testing import TestClient


def test_health_needs_no_credentials(client: TestClient[Litestar]) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"keys": "ok", "database": "ok"}
