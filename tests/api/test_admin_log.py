"""The admin log (`GET /v1/audit/admin-log`): who created or revoked an API key, rotated the
encryption key, changed the policy or paused and resumed a campaign. Before it, an admin key
could make another admin key or revoke a service's, and nothing said later who had."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlcipher3
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

from gateway.runtime import Runtime
from storage.connections import Connection

Client = TestClient[Litestar]
KEY_NAME = "Hana Kowalczyk deploy key"  # an operator's free text: never in the log


def key_id(headers: Headers) -> str:
    return headers["Authorization"].removeprefix("Bearer cgw_").split("_")[0]


def admin_log(client: Client, auditor: Headers, **params: Any) -> dict[str, Any]:
    answer = client.get("/v1/audit/admin-log", headers=auditor, params=params)
    assert answer.status_code == 200, answer.text
    page: dict[str, Any] = answer.json()
    return page


def test_each_admin_change_names_who_made_it(
    client: Client, runtime: Runtime, as_key: Callable[..., Headers]
) -> None:
    admin, marketer, auditor = as_key("admin"), as_key("campaigns:write"), as_key("audit:read")
    start = len(admin_log(client, auditor)["entries"])  # the fixture's own keys, made by `cli`
    made = client.post("/v1/admin/keys", json={"name": KEY_NAME, "scopes": ["pushes:write"]}, headers=admin)
    assert made.status_code == 201, made.text
    new_key = made.json()["key_id"]
    assert client.delete(f"/v1/admin/keys/{new_key}", headers=admin).status_code == 204
    policy = client.put("/v1/admin/policy", json={"max_per_week": 2}, headers=admin)
    assert policy.status_code == 200, policy.text
    rotated = client.post("/v1/admin/keys/rotate-encryption", headers=admin)
    assert rotated.status_code == 200, rotated.text
    campaign = client.post("/v1/campaigns", json={"name": "Winter", "topic": "promotions"}, headers=marketer)
    cid = campaign.json()["campaign_id"]
    for action in ("pause", "pause", "resume", "resume"):  # the repeats change nothing
        assert client.post(f"/v1/campaigns/{cid}/{action}", headers=marketer).status_code == 200

    page = admin_log(client, auditor)
    entries = [(e["actor"], e["action"], e["target"], e["detail"]) for e in page["entries"][start:]]
    by_admin, by_marketer = f"key:{key_id(admin)}", f"key:{key_id(marketer)}"
    assert entries == [
        (by_admin, "api_key.created", new_key, {"scopes": ["pushes:write"]}),
        (by_admin, "api_key.revoked", new_key, {}),
        (by_admin, "policy.changed", str(policy.json()["version"]), {}),
        (by_admin, "encryption_key.rotated", rotated.json()["active_kek_id"], {"rewrapped": 0}),
        (by_marketer, "campaign.paused", cid, {}),
        (by_marketer, "campaign.resumed", cid, {"lifted": "by hand"}),
    ]
    assert page["entries"][start]["at"].endswith("Z")
    assert KEY_NAME not in client.get("/v1/audit/admin-log", headers=auditor).text
    # The fixture's keys were made as `keys create` makes them: on the server, by `cli`.
    first = page["entries"][0]
    assert (first["actor"], first["action"]) == ("cli", "api_key.created")


def test_refused_changes_log_nothing(
    client: Client, runtime: Runtime, as_key: Callable[..., Headers]
) -> None:
    admin, auditor = as_key("admin"), as_key("audit:read")
    before = admin_log(client, auditor)["entries"]
    assert_problem(client.delete("/v1/admin/keys/0123456789abcdef", headers=admin), 404)
    assert_problem(client.delete(f"/v1/admin/keys/{key_id(admin)}", headers=admin), 409)  # the last admin
    assert_problem(client.put("/v1/admin/policy", json={"max_per_week": -1}, headers=admin), 400)
    assert admin_log(client, auditor)["entries"] == before


def test_the_log_pages_and_reading_it_is_itself_logged(
    client: Client, runtime: Runtime, as_key: Callable[..., Headers]
) -> None:
    admin, auditor = as_key("admin"), as_key("audit:read")
    for version in range(3):
        assert (
            client.put("/v1/admin/policy", json={"max_per_week": version}, headers=admin).status_code == 200
        )
    whole = admin_log(client, auditor)["entries"]
    first = admin_log(client, auditor, limit=2)
    rest = admin_log(client, auditor, limit=100, cursor=first["next_cursor"])
    assert first["entries"] + rest["entries"] == whole
    assert rest["next_cursor"] is None
    assert_problem(client.get("/v1/audit/admin-log", headers=admin), 403)  # operators do not audit themselves

    logged = client.get("/v1/audit/access-log", headers=auditor, params={"limit": 1000}).json()["entries"]
    reads = [e for e in logged if e["route"] == "/v1/audit/admin-log"]
    assert [e["result_count"] for e in reads][:2] == [len(whole), 2]


def test_the_log_is_append_only(runtime: Runtime, as_key: Callable[..., Headers]) -> None:
    as_key("admin")
    for statement in ("UPDATE admin_log SET actor = 'key:someone-else'", "DELETE FROM admin_log"):

        def change(conn: Connection, sql: str = statement) -> None:
            conn.execute(sql)

        with pytest.raises(sqlcipher3.DatabaseError, match="append-only"):
            runtime.store.data.writer.run_sync(change)


def test_a_key_encryption_key_rotation_is_logged_for_the_operator(
    client: Client, as_key: Callable[..., Headers], caplog: pytest.LogCaptureFixture
) -> None:
    """A security event: it was in the admin log's table only, and the process log, which an
    operator watches and alerts on, had its request line alone (a review of logs and metrics)."""
    admin = as_key("admin")
    with caplog.at_level("INFO", logger="gateway"):
        rotated = client.post("/v1/admin/keys/rotate-encryption", headers=admin)
    assert rotated.status_code == 200, rotated.text
    said = [r for r in caplog.records if r.getMessage() == "key-encryption key rotated"]
    assert [(r.levelname, r.kek, r.rewrapped, r.actor) for r in said] == [  # type: ignore[attr-defined]
        ("WARNING", rotated.json()["active_kek_id"], 0, f"key:{key_id(admin)}")
    ]
