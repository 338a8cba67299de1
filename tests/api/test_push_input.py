"""Bad input to the push API: each is a 4xx in the one problem shape, naming the field, and
records nothing (no row in any table: no push, no outbox row, no subject, no ledger event)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
from conftest import FIXED_NOW, FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem, readers

from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.services import pushes as push_service
from gateway.settings import Settings

Client = TestClient[Litestar]
Json = dict[str, Any]
SUBJECT_REF = "sub_" + "a" * 52


def good(**fields: Any) -> Json:
    base: Json = {
        "idempotency_key": "k-1",
        "user_id": "alice",
        "topic": "promotions",
        "title": "Winter sale",
        "body": "20% off today",
        "data": {"deeplink": "wallet://offers"},
    }
    return base | fields


def without(*names: str) -> Json:
    return {k: v for k, v in good().items() if k not in names}


class Setup(NamedTuple):
    client: Client
    runtime: Runtime
    key: Headers
    campaigns: dict[str, str]  # topic -> campaign_id

    def counts(self) -> dict[str, int]:
        """Rows in every table of every database (the directory's and the ledger's included):
        a refusal must write to none of them."""
        counts: dict[str, int] = {}
        for name, conn in readers(self.runtime).items():
            tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            for (table,) in tables:
                row = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()  # noqa: S608
                counts[f"{name}:{table}"] = int(row[0])
        return counts


def prepare(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], as_key: Callable[..., Headers]
) -> Setup:
    """A user who could receive a push (so a refusal is about the input, not the subject)."""
    user = as_user("alice")
    consent = {"granted": True, "notice_version": "v1"}
    assert client.put("/v1/me/consents/marketing", json=consent, headers=user).status_code == 200
    device = {"platform": "fcm", "token": "fcm-token-alice"}
    assert client.post("/v1/me/devices", json=device, headers=user).status_code == 201
    writer = as_key("campaigns:write")
    created = client.post("/v1/campaigns", json={"name": "tips", "topic": "product_tips"}, headers=writer)
    assert created.status_code == 201
    return Setup(client, runtime, as_key("pushes:write"), {"product_tips": created.json()["campaign_id"]})


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """One gateway for the whole module: every test here is a refusal, which records nothing,
    and each asserts exactly that, so they cannot disturb one another."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("push-input") / "data", worker_enabled=False)
    app = create_app(settings, FakeClock(FIXED_NOW))
    with TestClient(app) as client:
        runtime: Runtime = app.state.runtime

        def as_user(user_id: str) -> Headers:
            return {"Authorization": f"Bearer {runtime.user_tokens.mint(user_id, runtime.clock())}"}

        def as_key(*scopes: str) -> Headers:
            return {"Authorization": f"Bearer {runtime.api_keys.create_sync('input tests', scopes)[1]}"}

        yield prepare(client, runtime, as_user, as_key)


@pytest.fixture
def fresh(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], as_key: Callable[..., Headers]
) -> Setup:
    """A gateway of its own, for tests that record a push or change the policy."""
    return prepare(client, runtime, as_user, as_key)


class Bad(NamedTuple):
    name: str
    body: Callable[[Setup], object]
    status: int
    field: str


