"""Every answer says how it may be cached, sniffed and framed (`gateway/headers.py`): API answers,
which carry personal data, are never stored; the pages may run their own scripts only."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from litestar import Litestar
from litestar.testing import TestClient

Client = TestClient[Litestar]


@pytest.mark.parametrize(
    ("path", "credential"),
    [("/v1/me/export", "user"), ("/v1/me/preferences", None), ("/healthz", None), ("/v1/nowhere", None)],
)
def test_api_answers_are_never_cached_sniffed_or_framed(
    client: Client, as_user: Callable[[str], dict[str, str]], path: str, credential: str | None
) -> None:
    """Including the 401 authentication sends from outside every middleware, and a 404."""
    response = client.get(path, headers=as_user("hana") if credential else {})
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


@pytest.mark.parametrize("path", ["/preferences", "/audit/", "/pages/preferences.js", "/pages/pages.css"])
def test_pages_run_only_their_own_scripts(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
