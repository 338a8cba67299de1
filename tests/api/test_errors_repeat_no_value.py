"""A refusal names the field and says what it takes, never the value it refused.

A time zone, an audit filter's time or a campaign's control variant may be where a client put
a user id or an e-mail address; three refusals repeated it (`timezone: 'alice@example.com' is not
an IANA time zone name`), against `gateway.errors.client_text`' rule for every other one.
"""

from __future__ import annotations

from collections.abc import Callable

from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

Client = TestClient[Litestar]
VALUE = "alice@example.com"


def test_a_time_zone_refused_is_not_repeated(client: Client, as_user: Callable[[str], Headers]) -> None:
    answer = client.patch("/v1/me/preferences", headers=as_user("alice"), json={"timezone": VALUE})
    assert_problem(answer, 400, "timezone")
    assert "alice" not in answer.text
    assert "IANA" in answer.json()["detail"]


def test_an_audit_filters_time_refused_is_not_repeated(
    client: Client, as_key: Callable[..., Headers]
) -> None:
    """Of a time's shape (the route's pattern refuses an address first) but no real time."""
    answer = client.get(
        "/v1/audit/decisions", params={"from": "2026-02-30T10:00:00Z"}, headers=as_key("audit:read")
    )
    assert_problem(answer, 400, "from")
    assert "02-30" not in answer.text


def test_a_control_variant_refused_is_not_repeated(client: Client, as_key: Callable[..., Headers]) -> None:
    key = as_key("campaigns:write", "campaigns:read")
    made = client.post("/v1/campaigns", json={"name": "Winter", "topic": "promotions"}, headers=key)
    stats = f"/v1/campaigns/{made.json()['campaign_id']}/stats"
    answer = client.get(stats, params={"control": VALUE}, headers=key)
    assert_problem(answer, 400, "control")
    assert "alice" not in answer.text


def test_a_pattern_with_a_meaning_is_said_by_it(client: Client, as_key: Callable[..., Headers]) -> None:
    """An auditor who typed a date, or a name where a subject_ref goes, was shown the pattern's
    forty-character regular expression."""
    auditor = as_key("audit:read")
    for field, value, meaning in (
        ("from", "2026-12-07", "from: Expected an RFC 3339 time, such as 2026-11-23T10:00:00Z"),
        ("subject_ref", "bob", "subject_ref: Expected a subject_ref: `sub_` and 52 of a-z and 2-7"),
    ):
        answer = client.get("/v1/audit/consent-events", params={field: value}, headers=auditor)
        assert assert_problem(answer, 400, field)["detail"] == meaning
        assert "regex" not in answer.text