BAD = [
    Bad("unknown topic", lambda s: good(topic="spam"), 400, "topic"),
    Bad("topic of wrong type", lambda s: good(topic=3), 400, "topic"),
    Bad("both user_id and subject_ref", lambda s: good(subject_ref=SUBJECT_REF), 400, "user_id"),
    Bad("neither user_id nor subject_ref", lambda s: without("user_id"), 400, "user_id"),
    Bad("empty user_id", lambda s: good(user_id=""), 400, "user_id"),
    Bad("user_id over 128", lambda s: good(user_id="u" * 129), 400, "user_id"),
    Bad("ttl 0", lambda s: good(ttl_seconds=0), 400, "ttl_seconds"),
    Bad("ttl negative", lambda s: good(ttl_seconds=-5), 400, "ttl_seconds"),
    Bad("ttl over 7 days", lambda s: good(ttl_seconds=604801), 400, "ttl_seconds"),
    Bad("ttl as a string", lambda s: good(ttl_seconds="3600"), 400, "ttl_seconds"),
    Bad("ttl as a float", lambda s: good(ttl_seconds=3600.5), 400, "ttl_seconds"),
    Bad("idempotency key over 128", lambda s: good(idempotency_key="k" * 129), 400, "idempotency_key"),
    Bad("empty idempotency key", lambda s: good(idempotency_key=""), 400, "idempotency_key"),
    Bad("missing idempotency key", lambda s: without("idempotency_key"), 400, "idempotency_key"),
    Bad("missing title", lambda s: without("title"), 400, "title"),
    Bad(
        "malformed subject_ref",
        lambda s: {**without("user_id"), "subject_ref": "sub_NOT-A-REF"},
        400,
        "subject_ref",
    ),
    Bad(
        "subject_ref with upper case",
        lambda s: {**without("user_id"), "subject_ref": "sub_" + "A" * 52},
        400,
        "subject_ref",
    ),
    Bad("unknown field", lambda s: good(priority="high"), 400, "priority"),
    Bad("unknown field in near", lambda s: good(near={"geohash": "wx4g", "radius_m": 500}), 400, "radius_m"),
    Bad("bad geohash", lambda s: good(near={"geohash": "wx4a"}), 400, "near.geohash"),
    Bad(
        "data value not a string",
        lambda s: good(data={"merchant_id": "m1", "deeplink": 5}),
        400,
        "data.deeplink",
    ),
    Bad("data value too long", lambda s: good(data={"coupon_code": "x" * 5000}), 400, "data.coupon_code"),
    Bad("data with 65 keys", lambda s: good(data={f"k{i}": "v" for i in range(65)}), 400, "data"),
    Bad("variant without campaign_id", lambda s: good(variant="A"), 400, "variant"),
    Bad("malformed campaign_id", lambda s: good(campaign_id="winter"), 400, "campaign_id"),
    Bad("unknown campaign_id", lambda s: good(campaign_id="cmp_0123456789abcdef"), 404, "campaign_id"),
    Bad(
        "unknown campaign_id in a dry run",
        lambda s: good(campaign_id="cmp_0123456789abcdef", dry_run=True),
        404,
        "campaign_id",
    ),
    Bad(
        "campaign of another topic",
        lambda s: good(campaign_id=s.campaigns["product_tips"], topic="promotions"),
        400,
        "topic",
    ),
    # A pattern's `$` also matches before a final newline: "A\n" was queued as a variant of its own.
    Bad(
        "variant with a trailing newline",
        lambda s: good(campaign_id=s.campaigns["product_tips"], topic="product_tips", variant="A\n"),
        400,
        "variant",
    ),
    Bad(
        "campaign_id with a trailing newline",
        lambda s: good(campaign_id=s.campaigns["product_tips"] + "\n", topic="product_tips"),
        400,
        "campaign_id",
    ),
    Bad(
        "subject_ref with a trailing newline",
        lambda s: {**without("user_id"), "subject_ref": SUBJECT_REF + "\n"},
        400,
        "subject_ref",
    ),
    Bad("geohash with a trailing newline", lambda s: good(near={"geohash": "wx4g\n"}), 400, "near.geohash"),
    Bad("dry_run as a string", lambda s: good(dry_run="true"), 400, "dry_run"),
    Bad("personalized as a string", lambda s: good(personalized="false"), 400, "personalized"),
    Bad("personalized as a number", lambda s: good(personalized=1), 400, "personalized"),
    Bad("body is a list", lambda s: [good()], 400, "body"),
    # A blank notification on the user's screen, or text no device shows (some end it at a NUL).
    Bad("title and body both empty", lambda s: good(title="", body=""), 400, "title"),
    Bad("title and body only spaces", lambda s: good(title=" \u3000", body="\n\t"), 400, "title"),
    Bad("NUL in the title", lambda s: good(title="Paid\x00 in full"), 400, "title"),
    Bad("escape in the body", lambda s: good(body="10% off \x1b[31mtoday"), 400, "body"),
    Bad("C1 control in the body", lambda s: good(body="10% off \x9b31mtoday"), 400, "body"),
]


