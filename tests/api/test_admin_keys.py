"""Admin API keys: no key holds `admin` and `audit:read` together, so operators cannot read the
audit routes with an admin key, however keys are issued (PRODUCT.md, SECURITY.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

from gateway.errors import InvalidInput
from gateway.runtime import Runtime
from storage.connections import Connection
from storage.repositories import api_keys

Client = TestClient[Litestar]

BOTH = [["admin", "audit:read"], ["audit:read", "pushes:write", "admin"], ["admin", "audit:read", "admin"]]


def _keys(runtime: Runtime) -> int:
    count: int = runtime.store.data.reader().execute("SELECT count(*) FROM api_keys").fetchone()[0]
    return count


@pytest.mark.parametrize("scopes", BOTH)
def test_a_key_with_admin_and_audit_read_is_refused(
    client: Client, runtime: Runtime, as_key: Callable[..., Headers], scopes: list[str]
) -> None:
    """It was created (201), and then read the audit routes."""
    admin = as_key("admin")
    before = _keys(runtime)
    response = client.post("/v1/admin/keys", json={"name": "both", "scopes": scopes}, headers=admin)
    assert_problem(response, 400, "scopes")
    assert _keys(runtime) == before


def test_the_cli_path_refuses_it_too(runtime: Runtime) -> None:
    """`keys create` calls `create_sync`, which checks the scopes the same way."""
    with pytest.raises(InvalidInput) as refused:
        runtime.api_keys.create_sync("both", ("admin", "audit:read"))
    assert refused.value.field == "scopes"


def test_each_scope_but_audit_read_is_still_given(client: Client, as_key: Callable[..., Headers]) -> None:
    admin = as_key("admin")
    for scopes in (["admin"], ["admin", "pushes:write"], ["campaigns:read", "complaints:write"]):
        response = client.post("/v1/admin/keys", json={"name": "one", "scopes": scopes}, headers=admin)
        assert response.status_code == 201, response.text


@pytest.mark.parametrize("scopes", [["audit:read"], ["audit:read", "campaigns:read"]])
def test_an_admin_key_cannot_issue_an_auditor_key(
    client: Client, runtime: Runtime, as_key: Callable[..., Headers], scopes: list[str]
) -> None:
    """It could (201), and the key it made read every audit route: the operator-auditor
    separation undone in one call. `keys create` on the server still makes them."""
    admin = as_key("admin")
    before = _keys(runtime)
    response = client.post("/v1/admin/keys", json={"name": "ops helper", "scopes": scopes}, headers=admin)
    assert_problem(response, 400, "scopes")
    assert _keys(runtime) == before
    key, _ = runtime.api_keys.create_sync("auditor", ("audit:read",))
    assert key.scopes == ("audit:read",)


def test_a_key_made_with_both_before_is_refused_at_the_audit_routes(
    client: Client, runtime: Runtime, as_key: Callable[..., Headers]
) -> None:
    """A key stored with both scopes before they were refused keeps its admin routes, not the
    audit ones; the refusal is in the access log, as any refused audit call is."""

    def unit(conn: Connection) -> tuple[Any, str]:
        return api_keys.create(conn, name="old", scopes=("admin", "audit:read"), now=runtime.clock())

    key, secret = runtime.store.data.writer.run_sync(unit)
    both = {"Authorization": f"Bearer {secret}"}
    assert_problem(client.get("/v1/audit/ledger/verify", headers=both), 403)
    assert client.get("/v1/admin/policy", headers=both).status_code == 200
    log = client.get("/v1/audit/access-log", headers=as_key("audit:read")).json()["entries"]
    assert [(e["key_id"], e["route"], e["result_count"]) for e in log][:1] == [
        (key.key_id, "/v1/audit/ledger/verify", 0)
    ]


def test_operators_list_every_key_revoked_ones_too_and_never_a_secret(
    client: Client, runtime: Runtime, as_key: Callable[..., Headers]
) -> None:
    admin = as_key("admin")
    made = client.post(
        "/v1/admin/keys", json={"name": "svc", "scopes": ["pushes:write"]}, headers=admin
    ).json()
    assert client.delete(f"/v1/admin/keys/{made['key_id']}", headers=admin).status_code == 204

    answer = client.get("/v1/admin/keys", headers=admin)
    assert answer.status_code == 200, answer.text
    listed = {k["key_id"]: k for k in answer.json()}
    assert listed[made["key_id"]] | {"revoked_at": None} == {
        "key_id": made["key_id"], "name": "svc", "scopes": ["pushes:write"], "created_at": made["created_at"],
        "revoked_at": None,
    }  # fmt: skip
    assert listed[made["key_id"]]["revoked_at"].endswith("Z")
    assert made["api_key"] not in answer.text
    assert_problem(client.get("/v1/admin/keys", headers=as_key("pushes:write")), 403)


@pytest.mark.parametrize(
    "name",
    ["13812345678", "4111 1111 1111 1111", "11010519491231002X", "4111_1111_1111_1111", "138:1234:5678"],
)
def test_a_key_name_holding_personal_data_is_refused(
    client: Client, runtime: Runtime, as_key: Callable[..., Headers], name: str
) -> None:
    """Key names are kept in clear and listed to every admin (SECURITY.md): the name pattern let a
    phone, card or resident id number through (201), where campaign names refuse them."""
    admin = as_key("admin")
    before = _keys(runtime)
    response = client.post("/v1/admin/keys", json={"name": name, "scopes": ["pushes:write"]}, headers=admin)
    assert_problem(response, 400, "name")
    assert _keys(runtime) == before
    with pytest.raises(InvalidInput) as refused:  # `keys create` takes the same path
        runtime.api_keys.create_sync(name, ("pushes:write",))
    assert refused.value.field == "name"
    assert _keys(runtime) == before


@pytest.mark.parametrize("name", ["   ", " "])
def test_a_key_name_of_spaces_alone_is_refused(
    client: Client, runtime: Runtime, as_key: Callable[..., Headers], name: str
) -> None:
    """Listed under a blank name, a key could not be told from another in the list an operator
    reads after a leak."""
    admin = as_key("admin")
    before = _keys(runtime)
    response = client.post("/v1/admin/keys", json={"name": name, "scopes": ["pushes:write"]}, headers=admin)
    assert_problem(response, 400, "name")
    assert _keys(runtime) == before
    made = client.post("/v1/admin/keys", json={"name": " svc b", "scopes": ["pushes:write"]}, headers=admin)
    assert made.status_code == 201, made.text
