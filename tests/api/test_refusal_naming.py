"""Refusals name the field a client sent, in `extra` as `{key, message}`, and echo nothing raw:
the framework's own refusals (missing or bad parameters) and the checks that span two fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

from gateway.runtime import Runtime

Client = TestClient[Litestar]
KeyHeaders = Callable[..., Headers]


def _named(body: dict[str, Any], field: str) -> None:
    """Named in `extra` itself, each item exactly `{key, message}` (Litestar's carried `source`)."""
    assert [set(item) for item in body["extra"]] == [{"key", "message"}] * len(body["extra"])
    assert body["extra"][0]["key"] == field, body


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/audit/ledger/proof/inclusion?seq=1", "size"),
        ("/v1/audit/ledger/proof/consistency?to=5", "from"),
    ],
)
def test_a_missing_query_parameter_is_named_in_extra(
    client: Client, as_key: KeyHeaders, path: str, field: str
) -> None:
    """It was a 400 with no `extra`, the name only inside the text."""
    body = assert_problem(client.get(path, headers=as_key("audit:read")), 400)
    _named(body, field)


def test_a_bad_query_value_is_named_and_the_query_not_echoed(client: Client, as_key: KeyHeaders) -> None:
    """The detail was "Validation failed for GET <path>?<query>": a user id given beside a bad
    parameter came back in it."""
    answer = client.get(
        "/v1/audit/consent-events?user_id=marker-user-77&limit=0", headers=as_key("audit:read")
    )
    body = assert_problem(answer, 400)
    _named(body, "limit")
    assert "marker-user-77" not in answer.text


def test_a_value_outside_an_enumeration_is_not_echoed(client: Client, as_key: KeyHeaders) -> None:
    answer = client.get("/v1/audit/consent-events?purpose=alice@example.com", headers=as_key("audit:read"))
    _named(assert_problem(answer, 400), "purpose")
    assert "alice" not in answer.text


def test_a_body_value_outside_an_enumeration_is_not_echoed(client: Client, as_key: KeyHeaders) -> None:
    push = {
        "idempotency_key": "k-1",
        "user_id": "u-1",
        "topic": "alice@example.com",
        "title": "t",
        "body": "b",
    }
    answer = client.post("/v1/pushes", json=push, headers=as_key("pushes:write"))
    _named(assert_problem(answer, 400), "topic")
    assert "alice" not in answer.text


@pytest.mark.parametrize("value", ["o'brien@example.com", "it's'bob@example.com", 'it\'s "bob"@example.com'])
def test_a_refused_value_with_apostrophes_is_not_echoed_either(
    client: Client, as_key: KeyHeaders, value: str
) -> None:
    """Quoted in double quotes, as Python's repr quotes it, it came back whole."""
    push = {"idempotency_key": "k-1", "user_id": "u-1", "topic": value, "title": "t", "body": "b"}
    answer = client.post("/v1/pushes", json=push, headers=as_key("pushes:write"))
    _named(assert_problem(answer, 400), "topic")
    assert "brien" not in answer.text
    assert "bob" not in answer.text


def test_patterns_and_our_own_messages_are_left_whole(client: Client, as_key: KeyHeaders) -> None:
    """Scrubbing every quoted span took the regex out of a pattern refusal and cut our own
    messages at their apostrophes."""
    push = {"idempotency_key": "k-1", "user_id": "u-1", "topic": "promotions", "title": "t", "body": "b",
            "campaign_id": "bad"}  # fmt: skip
    answer = client.post("/v1/pushes", json=push, headers=as_key("pushes:write"))
    assert "^cmp_[0-9a-f]{16}$" in assert_problem(answer, 400, "campaign_id")["detail"]


def test_a_missing_body_is_named_body(client: Client, as_key: KeyHeaders) -> None:
    body = assert_problem(client.post("/v1/pushes", headers=as_key("pushes:write")), 400)
    _named(body, "body")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"default_ttl_seconds": 7200, "max_ttl_seconds": 3600}, "default_ttl_seconds"),
        ({"min_quiet_minutes": 700}, "min_quiet_minutes"),
    ],
)
def test_a_policy_check_across_two_fields_names_one_of_them(
    client: Client, as_key: KeyHeaders, change: dict[str, int], field: str
) -> None:
    """Both were blamed on `body`."""
    admin = as_key("admin")
    read = client.get("/v1/admin/policy", headers=admin)
    current = read.json()["settings"]
    answer = client.put(
        "/v1/admin/policy", headers=admin | {"If-Match": read.headers["etag"]}, json=current | change
    )
    _named(assert_problem(answer, 400), field)
    assert client.get("/v1/admin/policy", headers=admin).json()["settings"] == current


TAGGED = "Sale" + "".join(chr(0xE0000 + ord(c)) for c in "alice@example.com")  # invisible, decodable
FLAGGED = "Sale \U0001f3f4" + TAGGED.removeprefix("Sale") + "\U000e007f"  # dressed as a flag


@pytest.mark.parametrize(
    "name",
    [
        "Winter\nsale",
        "Winter\x00sale",
        "Winter \u202eelas",
        "Winter\u200bsale",
        "ali\u2060ce@example.com",
        TAGGED,
        FLAGGED,
        "Sale\ue000",
        "Sale\ufffe",
    ],
)
def test_a_campaign_name_is_one_printable_line(
    client: Client, runtime: Runtime, as_key: KeyHeaders, name: str
) -> None:
    """Shown to everyone who reads the campaign, as key names are: NUL, a line break and a bidi
    override were kept and shown back (201)."""
    answer = client.post(
        "/v1/campaigns", json={"name": name, "topic": "promotions"}, headers=as_key("campaigns:write")
    )
    _named(assert_problem(answer, 400), "name")
    assert runtime.store.data.reader().execute("SELECT count(*) FROM campaigns").fetchone() == (0,)


def test_a_bad_entry_in_a_mapping_of_lists_is_named_by_its_key(client: Client, as_key: KeyHeaders) -> None:
    """It was `allowed_data_keys[...][1]`, msgspec's placeholder, no path a client can use."""
    admin = as_key("admin")
    read = client.get("/v1/admin/policy", headers=admin)
    current = read.json()["settings"]
    change = {"allowed_data_keys": {"promotions": ["deeplink"], "flash_sales": ["deeplink", "Bad Key"]}}
    answer = client.put(
        "/v1/admin/policy", headers=admin | {"If-Match": read.headers["etag"]}, json=current | change
    )
    _named(assert_problem(answer, 400), "allowed_data_keys.flash_sales[1]")


@pytest.mark.parametrize(
    "name",
    [
        "双十一\u3000大促",
        "Winter\u00a0Sale",
        "Family \U0001f468\u200d\U0001f469\u200d\U0001f467 deals",
        "Co\u00adop",
        "\U0001fae8 Shake sale",  # Unicode 15: unassigned in Python 3.11's tables
        "Scotland \U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
        "\u0600\u0661\u0662 تخفيض",
        "क्\u200dष",
        "خرید\u200cها",
    ],
)
def test_a_campaign_name_in_any_script_is_a_name(client: Client, as_key: KeyHeaders, name: str) -> None:
    """A full-width or no-break space, an emoji's joiners, a soft hyphen: refused by the first
    check of printable names (400), though none hides or reorders text."""
    answer = client.post(
        "/v1/campaigns", json={"name": name, "topic": "promotions"}, headers=as_key("campaigns:write")
    )
    assert answer.status_code == 201, answer.text