@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_bad_push_is_refused_naming_the_field(setup: Setup, case: Bad) -> None:
    before = setup.counts()
    answer = setup.client.post("/v1/pushes", json=case.body(setup), headers=setup.key)
    assert_problem(answer, case.status, case.field)
    assert setup.counts() == before


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"idempotency_key": "k"', b"\xff\xfe", b'{"topic": "promotions"}}', b"[]", b"42", b"null"],
    ids=["open brace", "truncated", "not utf-8", "trailing", "array", "number", "null"],
)
def test_malformed_json_is_400_not_500(setup: Setup, raw: bytes) -> None:
    before = setup.counts()
    answer = setup.client.post(
        "/v1/pushes", content=raw, headers=setup.key | {"Content-Type": "application/json"}
    )
    assert_problem(answer, 400)
    assert setup.counts() == before


def test_empty_body_names_the_body(setup: Setup) -> None:
    """Regression: Litestar's own check named its handler parameter `data` (also a push field)."""
    answer = setup.client.post(
        "/v1/pushes", content=b"", headers=setup.key | {"Content-Type": "application/json"}
    )
    body = assert_problem(answer, 400)
    assert [item["key"] for item in body.get("extra") or []] in ([], ["body"])


def test_missing_field_is_named_in_extra(setup: Setup) -> None:
    """Regression: a missing field was reported as key "body" (itself a push field)."""
    body = assert_problem(setup.client.post("/v1/pushes", json=without("title"), headers=setup.key), 400)
    assert [item["key"] for item in body["extra"]] == ["title"]


def test_batch_cross_field_error_names_the_item(setup: Setup) -> None:
    """Regression: a __post_init__ error in a batch item named "user_id" without the item."""
    items = [good(), good(idempotency_key="k-2", subject_ref=SUBJECT_REF)]
    answer = setup.client.post("/v1/pushes/batch", json={"pushes": items}, headers=setup.key)
    body = assert_problem(answer, 400, "user_id")
    assert [item["key"] for item in body["extra"]] == ["pushes[1].user_id"]


def test_a_blank_push_in_a_batch_refuses_the_batch_naming_it(setup: Setup) -> None:
    before = setup.counts()
    items = [good(), good(idempotency_key="k-2", title=" ", body="")]
    answer = setup.client.post("/v1/pushes/batch", json={"pushes": items}, headers=setup.key)
    body = assert_problem(answer, 400)
    assert [item["key"] for item in body["extra"]] == ["pushes[1].title"]
    assert setup.counts() == before


def test_a_key_repeated_among_many_is_refused_by_the_bound_on_keys(setup: Setup) -> None:
    """Finding the repeated key was quadratic (20,000 keys held the loop for 5 s); now `data` holds
    at most 64 keys, and msgspec refuses more before any scan."""
    keys = ", ".join(f'"k{i}": "v"' for i in range(20_000))
    push = json.dumps(good(data={})).replace('"data": {}', f'"data": {{{keys}, "k19999": "w"}}')
    raw = f'{{"pushes": [{push}]}}'.encode()
    before = setup.counts()
    answer = setup.client.post(
        "/v1/pushes/batch", content=raw, headers=setup.key | {"Content-Type": "application/json"}
    )
    assert_problem(answer, 400, "pushes[0].data")
    assert setup.counts() == before


def test_oversized_body_is_413_and_records_nothing(setup: Setup) -> None:
    huge = good(data={f"k{i}": "v" * 4000 for i in range(20)})  # ~80 KiB, over the 64 KiB limit
    before = setup.counts()
    assert_problem(setup.client.post("/v1/pushes", json=huge, headers=setup.key), 413)
    assert setup.counts() == before


