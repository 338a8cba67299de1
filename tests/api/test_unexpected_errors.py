"""A defect's 500: answered as Litestar answers it, and logged by type and route, never by text."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import logged

from gateway.runtime import Runtime

Client = TestClient[Litestar]
SECRET_TEXT = "fcm-token-4f1d9a-SECRET"


def test_an_unhandled_exception_is_a_plain_500_logged_by_type_and_route(
    client: Client,
    runtime: Runtime,
    as_key: Callable[..., Headers],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Regression: nothing but the request line's status said a request had failed, not what raised."""

    def broken(*_: object) -> None:
        raise RuntimeError(f"could not read {SECRET_TEXT}")

    monkeypatch.setattr(runtime.pushes, "read", broken)
    with caplog.at_level(logging.DEBUG):  # every logger: the text must reach none of them
        answer = client.get("/v1/pushes/psh_0123456789abcdef01234567", headers=as_key("pushes:write"))

    assert (answer.status_code, answer.json()) == (
        500,
        {"status_code": 500, "detail": "Internal Server Error"},
    )
    [record] = [r for r in caplog.records if r.getMessage() == "unhandled exception"]
    assert (getattr(record, "exc_type", None), getattr(record, "route", None)) == (
        "RuntimeError", "/v1/pushes/{push_id}",
    )  # fmt: skip
    assert SECRET_TEXT not in logged(caplog)  # every field of every line, as the process writes them
    assert SECRET_TEXT not in answer.text


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/v1/nope", 404), ("DELETE", "/healthz", 405)]
)
def test_the_frameworks_own_refusals_keep_their_answers(
    client: Client, method: str, path: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="gateway.http"):
        answer = client.request(method, path)
    assert answer.status_code == status
    assert answer.json()["status_code"] == status
    assert "unhandled exception" not in caplog.text
