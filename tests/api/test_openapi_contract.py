"""The OpenAPI document at `/schema` is the contract (README): it must say what the code does,
not only the types. Each test here reads the document as served and checks one thing a client
could not learn from it before: the reason codes an answer's `reasons` can hold, what a field's
default and restrictions are."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from policies.reasons import ALL_REASON_CODES, ReasonCode

Client = TestClient[Litestar]
Document = dict[str, Any]


@pytest.fixture
def document(client: Client) -> Document:
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    served: Document = response.json()
    return served


def component(document: Document, name: str) -> Document:
    found: Document = document["components"]["schemas"][name]
    return found


def field(document: Document, model: str, name: str) -> Document:
    found: Document = component(document, model)["properties"][name]
    return found


# -- reason codes ------------------------------------------------------------------------------

REASON_LISTS = [
    ("PushAnswer", "reasons"),
    ("PushRead", "reasons"),
    ("ExportNotification", "reasons"),
    ("DecisionRead", "reasons"),
    ("DecisionRead", "final_reasons"),
]


@pytest.mark.parametrize(("model", "name"), REASON_LISTS)
def test_a_reason_s_code_is_one_of_the_stable_reason_codes(document: Document, model: str, name: str) -> None:
    """Before, each reason was an untyped map: nothing said `code` is there, or which codes exist."""
    reason = field(document, model, name)["items"]
    assert reason["type"] == "object"
    assert reason["required"] == ["code"]
    code = reason["properties"]["code"]
    assert code["type"] == "string"
    assert code["enum"] == list(get_args(ReasonCode))
    assert set(code["enum"]) == ALL_REASON_CODES
    # the details beside `code` stay what they are on the wire: strings and integers
    assert {s["type"] for s in reason["additionalProperties"]["oneOf"]} == {"string", "integer"}


def test_reasons_keep_their_shape_on_the_wire(client: Client, as_key: Any, as_user: Any) -> None:
    """The enum is documentation only: an answer's reasons are the same objects as before."""
    client.patch("/v1/me/preferences", json={"locale": "en"}, headers=as_user("u1"))  # known, no consent
    push = {"idempotency_key": "k1", "user_id": "u1", "topic": "promotions", "title": "t", "body": "b"}
    answer = client.post("/v1/pushes", json=push, headers=as_key("pushes:write"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["reasons"] == [{"code": "no_device"}, {"code": "no_consent", "purpose": "marketing"}]


# -- fields whose rules the types alone do not tell -------------------------------------------


def test_ttl_seconds_says_its_default_and_its_ceiling(document: Document) -> None:
    ttl = field(document, "PushCreate", "ttl_seconds")
    description = ttl.get("description", "")
    assert "default_ttl_seconds" in description
    assert "86400" in description
    assert "max_ttl_seconds" in description
    assert (ttl["minimum"], ttl["maximum"]) == (1, 604800)


def test_notice_version_says_which_characters_and_why(document: Document) -> None:
    notice = field(document, "ConsentUpdate", "notice_version")
    assert (notice["pattern"], notice["maxLength"]) == ("^[A-Za-z0-9._:+-]+$", 64)  # unchanged
    description = notice.get("description", "")
    assert "letters, digits" in description
    assert "personal data" in description  # why: it is kept in clear, through erasure


def test_variant_says_which_characters_and_why(document: Document) -> None:
    variant = field(document, "PushCreate", "variant")
    assert (variant["pattern"], variant["maxLength"]) == ("^[A-Za-z0-9_-]+$", 32)  # unchanged
    description = variant.get("description", "")
    assert "letters, digits" in description
    assert "campaign_id" in description
    assert "personal data" in description