def test_a_413_says_how_large_a_body_the_route_takes(setup: Setup) -> None:
    huge = good(data={f"k{i}": "v" * 4000 for i in range(20)})
    body = assert_problem(setup.client.post("/v1/pushes", json=huge, headers=setup.key), 413)
    assert "(65536 bytes)" in body["detail"]
    assert body["extra"] == [{"key": "body", "message": body["detail"]}]  # the field, as a 400 names it


def test_a_full_batch_of_pushes_the_policies_accept_is_not_too_large(setup: Setup) -> None:
    """10,000 pushes of 3.8 KB each, every one within the 4 KiB payload: refused whole with a
    bare 413 when batches were held to 32 MiB."""
    link = "wallet://offers/" + "x" * 3_500
    one = good(topic="transactional", data={"deeplink": link}, dry_run=True)
    alone = setup.client.post("/v1/pushes", json=one, headers=setup.key).json()
    assert alone["outcome"] == "queued", alone
    pushes = [one | {"idempotency_key": f"big-{i}"} for i in range(10_000)]
    answer = setup.client.post("/v1/pushes/batch", json={"pushes": pushes}, headers=setup.key)
    assert answer.status_code == 200, answer.text[:200]
    assert answer.json()["counts"] == {"queued": 10_000}
    assert len(answer.request.content) > 32 * 1024 * 1024


def test_valid_baseline_is_accepted(fresh: Setup) -> None:
    """The table above differs from this body by one field each."""
    answer = fresh.client.post("/v1/pushes", json=good(), headers=fresh.key)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "queued"
    counts = fresh.counts()
    assert (counts["gateway.db:pushes"], counts["gateway.db:outbox"]) == (1, 1)


def test_ttl_over_an_admin_lowered_maximum(fresh: Setup, as_key: Callable[..., Headers]) -> None:
    changed = fresh.client.put(
        "/v1/admin/policy",
        json={"max_ttl_seconds": 3600, "default_ttl_seconds": 3600},
        headers=as_key("admin"),
    )
    assert changed.status_code == 200, changed.text
    before = fresh.counts()
    assert_problem(
        fresh.client.post("/v1/pushes", json=good(ttl_seconds=3601), headers=fresh.key), 400, "ttl_seconds"
    )
    assert fresh.counts() == before
    ok = fresh.client.post(
        "/v1/pushes", json=good(idempotency_key="k-2", ttl_seconds=3600), headers=fresh.key
    )
    assert ok.status_code == 200
    assert ok.json()["expires_at"] == "2026-11-23T11:00:00Z"


def test_a_push_of_a_body_alone_or_of_several_lines_is_accepted(fresh: Setup) -> None:
    for i, fields in enumerate(
        [{"title": "", "body": "Paid"}, {"title": "Paid", "body": "CNY 25.00\n\tThanks"}]
    ):
        answer = fresh.client.post(
            "/v1/pushes", json=good(idempotency_key=f"k{i}", **fields), headers=fresh.key
        )
        assert answer.status_code == 200, answer.text


