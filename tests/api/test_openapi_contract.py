"""The OpenAPI document at `/schema` is the contract (README): it must say what the code does,
not only the types. Each test here reads the document as served and checks one thing a client
could not learn from it before: the reason codes an answer's `reasons` can hold, what a field's
default and restrictions are, which errors a route gives, and who may call it."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from litestar import Litestar, get
from litestar.exceptions import ImproperlyConfiguredException
from litestar.testing import TestClient
from test_authz_matrix import fill

from gateway.guards import requires_scope
from gateway.routes.access import AccessInTheDocument
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
    assert (notice["pattern"], notice["maxLength"]) == ("^[A-Za-z0-9._:+-]+$(?!\\n)", 64)
    description = notice.get("description", "")
    assert "letters, digits" in description
    assert "personal data" in description  # why: it is kept in clear, through erasure


def test_variant_says_which_characters_and_why(document: Document) -> None:
    variant = field(document, "PushCreate", "variant")
    assert (variant["pattern"], variant["maxLength"]) == ("^[A-Za-z0-9_-]+$(?!\\n)", 32)
    description = variant.get("description", "")
    assert "letters, digits" in description
    assert "campaign_id" in description
    assert "personal data" in description


def patterns(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return own + [found for value in node.values() for found in patterns(value)]
    if isinstance(node, list):
        return [found for value in node for found in patterns(value)]
    return []


def test_no_pattern_lets_a_trailing_newline_through(document: Document) -> None:
    """msgspec and Litestar check a pattern with `re.search`, where `$` also matches before a
    final newline: `"A\\n"` passed `^[A-Za-z0-9_-]+$`. `(?!\\n)` after it holds in Python and in
    the document's ECMA-262 dialect alike."""
    found = patterns(document)
    assert len(found) > 10
    assert [p for p in found if p.endswith("$")] == []


# -- error answers ------------------------------------------------------------------------------

PUBLIC = {"/healthz", "/readyz", "/metrics", "/.well-known/jwks.json"}
HEALTH = {"/healthz", "/readyz"}  # their 503 is the health answer itself, `checks` saying why
ERROR = "#/components/schemas/ErrorRead"


def operations(document: Document) -> list[tuple[str, str, Document]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def schema_of(response: Document) -> Document:
    found: Document = response["content"]["application/json"]["schema"]
    return found


def test_every_error_answer_has_the_one_error_shape(document: Document) -> None:
    """Before, only 400 was declared, with Litestar's generic schema (`extra`: any object)."""
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) >= 400 and not (path in HEALTH and status == "503"):
                assert schema_of(response) == {"$ref": ERROR}, f"{method} {path} {status}"
    error = component(document, "ErrorRead")
    assert error["required"] == ["detail", "status_code"]
    assert error["properties"]["extra"]["oneOf"][0]["items"] == {"$ref": "#/components/schemas/ErrorField"}
    # What an item holds, and no more: a `source` was documented that no answer ever carried.
    assert set(component(document, "ErrorField")["properties"]) == {"key", "message"}


def test_every_route_behind_a_credential_declares_401_403_and_503(document: Document) -> None:
    for method, path, operation in operations(document):
        statuses = set(operation["responses"])
        assert "503" in statuses, f"{method} {path}"
        if path not in PUBLIC:
            assert {"401", "403"} <= statuses, f"{method} {path}"


@pytest.mark.parametrize(
    ("method", "path", "status", "words"),
    [
        ("PUT", "/v1/me/location", "409", "`location` consent"),
        ("PUT", "/v1/admin/policy", "412", "If-Match"),
        ("POST", "/v1/pushes", "422", "idempotency_key"),
        ("POST", "/v1/pushes", "404", "campaign_id"),
        ("POST", "/v1/pushes/batch", "422", "idempotency_key"),
        ("POST", "/v1/me/devices", "409", "active devices"),
        ("DELETE", "/v1/admin/keys/{key_id}", "409", "last live key"),
        ("DELETE", "/v1/admin/keys/{key_id}", "404", "API key"),
        ("POST", "/v1/complaints/{complaint_id}/resolve", "409", "`acknowledged`"),
        ("POST", "/v1/campaigns/{campaign_id}/resume", "403", "complaint-rate rule"),
        ("GET", "/v1/audit/ledger/checkpoint", "409", "ledger does not verify"),
        ("GET", "/v1/audit/subjects/{subject_ref}", "404", "subject_ref"),
        ("PATCH", "/v1/me/preferences", "413", "larger"),
    ],
)
def test_a_route_declares_the_refusals_its_code_gives(
    document: Document, method: str, path: str, status: str, words: str
) -> None:
    response = document["paths"][path][method.lower()]["responses"].get(status)
    assert response is not None, f"{method} {path} does not declare {status}"
    assert words in response["description"]


def test_the_refusals_given_are_the_ones_declared(
    client: Client, document: Document, as_key: Any, as_user: Any
) -> None:
    """The table above, from the other side: real refusals, each declared on its route."""
    admin, user, service = as_key("admin"), as_user("u1"), as_key("pushes:write")
    push = {"idempotency_key": "k1", "user_id": "u1", "topic": "promotions", "title": "t", "body": "b"}
    elsewhere = {**push, "idempotency_key": "k2", "campaign_id": "cmp_" + "0" * 16}
    stale = admin | {"If-Match": '"9"'}
    given = [
        ("PUT", "/v1/me/location", client.put("/v1/me/location", json={"lat": 1, "lon": 2}, headers=user)),
        ("PUT", "/v1/admin/policy", client.put("/v1/admin/policy", json={}, headers=stale)),
        ("POST", "/v1/pushes", client.post("/v1/pushes", json=push, headers=service)),
        ("POST", "/v1/pushes", client.post("/v1/pushes", json={**push, "body": "c"}, headers=service)),
        ("POST", "/v1/pushes", client.post("/v1/pushes", json=elsewhere, headers=service)),
        ("GET", "/v1/me/preferences", client.get("/v1/me/preferences")),
        ("GET", "/v1/me/preferences", client.get("/v1/me/preferences", headers=admin)),
        ("DELETE", "/v1/admin/keys/{key_id}", client.delete("/v1/admin/keys/nope", headers=admin)),
    ]
    statuses = []
    for method, path, response in given:
        statuses.append(response.status_code)
        declared = document["paths"][path][method.lower()]["responses"]
        assert str(response.status_code) in declared, f"{method} {path}: {response.text}"
    assert statuses == [409, 412, 200, 422, 404, 401, 403, 404]


