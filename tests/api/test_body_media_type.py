"""A body declared as another type than JSON is refused 415, not read as JSON anyway.

`PUT /v1/me/consents/marketing` with `Content-Type: text/plain` (or a form's type) and the bytes
`{"granted": true, ...}` granted the consent: whatever its client said it sent, the body was
decoded as JSON. Now it is refused, naming `content-type`, and nothing changes; JSON's own type
with parameters, a `+json` type, and no `Content-Type` at all are read as JSON.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

Client = TestClient[Litestar]
GRANT = b'{"granted": true, "notice_version": "v1"}'


@pytest.mark.parametrize(
    "declared",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/json; charset=utf-16",  # read as UTF-8 all the same
        'application/json; Charset="latin1"',
    ],
)
def test_a_body_of_another_declared_type_is_refused_and_changes_nothing(
    client: Client, as_user: Callable[[str], Headers], declared: str
) -> None:
    alice = as_user("alice")
    answer = client.put(
        "/v1/me/consents/marketing", content=GRANT, headers={**alice, "content-type": declared}
    )
    assert_problem(answer, 415, "content-type")
    consents = client.get("/v1/me/preferences", headers=alice).json()["consents"]
    assert consents.get("marketing", {}).get("granted") is not True


@pytest.mark.parametrize("coding", ["gzip", "br", "deflate, gzip"])
def test_a_body_declared_encoded_is_refused_and_changes_nothing(
    client: Client, as_user: Callable[[str], Headers], coding: str
) -> None:
    """No one decodes it: a body declared gzip was read as it came, as JSON."""
    alice = as_user("alice")
    headers = {**alice, "content-type": "application/json", "content-encoding": coding}
    answer = client.put("/v1/me/consents/marketing", content=GRANT, headers=headers)
    assert_problem(answer, 415, "content-encoding")
    consents = client.get("/v1/me/preferences", headers=alice).json()["consents"]
    assert consents.get("marketing", {}).get("granted") is not True
    for none in ("identity", ""):
        unencoded = {**alice, "content-type": "application/json", "content-encoding": none}
        assert client.put("/v1/me/consents/marketing", content=GRANT, headers=unencoded).status_code == 200


@pytest.mark.parametrize(
    "declared",
    [
        "application/json",
        "Application/JSON; charset=utf-8",
        'application/json; charset="UTF-8"',
        "application/json;charset=utf8",
        "application/json; charset=us-ascii",  # a subset of UTF-8
        "application/merge-patch+json",
        None,
    ],
)
def test_json_however_declared_or_undeclared_is_read(
    client: Client, as_user: Callable[[str], Headers], declared: str | None
) -> None:
    alice = as_user("alice")
    headers = alice if declared is None else {**alice, "content-type": declared}
    answer = client.put("/v1/me/consents/marketing", content=GRANT, headers=headers)
    assert answer.status_code == 200, answer.text
    assert client.get("/v1/me/preferences", headers=alice).json()["consents"]["marketing"]["granted"] is True


def test_the_schema_declares_415_beside_413(client: Client) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    answers = [
        set(operation["responses"])
        for routes in paths.values()
        for operation in routes.values()
        if isinstance(operation, dict) and "responses" in operation
    ]
    assert any("413" in codes for codes in answers)
    assert all(("413" in codes) == ("415" in codes) for codes in answers)