def test_a_blank_push_accepted_before_the_rule_gets_its_first_answer_when_sent_again(
    fresh: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused as its body was decoded, a push queued by an earlier version and sent again with
    its key got a 400 while it went out: the rule is judged after the idempotency lookup."""
    blank = good(idempotency_key="before-the-rule", title="", body="")
    with monkeypatch.context() as earlier:  # the version before the rule
        earlier.setattr(push_service, "_refuse_unshowable", lambda request: None)
        first = fresh.client.post("/v1/pushes", json=blank, headers=fresh.key)
    assert first.status_code == 200, first.text
    again = fresh.client.post("/v1/pushes", json=blank, headers=fresh.key)
    assert (again.status_code, again.json()) == (200, first.json())
    new = fresh.client.post("/v1/pushes", json={**blank, "idempotency_key": "new"}, headers=fresh.key)
    assert_problem(new, 400, "title")


def test_ttl_at_the_seven_day_limit_is_accepted(fresh: Setup) -> None:
    answer = fresh.client.post("/v1/pushes", json=good(ttl_seconds=604800), headers=fresh.key)
    assert answer.status_code == 200, answer.text
    assert answer.json()["expires_at"] == "2026-11-30T10:00:00Z"


def test_title_over_the_policy_limit_is_a_decision_not_a_4xx(fresh: Setup) -> None:
    """Content rules are policy (admin-configurable) and are answered as reasons, and recorded."""
    answer = fresh.client.post("/v1/pushes", json=good(title="x" * 101), headers=fresh.key)
    assert answer.status_code == 200
    assert answer.json()["reasons"] == [{"code": "payload_too_large", "field": "title", "limit": 100}]
    counts = fresh.counts()
    assert (counts["gateway.db:pushes"], counts["gateway.db:outbox"]) == (1, 0)


def test_batch_over_10000_items(setup: Setup) -> None:
    tiny = [{"idempotency_key": str(i), "user_id": "u", "topic": "promotions", "title": "t", "body": ""}
            for i in range(10_001)]  # fmt: skip
    before = setup.counts()
    answer = setup.client.post("/v1/pushes/batch", json={"pushes": tiny}, headers=setup.key)
    assert_problem(answer, 400, "pushes")
    assert setup.counts() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [({"pushes": []}, "pushes"), ({}, "pushes"), ({"pushes": [good()], "dry_run": True}, "dry_run")],
    ids=["empty", "missing", "unknown field"],
)
def test_bad_batch_envelope(setup: Setup, body: Json, field: str) -> None:
    before = setup.counts()
    assert_problem(setup.client.post("/v1/pushes/batch", json=body, headers=setup.key), 400, field)
    assert setup.counts() == before


@pytest.mark.parametrize(
    ("repeat", "named"),
    [
        (("title", '"Again"'), "pushes[3].title"),
        (("data", '{"deeplink": "a", "deeplink": "b"}'), "pushes[3].data.deeplink"),
    ],
)
def test_a_repeated_key_in_a_batch_names_the_push_it_is_in(
    setup: Setup, repeat: tuple[str, str], named: str
) -> None:
    """It named the bare key (`title`, `deeplink`): which of 10,000 pushes, and whether `data`'s
    or the push's own, the sender could not tell."""
    key, value = repeat
    pushes = [json.dumps(good(idempotency_key=f"rep-{i}")) for i in range(5)]
    pushes[3] = pushes[3][:-1] + f', "{key}": {value}}}'
    before = setup.counts()
    answer = setup.client.post(
        "/v1/pushes/batch",
        content=f'{{"pushes": [{", ".join(pushes)}]}}'.encode(),
        headers=setup.key | {"Content-Type": "application/json"},
    )
    body = assert_problem(answer, 400, named)
    assert [item["key"] for item in body["extra"]] == [named]
    assert setup.counts() == before


def test_a_bad_data_value_deep_in_a_large_batch_is_refused_at_once(setup: Setup) -> None:
    """Naming the key parses the body again: not a batch's (seconds and gigabytes at 64 MiB), so
    past a push's size the field stays msgspec's `[...]`; and a body nested too deep for that
    parse is still a 400, not a 500."""
    bad = good(data={"deeplink": 1})
    batch = {"pushes": [bad] + [good(idempotency_key=f"k-{i}") for i in range(600)]}
    answer = setup.client.post("/v1/pushes/batch", json=batch, headers=setup.key)
    assert_problem(answer, 400, "pushes[0].data[...]")
    # msgspec refuses `data` first; the deep title is met only by the parse that names the key.
    rest = json.dumps({k: v for k, v in good().items() if k not in ("data", "title")})[1:]
    deep = '{"data": {"deeplink": 1}, "title": ' + "[" * 30000 + "]" * 30000 + ", " + rest
    json_headers = setup.key | {"content-type": "application/json"}
    answer = setup.client.post("/v1/pushes", content=deep, headers=json_headers)
    assert answer.status_code == 400, answer.text