# -- who may call each route ------------------------------------------------------------------

SCOPES = ("pushes:write", "campaigns:write", "campaigns:read", "complaints:write", "audit:read", "admin")


@pytest.mark.parametrize(
    ("method", "path", "security", "words"),
    [
        ("GET", "/v1/me/preferences", [{"userToken": []}], "Needs a user token"),
        ("PUT", "/v1/me/location", [{"userToken": []}], "Needs a user token"),
        ("POST", "/v1/pushes", [{"apiKey": ["pushes:write"]}], "Needs an API key with scope `pushes:write`."),
        (
            "GET", "/v1/pushes/{push_id}", [{"apiKey": ["pushes:write"]}, {"apiKey": ["campaigns:read"]}],
            "Needs an API key with scope `pushes:write` or `campaigns:read`.",
        ),
        (
            "POST", "/v1/campaigns/{campaign_id}/resume",
            [{"apiKey": ["campaigns:write"]}, {"apiKey": ["admin"]}],
            "Needs an API key with scope `campaigns:write` or `admin`.",
        ),
        (
            "GET", "/v1/audit/decisions", [{"apiKey": ["audit:read"]}],
            "Needs an API key with scope `audit:read`, never one that also holds `admin`.",
        ),
        ("PUT", "/v1/admin/policy", [{"apiKey": ["admin"]}], "Needs an API key with scope `admin`."),
    ],
)  # fmt: skip
def test_an_operation_names_the_credential_and_scope_it_needs(
    document: Document, method: str, path: str, security: list[Document], words: str
) -> None:
    """Before, no operation said which scope or role it needs: all inherited `bearer`, any token."""
    operation = document["paths"][path][method.lower()]
    assert operation["security"] == security
    assert operation["description"].startswith(words)


def test_the_two_credentials_are_two_schemes(document: Document) -> None:
    schemes = document["components"]["securitySchemes"]
    assert set(schemes) == {"userToken", "apiKey"}
    assert {s["type"] for s in schemes.values()} == {"http"}
    assert all(scope in schemes["apiKey"]["description"] for scope in SCOPES)


def test_what_the_document_says_is_what_the_guards_do(
    client: Client, document: Document, as_key: Any, as_user: Any
) -> None:
    """For every operation behind a credential: each credential its security requirements name gets
    past the guards (any answer but 401 or 403), and a key with any one other scope is refused.
    The requirements are read off the guards Litestar runs, so this holds by construction; the test
    keeps it so should the derivation break."""
    user = as_user("doc-user")
    keys = {scope: as_key(scope) for scope in SCOPES}
    checked = 0
    for method, path, operation in operations(document):
        if path in PUBLIC:
            continue
        admitted = {scope for requirement in operation["security"] for scope in requirement.get("apiKey", [])}
        for_users = operation["security"] == [{"userToken": []}]
        assert for_users or admitted, f"{method} {path}: {operation['security']}"
        url = fill(path)
        body: dict[str, object] | None = {} if method in {"POST", "PUT", "PATCH"} else None

        def call(headers: dict[str, str], url: str = url, method: str = method, body: Any = body) -> int:
            status: int = client.request(method, url, json=body, headers=headers).status_code
            return status

        allowed = [user] if for_users else [keys[scope] for scope in sorted(admitted)]
        refused = [keys[scope] for scope in SCOPES if scope not in admitted]
        for headers in allowed:
            assert call(headers) not in {401, 403}, f"{method} {path} refused a credential it names"
        for headers in refused:
            assert call(headers) == 403, f"{method} {path} admitted a credential it does not name"
        checked += 1
    assert checked >= 40


def test_a_guard_the_document_cannot_describe_stops_the_app() -> None:
    """A route guarded other than through gateway.routes.access would go undescribed: refused."""

    @get("/x", guards=[requires_scope("pushes:write")])
    async def undeclared() -> None:
        return None

    with pytest.raises(ImproperlyConfiguredException, match=r"gateway\.routes\.access"):
        Litestar([undeclared], plugins=[AccessInTheDocument()])


# -- unknown members -----------------------------------------------------------------------------


def test_a_body_that_refuses_unknown_members_says_so(
    document: Document, client: Client, as_user: Any
) -> None:
    """The document allowed any other member, which the server answers 400: a client built from
    it, or a fuzzer, sent such bodies. Every body that refuses them says `additionalProperties:
    false`, and the refusal is the server's as well as the document's."""
    closed = {
        name
        for name, schema in document["components"]["schemas"].items()
        if schema.get("additionalProperties") is False
    }
    assert {"PushCreate", "BatchCreate", "ConsentUpdate", "PreferencesUpdate", "QuietHours", "Near"} <= closed
    assert "PushAnswer" not in closed  # an answer may gain members
    answer = client.put(
        "/v1/me/consents/marketing",
        json={"granted": True, "notice_version": "v1", "extra": 1},
        headers=as_user("alice"),
    )
    assert (answer.status_code, answer.json()["extra"][0]["key"]) == (400, "extra")
