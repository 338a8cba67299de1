"""A body sent to a route that reads none is refused 400 naming `body`, and nothing changes.

`DELETE /v1/me` with `{"dry_run": true}` (or `text/plain` "please do not") answered 204 and
erased the user; a key rotation and a campaign's pause went ahead whatever their body said. The
same name in the query was refused already (`gateway.query`): only the body was ignored.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

from gateway.scopes import SCOPES

Client = TestClient[Litestar]
CONSENT = {"granted": True, "notice_version": "v1"}


@pytest.mark.parametrize(
    ("content", "declared"), [(b'{"dry_run": true}', "application/json"), (b"please do not", "text/plain")]
)
def test_an_erasure_sent_with_a_body_is_refused_and_erases_nothing(
    client: Client, as_user: Callable[[str], Headers], content: bytes, declared: str
) -> None:
    alice = as_user("alice")
    assert client.put("/v1/me/consents/marketing", headers=alice, json=CONSENT).status_code == 200
    answer = client.request("DELETE", "/v1/me", headers={**alice, "content-type": declared}, content=content)
    assert_problem(answer, 400, "body")
    assert client.get("/v1/me/preferences", headers=alice).json()["consents"]["marketing"]["granted"] is True


def test_a_pause_sent_with_a_body_is_refused_and_one_without_goes_ahead(
    client: Client, as_key: Callable[..., Headers]
) -> None:
    key = as_key("campaigns:write", "campaigns:read")
    made = client.post("/v1/campaigns", headers=key, json={"name": "Winter", "topic": "promotions"})
    path = f"/v1/campaigns/{made.json()['campaign_id']}"
    assert_problem(client.post(f"{path}/pause", headers=key, json={"reason": "x"}), 400, "body")
    assert client.get(path, headers=key).json()["status"] == "active"
    # An empty POST, as clients send one (no body, or a declared length of zero), is no body.
    assert client.post(f"{path}/pause", headers=key).status_code == 200
    assert client.post(f"{path}/resume", headers={**key, "content-length": "0"}).status_code == 200
    assert client.get(path, headers=key).json()["status"] == "active"
    # Zero however written, and a chunked body that holds nothing (a proxy from HTTP/2): no body.
    assert client.post(f"{path}/pause", headers={**key, "content-length": "00"}).status_code == 200
    assert client.post(f"{path}/resume", headers=key, content=iter([])).status_code == 200


def test_every_route_under_v1_that_reads_no_body_refuses_one(
    client: Client, as_user: Callable[[str], Headers], as_key: Callable[..., Headers]
) -> None:
    """Whatever the route does, before it does it: path ids need not exist, as the refusal comes
    before the handler runs; chunked bodies (no declared length) are refused alike."""
    user = as_user("bob")
    auditor, key = as_key("audit:read"), as_key(*(s for s in SCOPES if s != "audit:read"))
    paths = client.get("/schema/openapi.json").json()["paths"]
    tried = 0
    for path, operations in paths.items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "requestBody" in operation:
                continue
            url = path.replace("{", "x").replace("}", "")  # a made-up id for each path parameter
            headers = user if path.startswith("/v1/me") else auditor if path.startswith("/v1/audit") else key
            for body in (b'{"x": 1}', iter([b'{"x"', b": 1}"])):
                answer = client.request(method.upper(), url, headers=headers, content=body)
                assert_problem(answer, 400, "body")
                tried += 1
    assert tried >= 2 * 25
