"""Data-subject rights: `GET /v1/me/export` (GDPR art. 15/20) and `DELETE /v1/me` (art. 17,
crypto-shredding that leaves the consent ledger verifiable)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import KeySet
from litestar import Litestar
from litestar.testing import TestClient
from support import WEBPUSH_KEYS, readers, scan_bytes, scan_tables

from gateway.runtime import Runtime
from storage import ledger

Client = TestClient[Litestar]
Headers = dict[str, str]
AsUser = Callable[[str], Headers]

ALICE = "alice.wong+test@example.com"
BOB = "+8613812345678"
CAROL = "carol.chen+test@example.com"
NOTICE = "privacy-notice-2026-11"
MARKETING_TOPICS = (
    "promotions",
    "flash_sales",
    "cart_reminders",
    "recommendations",
    "nearby_offers",
    "product_tips",
    "feedback_requests",
)

jose_eddsa = pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")


# -- helpers ----------------------------------------------------------------------------------


def events(runtime: Runtime) -> list[ledger.LedgerEvent]:
    return list(ledger.events(runtime.store.data.reader()))


def row_counts(runtime: Runtime) -> dict[str, int]:
    conn = runtime.store.data.reader()
    return {
        table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
        for table in ("preferences", "consents", "devices", "locations", "ledger")
    }


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def tokens_for(tag: str) -> dict[str, str]:
    """Fake device tokens carrying a unique per-user marker, for leak scans (the apns one in hex,
    as an APNs token is hex digits only)."""
    return {
        "fcm": f"fcm:APA91b-{tag}-k3Yt8pLq2Xw9sVn4",
        "apns": f"7f3a1c9e{tag.encode().hex()}0a6b2d4f8e1c3a5b7d9f0e2c",
        "webhook": f"relay-{tag}-wallet-device-42",
        "webpush": json.dumps(
            {
                "endpoint": f"https://fcm.googleapis.com/fcm/send/{tag}-c1x2y3",
                "keys": WEBPUSH_KEYS,
            }
        ),
    }


def build_up(client: Client, user_id: str, headers: Headers, tag: str) -> dict[str, Any]:
    """Give a user every kind of data the preference center holds; return what was sent."""
    answers = [
        ok(client.put(f"/v1/me/consents/{p}", headers=headers, json={"granted": g, "notice_version": NOTICE}))
        for p, g in (
            ("marketing", True),
            ("personalization", True),
            ("location", True),
            ("personalization", False),
        )
    ]
    ok(
        client.patch(
            "/v1/me/preferences",
            headers=headers,
            json={
                "timezone": "Asia/Shanghai",
                "locale": "zh-CN",
                "topics": {"flash_sales": False},
                "quiet_hours": {"start": "22:30", "end": "07:30"},
                "frequency": {"max_per_week": 1},
            },
        )
    )
    tokens = tokens_for(tag)
    device_ids = {
        platform: ok(
            client.post("/v1/me/devices", headers=headers, json={"platform": platform, "token": token}), 201
        )["device_id"]
        for platform, token in tokens.items()
    }
    location = ok(client.put("/v1/me/location", headers=headers, json={"lat": 31.230416, "lon": 121.473701}))
    return {"answers": answers, "tokens": tokens, "device_ids": device_ids, "location": location}


def fresh_export(ref: str) -> dict[str, Any]:
    return {
        "subject_ref": ref,
        "exported_at": "2026-11-23T10:00:00Z",
        "held": False,
        "preferences": {
            "subject_ref": ref,
            "timezone": "UTC",
            "locale": None,
            "consents": {
                p: {"granted": False, "updated_at": None, "notice_version": None}
                for p in ("marketing", "personalization", "location")
            },
            "topics": {"transactional": True, **dict.fromkeys(MARKETING_TOPICS, False)},
            "quiet_hours": {"start": "21:00", "end": "08:00"},
            "frequency": {"max_per_week": 3},
            "paused_until": {},
        },
        "consent_history": [],
        "receipts": [],
        "devices": [],
        "location": None,
        "complaints": [],
        "notifications": [],
        "mutes": [],
        "events": [],
    }


def assert_holds_nothing(body: dict[str, Any], ref: str) -> None:
    """Equal to a new user's export; any section added later must be empty too."""
    expected = fresh_export(ref)
    assert {k: v for k, v in body.items() if k in expected} == expected
    assert {k: v for k, v in body.items() if k not in expected and v not in ([], {}, None)} == {}


