"""A refused value's 400 says what the field takes, still without repeating the value.

A walk-through found that an unknown topic, platform, purpose or complaint reason got
"Invalid enum value given - at `$.topic`": the value is left out (it may be a user id), and
so was any hint of what would do, so a client had to read the code. Patterns were quoted
with the `(?!\\n)` our patterns end with, which a client took as part of what to send.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

Client = TestClient[Litestar]
TOPICS = "one of: transactional, promotions, flash_sales, cart_reminders, recommendations, nearby_offers, "
SECRET = "alice@example.com"  # a refused value that must not come back


def _push(**fields: Any) -> dict[str, Any]:
    return {
        "idempotency_key": "k1",
        "user_id": "u1",
        "topic": "promotions",
        "title": "t",
        "body": "b",
    } | fields


@pytest.mark.parametrize(
    ("method", "path", "body", "who", "field", "takes"),
    [
        ("post", "/v1/pushes", _push(topic=SECRET), "service", "topic", TOPICS),
        ("post", "/v1/pushes/batch", {"pushes": [_push(), _push(topic=SECRET)]}, "service", "pushes[1].topic",
         TOPICS),
        ("patch", "/v1/me/preferences", {"topics": {SECRET: False}}, "user", "topics", TOPICS),
        ("post", "/v1/me/devices", {"platform": SECRET, "token": "x"}, "user", "platform",
         "one of: fcm, apns, webpush, webhook"),
        ("post", "/v1/me/complaints", {"reason": SECRET}, "user", "reason",
         "one of: too_frequent, irrelevant, "),
        ("get", f"/v1/audit/complaints?status={SECRET}", None, "auditor", "status",
         "one of: open, acknowledged, resolved"),
    ],
    ids=["push topic", "batch topic", "topic switch", "platform", "complaint reason", "query filter"],
)  # fmt: skip
def test_a_refused_choice_lists_the_choices(
    client: Client,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    who: str,
    field: str,
    takes: str,
) -> None:
    headers = {
        "service": lambda: as_key("pushes:write"),
        "user": lambda: as_user("u1"),
        "auditor": lambda: as_key("audit:read"),
    }[who]()
    sent = {"json": body} if body is not None else {}
    answer = getattr(client, method)(path, headers=headers, **sent)
    problem = assert_problem(answer, 400, field)
    assert takes in problem["detail"] or takes in str(problem["extra"])
    assert SECRET not in answer.text


def test_a_pattern_is_quoted_as_a_client_would_send_it(
    client: Client, as_user: Callable[[str], Headers]
) -> None:
    answer = client.patch(
        "/v1/me/preferences", json={"quiet_hours": {"start": "25:00", "end": "08:00"}}, headers=as_user("u1")
    )
    assert_problem(answer, 400, "quiet_hours.start")
    assert "(?!" not in answer.text
    assert "[0-5][0-9]$'" in answer.json()["detail"]
