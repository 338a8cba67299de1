"""Every answer says how it may be cached, sniffed and framed (`gateway/headers.py`): API answers,
which carry personal data, are never stored; the pages may run their own scripts only.

"Every API answer" (SECURITY.md, "Caching") includes those built outside a route handler's normal
return: writes, refusals from the body decoder, the authentication middleware, the guards, the
router (404, 405) and the body-size limit (413), a defect's 500 (`handle_unexpected`), a storage
failure's 503 (`handle_storage_failure`), and `/metrics`."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from gateway.routes.pages import PAGES_DIR
from gateway.runtime import Runtime

Client = TestClient[Litestar]
Headers = dict[str, str]
AsUser = Callable[[str], Headers]
AsKey = Callable[..., Headers]

API_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}
CONSENT = {"granted": True, "notice_version": "2026-11"}
UNKNOWN_DEVICE = "/v1/me/devices/dev_0123456789abcdef01234567"


def assert_api_headers(response: httpx.Response) -> None:
    got = {name: response.headers.get(name) for name in API_HEADERS}
    assert got == API_HEADERS, f"{response.request.method} {response.request.url.path} {response.status_code}"


@pytest.mark.parametrize(
    ("path", "credential"),
    [("/v1/me/export", "user"), ("/v1/me/preferences", None), ("/healthz", None), ("/v1/nowhere", None)],
)
def test_api_answers_are_never_cached_sniffed_or_framed(
    client: Client, as_user: AsUser, path: str, credential: str | None
) -> None:
    """Including the 401 authentication sends from outside every middleware, and a 404."""
    response = client.get(path, headers=as_user("hana") if credential else {})
    assert_api_headers(response)


# (label, status, request): each request is made on a fresh app, as the user "hana" or with a key.
Call = Callable[[Client, AsUser, AsKey], httpx.Response]
CASES: list[tuple[str, int, Call]] = [
    ("POST created", 201, lambda c, u, k: c.post(
        "/v1/me/devices", json={"platform": "webhook", "token": "relay-device-0001"}, headers=u("hana"))),
    ("PUT", 200, lambda c, u, k: c.put("/v1/me/consents/marketing", json=CONSENT, headers=u("hana"))),
    ("PATCH", 200, lambda c, u, k: c.patch("/v1/me/preferences", json={"locale": "en"}, headers=u("hana"))),
    ("DELETE, no content", 204, lambda c, u, k: c.delete("/v1/me", headers=u("hana"))),
    ("malformed body", 400, lambda c, u, k: c.post(
        "/v1/me/devices", content=b'{"platform": "webhook", "tok', headers=u("hana"))),
    ("body of a wrong type", 400, lambda c, u, k: c.put(
        "/v1/me/consents/marketing", json={**CONSENT, "granted": "true"}, headers=u("hana"))),
    ("bad path parameter", 400, lambda c, u, k: c.put(
        "/v1/me/consents/nothing-such", json=CONSENT, headers=u("hana"))),
    ("bad query parameter", 400, lambda c, u, k: c.get(
        "/v1/audit/decisions?limit=many", headers=k("audit:read"))),
    ("POST without credentials", 401, lambda c, u, k: c.post("/v1/pushes", json={})),
    ("bad API key", 401, lambda c, u, k: c.get(
        "/v1/admin/policy", headers={"Authorization": "Bearer cgw_nope_nope"})),
    ("user token on a key route", 403, lambda c, u, k: c.post("/v1/pushes", json={}, headers=u("hana"))),
    ("key without the scope", 403, lambda c, u, k: c.get("/v1/admin/policy", headers=k("pushes:write"))),
    ("unrouted POST", 404, lambda c, u, k: c.post("/v1/nowhere", json={})),
    ("routed, no such thing", 404, lambda c, u, k: c.delete(UNKNOWN_DEVICE, headers=u("hana"))),
    ("method not allowed", 405, lambda c, u, k: c.delete("/healthz")),
    ("method no route takes", 405, lambda c, u, k: c.request("BREW", "/v1/me/preferences")),
    ("conflict", 409, lambda c, u, k: c.put(
        "/v1/me/location", json={"lat": 31.2, "lon": 121.5}, headers=u("hana"))),
    ("precondition failed", 412, lambda c, u, k: c.put(
        "/v1/admin/policy", json={}, headers={**k("admin"), "If-Match": '"999"'})),
    ("body over CGW_MAX_BODY_BYTES", 413, lambda c, u, k: c.post(
        "/v1/me/complaints", json={"reason": "other", "comment": "x" * 70_000}, headers=u("hana"))),
    ("metrics", 200, lambda c, u, k: c.get("/metrics")),
    ("readiness", 200, lambda c, u, k: c.get("/readyz")),
    ("JWKS", 200, lambda c, u, k: c.get("/.well-known/jwks.json")),
]  # fmt: skip


@pytest.mark.parametrize(("label", "status", "call"), CASES, ids=[label for label, _, _ in CASES])
def test_every_kind_of_api_answer_carries_the_headers(
    client: Client, as_user: AsUser, as_key: AsKey, label: str, status: int, call: Call
) -> None:
    response = call(client, as_user, as_key)
    assert response.status_code == status, response.text
    assert_api_headers(response)


def test_a_defects_500_carries_the_headers(
    client: Client, runtime: Runtime, as_key: AsKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer `handle_unexpected` builds, as in tests/api/test_unexpected_errors.py."""

    def broken(*_: object) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(runtime.pushes, "read", broken)
    response = client.get("/v1/pushes/psh_0123456789abcdef01234567", headers=as_key("pushes:write"))
    assert response.status_code == 500, response.text
    assert_api_headers(response)


def test_a_storage_failures_503_carries_the_headers(
    client: Client, as_user: AsUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer `handle_storage_failure` builds, as in tests/api/test_storage_failure.py: only
    `os.fdatasync`, the OS boundary, fails. The write that met it and a later read are both 503."""

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error (injected)")

    user = as_user("hana")
    monkeypatch.setattr(os, "fdatasync", failing)
    answers: list[Any] = [client.put("/v1/me/consents/marketing", json=CONSENT, headers=user)]
    monkeypatch.undo()
    answers += [client.get("/v1/me/preferences", headers=user), client.get("/readyz")]
    for response in answers:
        assert response.status_code == 503, response.text
        assert_api_headers(response)


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
    assert response.headers["cross-origin-opener-policy"] == "same-origin"


@pytest.mark.parametrize(
    "path",
    [
        "/pages/%00",
        "/pages/common.js%00",
        "/pages/common.js/x",  # a file taken for a directory
        "/pages/" + "a" * 300,  # a name too long for the file system
        "/schema/assets/%00",
        "/schema/assets/swagger-ui.css/x",
        "/schema/assets/" + "a" * 300,
    ],
)
def test_a_static_path_no_file_can_have_is_not_found(client: Client, path: str) -> None:
    """Each answered 500 to anyone (a crawler asking for `common.js/x` was enough), and a NUL was
    logged as a defect."""
    response = client.get(path)
    assert response.status_code == 404, response.text


@pytest.mark.parametrize("path", ["/pages/%2e", "/schema/assets/%2e"])
def test_a_static_directory_is_not_found_without_naming_where_it_is(client: Client, path: str) -> None:
    """Litestar's 404 for the directory itself named its absolute path: where the gateway and its
    virtualenv are installed, to anyone. (`%2e` is a dot the client does not resolve away.)"""
    response = client.get(path)
    assert response.status_code == 404, response.text
    assert str(PAGES_DIR.parent) not in response.text
    assert "site-packages" not in response.text
