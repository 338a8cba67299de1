"""A campaign's name and its variants are kept in clear, beside pushes and through erasure, and
shown to whoever reads the campaign: they must be labels, not personal data. And `default` is
the group the statistics give pushes sent without a variant, so no variant may take it."""

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


def _count(runtime: Runtime, table: str) -> int:
    return int(runtime.store.data.reader().execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608


@pytest.mark.parametrize(
    "name",
    [
        "Call 13812345678 for details",
        "Ping ada@example.com",
        "Card 4111 1111 1111 1111",
        "card_4111_1111_1111_1111",  # `_` and `:` group digits in labels too
        "call:138:1234:5678",
        "Promo for bob_@example.com",  # and are read as written as well
        "1_4111-1111-1111-1111",
        "   ",  # spaces alone, of any kind, name nothing
        "\u3000",
        " \u00a0 ",
    ],
)
def test_a_campaign_name_holding_personal_data_or_nothing_is_refused(
    client: Client, runtime: Runtime, as_key: KeyHeaders, name: str
) -> None:
    answer = client.post(
        "/v1/campaigns", json={"name": name, "topic": "promotions"}, headers=as_key("campaigns:write")
    )
    assert_problem(answer, 400, "name")
    assert _count(runtime, "campaigns") == 0


def test_a_variant_that_shares_letters_with_a_short_user_id_is_a_label(
    client: Client, as_key: KeyHeaders
) -> None:
    created = client.post(
        "/v1/campaigns", json={"name": "Winter", "topic": "promotions"}, headers=as_key("campaigns:write")
    )
    push = {
        "idempotency_key": "k-1", "user_id": "ada", "topic": "promotions", "title": "Sale",
        "body": "20% off", "campaign_id": created.json()["campaign_id"], "variant": "adaptive-B",
    }  # fmt: skip
    answer = client.post("/v1/pushes", json=push, headers=as_key("pushes:write"))
    assert answer.status_code == 200, answer.text


def test_a_campaign_name_with_a_year_and_a_discount_is_a_name(client: Client, as_key: KeyHeaders) -> None:
    answer = client.post(
        "/v1/campaigns",
        json={"name": "Winter 2026: 20% off", "topic": "promotions"},
        headers=as_key("campaigns:write"),
    )
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize(
    "variant",
    [
        "default", "13812345678", "4111111111111111", "wallet-user-0042", "B-WALLET-USER-0042", "ADA",
        "4111_1111_1111_1111", "138_1234_5678", "1_4111-1111-1111-1111",
    ],
)  # fmt: skip
def test_a_variant_that_is_taken_or_personal_data_is_refused(
    client: Client, runtime: Runtime, as_key: KeyHeaders, variant: str
) -> None:
    created = client.post(
        "/v1/campaigns", json={"name": "Winter", "topic": "promotions"}, headers=as_key("campaigns:write")
    )
    push: dict[str, Any] = {
        "idempotency_key": "k-1", "user_id": "ada" if variant == "ADA" else "wallet-user-0042",
        "topic": "promotions", "title": "Sale",
        "body": "20% off", "campaign_id": created.json()["campaign_id"], "variant": variant,
    }  # fmt: skip
    key = as_key("pushes:write")
    assert_problem(client.post("/v1/pushes", json=push, headers=key), 400, "variant")
    ok = push | {"idempotency_key": "k-2", "variant": "B"}
    answer = client.post("/v1/pushes/batch", json={"pushes": [ok, push]}, headers=key)
    assert_problem(answer, 400, "pushes[1].variant")
    assert _count(runtime, "pushes") == 0


@pytest.mark.parametrize("data_key", ["wallet-user-0042", "uid_WALLET-USER-0042"])
def test_a_data_key_holding_the_pushs_user_id_is_refused(
    client: Client, runtime: Runtime, as_key: KeyHeaders, data_key: str
) -> None:
    """A key not allowed for the topic is named in the push's reasons, kept in clear through
    erasure: it was, with the user id in it."""
    push: dict[str, Any] = {
        "idempotency_key": "k-1", "user_id": "wallet-user-0042", "topic": "transactional",
        "title": "Paid", "body": "Receipt", "data": {data_key: "1"},
    }  # fmt: skip
    key = as_key("pushes:write")
    answer = client.post("/v1/pushes", json=push, headers=key)
    assert_problem(answer, 400, "data")
    assert "wallet-user-0042" not in answer.text.casefold()
    assert _count(runtime, "pushes") == 0
    other = push | {"user_id": "someone-else"}
    assert client.post("/v1/pushes", json=other, headers=key).status_code == 200


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_data_key_that_is_the_user_id_is_refused_for_a_push_by_subject_ref(
    client: Client, runtime: Runtime, as_key: KeyHeaders, dry_run: bool
) -> None:
    """Addressed by subject_ref, the edge has no user id to compare with: the key was stored in
    clear in the push's reasons (`payload_field_not_allowed`, field `zhangwei88`)."""
    ref = runtime.store.pseudonyms.subject_ref("zhangwei88")
    push: dict[str, Any] = {
        "idempotency_key": "k-1", "subject_ref": ref, "topic": "transactional", "title": "Paid",
        "body": "Receipt", "data": {"zhangwei88": "1"}, "dry_run": dry_run,
    }  # fmt: skip
    key = as_key("pushes:write")
    answer = client.post("/v1/pushes", json=push, headers=key)
    assert_problem(answer, 400, "data")
    assert "zhangwei88" not in answer.text
    assert _count(runtime, "pushes") == 0
    batch = {"pushes": [push | {"idempotency_key": "k-0", "data": {}}, push]}
    assert_problem(client.post("/v1/pushes/batch", json=batch, headers=key), 400, "pushes[1].data")
    assert _count(runtime, "pushes") == 0
    other = push | {"subject_ref": runtime.store.pseudonyms.subject_ref("someone-else")}
    assert client.post("/v1/pushes", json=other, headers=key).status_code == 200


def test_a_variant_that_is_the_user_id_is_refused_for_a_push_by_subject_ref(
    client: Client, runtime: Runtime, as_key: KeyHeaders
) -> None:
    """Regression (review of 69a8ccf): the variant is kept in clear in the push's row and shown
    in the campaign's statistics, through erasure; by subject_ref it was not compared."""
    made = client.post(
        "/v1/campaigns", json={"name": "Winter", "topic": "promotions"}, headers=as_key("campaigns:write")
    )
    assert made.status_code == 201, made.text
    ref = runtime.store.pseudonyms.subject_ref("zhangwei88")
    push: dict[str, Any] = {
        "idempotency_key": "k-1", "subject_ref": ref, "topic": "promotions", "title": "Sale",
        "body": "20% off", "campaign_id": made.json()["campaign_id"], "variant": "zhangwei88",
    }  # fmt: skip
    key = as_key("pushes:write")
    answer = client.post("/v1/pushes", json=push, headers=key)
    assert_problem(answer, 400, "variant")
    assert "zhangwei88" not in answer.text
    assert _count(runtime, "pushes") == 0
    assert client.post("/v1/pushes", json=push | {"variant": "B"}, headers=key).status_code == 200


@pytest.mark.parametrize(
    ("user_id", "data_key"), [("code", "coupon_code"), ("link", "deeplink"), ("image", "image_url")]
)
def test_a_short_user_id_inside_an_allowed_key_is_chance(
    client: Client, as_key: KeyHeaders, user_id: str, data_key: str
) -> None:
    """Refused (400) for users `code`, `link`, `image`: the standard keys hold their ids."""
    push = {
        "idempotency_key": "k-1", "user_id": user_id, "topic": "transactional", "title": "Paid",
        "body": "Receipt", "data": {data_key: "1"},
    }  # fmt: skip
    assert client.post("/v1/pushes", json=push, headers=as_key("pushes:write")).status_code == 200