# -- export -----------------------------------------------------------------------------------


def test_export_of_a_new_user_holds_nothing_and_writes_nothing(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    ref = runtime.store.pseudonyms.subject_ref(ALICE)

    assert_holds_nothing(ok(client.get("/v1/me/export", headers=as_user(ALICE))), ref)
    assert runtime.store.directory.status(ref) == "unknown"
    assert row_counts(runtime) == dict.fromkeys(row_counts(runtime), 0)


@jose_eddsa
def test_export_holds_everything_decrypted(client: Client, runtime: Runtime, as_user: AsUser) -> None:
    headers = as_user(ALICE)
    sent = build_up(client, ALICE, headers, "Aw7EXPORT")
    build_up(client, CAROL, as_user(CAROL), "Cc7OTHER")

    response = client.get("/v1/me/export", headers=headers)

    body = ok(response)
    ref = runtime.store.pseudonyms.subject_ref(ALICE)
    assert body["subject_ref"] == ref
    assert body["held"] is True
    assert body["exported_at"] == "2026-11-23T10:00:00Z"
    assert body["preferences"] == ok(client.get("/v1/me/preferences", headers=headers))
    assert body["preferences"]["timezone"] == "Asia/Shanghai"
    assert body["preferences"]["quiet_hours"] == {"start": "22:30", "end": "07:30"}
    assert body["consent_history"] == ok(client.get("/v1/me/consents/history", headers=headers))
    assert [(h["purpose"], h["granted"]) for h in body["consent_history"]] == [
        ("marketing", True),
        ("personalization", True),
        ("location", True),
        ("personalization", False),
    ]
    assert body["receipts"] == sent["answers"]
    keys = KeySet.import_key_set(ok(client.get("/.well-known/jwks.json")))
    for answer in body["receipts"]:
        assert (
            json.loads(jws.deserialize_compact(answer["jws"], keys, algorithms=["EdDSA"]).payload)
            == answer["receipt"]
        )
    assert {d["platform"]: d["token"] for d in body["devices"]} == sent["tokens"]
    assert {d["platform"]: d["device_id"] for d in body["devices"]} == sent["device_ids"]
    assert {d["status"] for d in body["devices"]} == {"active"}
    assert (
        body["location"]
        == sent["location"]
        == {
            "geohash": "wtw3sj",
            "precision": 6,
            "updated_at": "2026-11-23T10:00:00Z",
        }
    )
    assert "Cc7OTHER" not in response.text
    assert ALICE not in response.text


# -- erasure ----------------------------------------------------------------------------------


def test_erasure_forgets_the_user_and_keeps_the_ledger_verifiable(
    client: Client, runtime: Runtime, as_user: AsUser, data_dir: Path
) -> None:
    erased = {ALICE: "Aw7ERASE", BOB: "Bp7ERASE"}
    for user, tag in erased.items():
        build_up(client, user, as_user(user), tag)
    carol = as_user(CAROL)
    carol_sent = build_up(client, CAROL, carol, "Cc7KEEP")
    carol_before = ok(client.get("/v1/me/export", headers=carol))
    ledger_before = events(runtime)
    assert ledger.verify(runtime.store.data.reader()).ok
    erased_ids = set()
    for user in erased:
        key = runtime.store.directory.resolve(runtime.store.pseudonyms.subject_ref(user))
        assert key is not None
        erased_ids.add(key.subject_id)

    for user in erased:
        response = client.delete("/v1/me", headers=as_user(user))
        assert response.status_code == 204, response.text
        assert response.content == b""

    for user in erased:
        ref = runtime.store.pseudonyms.subject_ref(user)
        headers = as_user(user)
        assert runtime.store.directory.status(ref) == "erased"
        assert_holds_nothing(ok(client.get("/v1/me/export", headers=headers)), ref)
        assert ok(client.get("/v1/me/preferences", headers=headers)) == fresh_export(ref)["preferences"]
        assert ok(client.get("/v1/me/consents/history", headers=headers)) == []
        assert ok(client.get("/v1/me/devices", headers=headers)) == []
        assert runtime.store.directory.status(ref) == "erased"

    check = ledger.verify(runtime.store.data.reader())
    assert check.ok
    after = events(runtime)
    assert after[: len(ledger_before)] == ledger_before
    assert len(after) - len(ledger_before) <= len(erased)
    assert erased_ids <= {e.subject_id for e in ledger_before}
    assert runtime.store.directory.refs_for(erased_ids) == {}

    counts = row_counts(runtime)
    assert counts["devices"] == len(carol_sent["tokens"])
    assert counts["locations"] == 1
    assert ok(client.get("/v1/me/export", headers=carol)) == carol_before

    needles = [ALICE, BOB, "wtw3sj"]
    for tag in erased.values():
        needles += [tag, *tokens_for(tag).values()]
    # Column by column as SQLite holds them (the files' bytes are encrypted page by page, so their
    # scan only guards against a file written in the clear), then the files.
    assert scan_tables(readers(runtime), needles) == {}
    runtime.store.data.checkpoint()
    assert scan_bytes(data_dir, needles) == {}
    assert {p.name for p in data_dir.iterdir()} >= {"gateway.db", "subjects.db"}


def test_an_erased_user_who_comes_back_starts_fresh(
    client: Client, runtime: Runtime, as_user: AsUser, clock: Any
) -> None:
    headers = as_user(ALICE)
    ref = runtime.store.pseudonyms.subject_ref(ALICE)
    build_up(client, ALICE, headers, "Aw7RETURN")
    old_key = runtime.store.directory.resolve(ref)
    assert old_key is not None
    assert client.delete("/v1/me", headers=headers).status_code == 204
    assert runtime.store.directory.status(ref) == "erased"
    clock.advance(days=1)

    answer = ok(
        client.put(
            "/v1/me/consents/marketing", headers=headers, json={"granted": True, "notice_version": "n-2027"}
        )
    )

    assert runtime.store.directory.status(ref) == "active"
    new_key = runtime.store.directory.resolve(ref)
    assert new_key is not None
    assert new_key.subject_id != old_key.subject_id
    state = ok(client.get("/v1/me/preferences", headers=headers))
    assert state["timezone"] == "UTC"
    assert state["locale"] is None
    assert state["quiet_hours"] == {"start": "21:00", "end": "08:00"}
    assert state["frequency"] == {"max_per_week": 3}
    assert {p: c["granted"] for p, c in state["consents"].items()} == {
        "marketing": True,
        "personalization": False,
        "location": False,
    }
    assert state["topics"]["flash_sales"] is True
    assert state["topics"]["nearby_offers"] is False
    export = ok(client.get("/v1/me/export", headers=headers))
    assert export["held"] is True
    assert export["devices"] == []
    assert export["location"] is None
    assert export["receipts"] == [answer]
    [entry] = export["consent_history"]
    assert (entry["purpose"], entry["granted"], entry["notice_version"]) == ("marketing", True, "n-2027")
    assert ok(client.get("/v1/me/devices", headers=headers)) == []
    assert ledger.verify(runtime.store.data.reader()).ok


def test_erasure_is_idempotent_and_a_no_op_for_strangers(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    assert client.delete("/v1/me", headers=as_user(CAROL)).status_code == 204
    assert row_counts(runtime) == dict.fromkeys(row_counts(runtime), 0)

    headers = as_user(ALICE)
    build_up(client, ALICE, headers, "Aw7TWICE")
    assert client.delete("/v1/me", headers=headers).status_code == 204
    after_first = events(runtime)
    assert client.delete("/v1/me", headers=headers).status_code == 204

    assert events(runtime) == after_first
    assert runtime.store.directory.status(runtime.store.pseudonyms.subject_ref(ALICE)) == "erased"
    assert ledger.verify(runtime.store.data.reader()).ok


def test_erasure_refuses_api_keys_and_bad_tokens(
    client: Client, runtime: Runtime, as_user: AsUser, as_key: Callable[..., Headers]
) -> None:
    headers = as_user(ALICE)
    build_up(client, ALICE, headers, "Aw7GUARD")
    before = ok(client.get("/v1/me/export", headers=headers))

    assert client.delete("/v1/me", headers=as_key("admin")).status_code == 403
    assert client.delete("/v1/me", headers={"Authorization": "Bearer x.y.z"}).status_code == 401
    assert client.delete("/v1/me").status_code == 401

    assert ok(client.get("/v1/me/export", headers=headers)) == before
    assert runtime.store.directory.status(runtime.store.pseudonyms.subject_ref(ALICE)) == "active"
