"""`OPTIONS` names every method its path takes.

Litestar kept the OPTIONS handler of the first route registered at a path when later handlers
joined it: `OPTIONS /v1/me/preferences` said `Allow: GET, OPTIONS` with PATCH served there (found
by a fuzzing review; the complaints, the policy and the API keys said as little).
"""

from __future__ import annotations

from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import TestClient
from test_authz_matrix import fill


def test_every_path_s_options_allow_every_method_it_serves(
    client: TestClient[Litestar], app: Litestar
) -> None:
    checked = 0
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path.startswith("/schema"):
            continue
        answer = client.options(fill(route.path))
        assert answer.status_code == 204, route.path
        head = {"HEAD"} if "GET" in route.methods else set()  # gateway.head serves it
        assert answer.headers.get_list("allow") == [", ".join(sorted(route.methods | head))], route.path
        checked += 1
    assert checked > 30
    assert client.options("/v1/me/preferences").headers["allow"] == "GET, HEAD, OPTIONS, PATCH"


def test_a_405_names_head_where_get_is_served(client: TestClient[Litestar]) -> None:
    assert client.post("/healthz").headers.get_list("allow") == ["GET, HEAD, OPTIONS"]
    refused = client.head("/v1/pushes")  # served for POST alone, so not for HEAD either
    assert refused.status_code == 405
    assert refused.headers.get_list("allow") == ["OPTIONS, POST"]
    assert refused.content == b""
