"""Audit API, the accountable half: signed exports verified with an independent JOSE library and
by the CLI offline, the access log of every audit call, and who may call the Audit API at all."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock, Headers
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jws
from joserfc.jwk import KeySet
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import TestClient
from support import assert_problem

from gateway.audit_access_log import NOT_LOGGED
from gateway.runtime import Runtime
from gateway.services.export_check import verify_export
from storage import ledger, merkle

Client = TestClient[Litestar]
Json = dict[str, Any]
CLI = Path(sys.executable).with_name("consent-gateway")

jose_eddsa = pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")


def grow(client: Client, headers: Headers, n: int, clock: FakeClock) -> None:
    """n consent events, one hour apart."""
    for i in range(n):
        response = client.put(
            "/v1/me/consents/marketing",
            headers=headers,
            json={"granted": i % 2 == 0, "notice_version": f"v{i}"},
        )
        assert response.status_code == 200, response.text
        clock.advance(hours=1)


def key_id(headers: Headers) -> str:
    return headers["Authorization"].removeprefix("Bearer cgw_").split("_")[0]


def b64(data: str) -> bytes:
    return base64.b64decode(data)


# -- export --------------------------------------------------------------------------------------


@jose_eddsa
def test_export_verifies_offline_with_the_served_jwks(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], as_key: Callable[..., Headers],
    clock: FakeClock,
) -> None:  # fmt: skip
    auditor = as_key("audit:read")
    alice = as_user("alice")
    grow(client, alice, 5, clock)  # 10:00 ... 14:00
    keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").json())

    whole = client.get("/v1/audit/export", headers=auditor)
    assert whole.status_code == 200, whole.text
    token = whole.json()["jws"]
    assert jws.extract_compact(token.encode()).protected["alg"] == "EdDSA"
    bundle = json.loads(jws.deserialize_compact(token, keys, algorithms=["EdDSA"]).payload)
    assert bundle["type"] == "consent-gateway/audit-export"
    events, checkpoint = bundle["events"], bundle["checkpoint"]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert checkpoint["tree_size"] == 5
    assert checkpoint == client.get("/v1/audit/ledger/checkpoint", headers=auditor).json()
    assert (
        json.loads(jws.deserialize_compact(checkpoint["jws"], keys, algorithms=["EdDSA"]).payload)[
            "tree_size"
        ]
        == 5
    )
    stored = list(ledger.events(runtime.store.data.reader()))
    prev = ledger.GENESIS
    for wire, event in zip(events, stored, strict=True):
        record = ledger.canonical_bytes(
            wire["seq"], wire["at"], wire["subject_id"], wire["kind"], wire["purpose"],
            wire["notice_version"], wire["actor"], wire["source"], b64(wire["body"]), b64(wire["prev_hash"]),
        )  # fmt: skip
        assert hashlib.sha256(record).digest() == b64(wire["hash"]) == event.hash
        assert b64(wire["prev_hash"]) == prev
        prev = event.hash
    leaves = [merkle.leaf_hash(b64(e["hash"])) for e in events]
    assert merkle.root_hash(leaves).hex() == checkpoint["root_hash"]

    window = client.get(
        "/v1/audit/export",
        headers=auditor,
        params={"from": "2026-11-23T11:00:00Z", "to": "2026-11-23T13:00:00Z"},
    )
    part = json.loads(jws.deserialize_compact(window.json()["jws"], keys, algorithms=["EdDSA"]).payload)
    assert [e["seq"] for e in part["events"]] == [2, 3]
    assert (part["from"], part["to"]) == ("2026-11-23T11:00:00Z", "2026-11-23T13:00:00Z")
    head = client.get("/v1/audit/export", headers=auditor, params={"to": "2026-11-23T12:00:00Z"}).json()[
        "jws"
    ]
    prefix = json.loads(jws.deserialize_compact(head, keys, algorithms=["EdDSA"]).payload)
    assert [e["seq"] for e in prefix["events"]] == [1, 2]
    assert merkle.verify_consistency(
        2, 5, merkle.root_hash(leaves[:2]), bytes.fromhex(prefix["checkpoint"]["root_hash"]),
        [bytes.fromhex(h) for h in prefix["consistency_proof"]],
    )  # fmt: skip


def test_an_export_of_any_window_checks_against_the_signed_root(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], as_key: Callable[..., Headers],
    clock: FakeClock,
) -> None:  # fmt: skip
    """Regression: only an export starting at seq 1 was checked against the checkpoint, and a
    window's verification said `ok` without that check. The export now carries the tree of the
    events before its first (`prefix`), from which its events give the root at their last."""
    auditor = as_key("audit:read")
    grow(client, as_user("alice"), 7, clock)  # 10:00 ... 16:00, seqs 1 to 7
    keys = runtime.signer.public_keys()
    token = client.get(
        "/v1/audit/export",
        headers=auditor,
        params={"from": "2026-11-23T13:00:00Z", "to": "2026-11-23T15:00:00Z"},
    ).json()["jws"]
    report = verify_export(token, keys)
    assert (report.ok, report.events, report.problem) == (True, 2, None)
    assert "checkpoint root" in report.checked

    # Checked from the wire with RFC 6962 alone: the 3 leaves before seq 4 tile as 2 + 1.
    bundle = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    stored = [merkle.leaf_hash(e.hash) for e in ledger.events(runtime.store.data.reader())]
    assert bundle["prefix"] == [merkle.root_hash(stored[:2]).hex(), stored[2].hex()]
    root = merkle.root_hash(stored[:5])
    proof = [bytes.fromhex(h) for h in bundle["consistency_proof"]]
    assert merkle.verify_consistency(5, 7, root, bytes.fromhex(bundle["checkpoint"]["root_hash"]), proof)

    # A prefix that is not the ledger's does not check, though the export's own chain holds.
    forged = runtime.signer.sign(bundle | {"prefix": [bytes(32).hex(), stored[2].hex()]})
    refused = verify_export(forged, keys)
    assert (refused.ok, refused.problem) == (False, "events do not match the checkpoint's root")
    assert "hash chain" in refused.checked
    assert verify_export(runtime.signer.sign(bundle | {"prefix": []}), keys).ok is False


def cli(data_dir: Path, *args: str) -> subprocess.Popen[str]:
    """The venv's `consent-gateway audit ...`, started (each start costs seconds of imports)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGW_")}
    command = [str(CLI), "audit", *args, "--data-dir", str(data_dir)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout, stderr


def test_cli_export_and_offline_verify(
    client: Client, as_user: Callable[[str], Headers], clock: FakeClock, data_dir: Path, tmp_path: Path
) -> None:
    grow(client, as_user("alice"), 4, clock)
    out, forged_out = tmp_path / "export.jws", tmp_path / "forged.jws"

    window = ("--from", "2026-11-23T00:00:00Z", "--to", "2026-11-24T00:00:00Z")
    code, _, stderr = finished(cli(data_dir, "export", *window, "--out", str(out)))
    assert code == 0, stderr
    assert "wrote 4 events" in stderr
    assert out.stat().st_mode & 0o077 == 0
    header, payload, signature = out.read_text().strip().split(".")
    bundle = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    bundle["events"][1]["notice_version"] = "rewritten"
    forged = base64.urlsafe_b64encode(json.dumps(bundle).encode()).rstrip(b"=").decode()
    forged_out.write_text(f"{header}.{forged}.{signature}\n")

    good, bad = (
        cli(data_dir, "verify", "--export", str(out)),
        cli(data_dir, "verify", "--export", str(forged_out)),
    )
    code, stdout, stderr = finished(good)
    assert code == 0, stdout + stderr
    report = json.loads(stdout)
    assert (report["ok"], report["events"]) == (True, 4)
    assert report["checked"] == ["signature", "checkpoint signature", "hash chain", "checkpoint root"]
    code, stdout, _ = finished(bad)
    assert code == 1
    assert json.loads(stdout)["ok"] is False


def test_cli_verifies_an_export_with_only_the_published_jwks(
    client: Client, as_user: Callable[[str], Headers], as_key: Callable[..., Headers], clock: FakeClock,
    tmp_path: Path,
) -> None:  # fmt: skip
    """An auditor holds the export and the JWKS, never the key store or the data dir."""
    grow(client, as_user("alice"), 3, clock)
    export, jwks = tmp_path / "export.jws", tmp_path / "jwks.json"
    export.write_text(client.get("/v1/audit/export", headers=as_key("audit:read")).json()["jws"] + "\n")
    jwks.write_text(client.get("/.well-known/jwks.json").text)
    other, garbage = tmp_path / "other.json", tmp_path / "garbage.json"
    stranger = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    x = base64.urlsafe_b64encode(stranger).decode().rstrip("=")
    kid = json.loads(jwks.read_text())["keys"][0]["kid"]  # a borrowed kid does not make it our key
    other.write_text(json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid}]}))
    garbage.write_text('{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}')
    short = tmp_path / "short.json"
    short.write_text('{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]}')
    nowhere = tmp_path / "no-data-dir"

    started = {
        name: cli(nowhere, "verify", "--export", str(export), "--jwks", str(path))
        for name, path in (("good", jwks), ("other", other), ("garbage", garbage), ("short", short))
    }
    code, stdout, stderr = finished(started["good"])
    assert code == 0, stdout + stderr
    assert json.loads(stdout)["checked"] == [
        "signature",
        "checkpoint signature",
        "hash chain",
        "checkpoint root",
    ]
    code, stdout, _ = finished(started["other"])
    assert code == 1
    assert "not ours" in json.loads(stdout)["problem"]
    code, stdout, stderr = finished(started["garbage"])
    assert (code, stdout) == (2, "")
    assert "no-data-dir" not in stderr
    assert "not a JWK set with an Ed25519 key" in stderr
    code, stdout, stderr = finished(started["short"])
    assert (code, stdout) == (2, "")
    # It names the JWK's `x`, not the key store's field an auditor has never seen.
    assert "an Ed25519 JWK's `x` is 32 bytes, not 3" in stderr
    assert "retired_signing_keys" not in stderr
    assert not nowhere.exists()  # nothing created, no key store read


# -- access log ----------------------------------------------------------------------------------


def test_every_audit_call_is_logged_including_refused_ones(
    client: Client, as_user: Callable[[str], Headers], as_key: Callable[..., Headers], clock: FakeClock
) -> None:
    """The auditor's own calls, answered or refused. A key without `audit:read` refused with 403 is
    logged too (it once was not, on purpose; the spec says every call is): see the next test."""
    auditor = as_key("audit:read")
    grow(client, as_user("alice"), 3, clock)
    ref = client.get("/v1/me/preferences", headers=as_user("alice")).json()["subject_ref"]
    calls: list[tuple[str, Json, int, str, Json, int]] = [
        ("/v1/audit/consent-events", {"purpose": "marketing", "limit": 2}, 200,
         "/v1/audit/consent-events", {"purpose": "marketing", "limit": "2"}, 2),
        (f"/v1/audit/subjects/{ref}", {}, 200, "/v1/audit/subjects/{subject_ref}", {"subject_ref": ref}, 3),
        ("/v1/audit/decisions", {"outcome": "rejected"}, 200,
         "/v1/audit/decisions", {"outcome": "rejected"}, 0),
        ("/v1/audit/complaints", {}, 200, "/v1/audit/complaints", {}, 0),
        ("/v1/audit/ledger/verify", {}, 200, "/v1/audit/ledger/verify", {}, 3),
        ("/v1/audit/ledger/checkpoint", {}, 200, "/v1/audit/ledger/checkpoint", {}, 1),
        ("/v1/audit/ledger/proof/inclusion", {"seq": 1, "size": 3}, 200,
         "/v1/audit/ledger/proof/inclusion", {"seq": "1", "size": "3"}, 1),
        ("/v1/audit/ledger/proof/consistency", {"from": 1, "to": 3}, 200,
         "/v1/audit/ledger/proof/consistency", {"from": "1", "to": "3"}, 1),
        ("/v1/audit/export", {}, 200, "/v1/audit/export", {}, 3),
        ("/v1/audit/consent-events", {"limit": 5000, "email": "a@b.c"}, 400,
         "/v1/audit/consent-events", {"limit": "5000"}, 0),
        ("/v1/audit/ledger/proof/inclusion", {"seq": 9, "size": 3}, 400,
         "/v1/audit/ledger/proof/inclusion", {"seq": "9", "size": "3"}, 0),
        (f"/v1/audit/subjects/sub_{'a' * 52}", {}, 404,
         "/v1/audit/subjects/{subject_ref}", {"subject_ref": f"sub_{'a' * 52}"}, 0),
        ("/v1/audit/access-log", {}, 200, "/v1/audit/access-log", {}, 12),
    ]  # fmt: skip
    for path, params, status, *_ in calls:
        assert client.get(path, headers=auditor, params=params).status_code == status, path
    assert client.get("/v1/audit/ledger/verify").status_code == 401  # names nobody: not logged

    entries = client.get("/v1/audit/access-log", headers=auditor).json()["entries"]
    assert len(entries) == len(calls)
    for entry, (_, _, _, route, filters, count) in zip(entries, calls, strict=True):
        assert (entry["route"], entry["filters"], entry["result_count"]) == (route, filters, count)
        assert entry["key_id"] == key_id(auditor)
        assert entry["at"] == "2026-11-23T13:00:00Z"
    assert (
        client.get("/v1/audit/access-log", headers=auditor).json()["entries"][-1]["route"]
        == "/v1/audit/access-log"
    )


def test_calls_by_keys_without_audit_read_are_logged(
    client: Client, as_user: Callable[[str], Headers], as_key: Callable[..., Headers], clock: FakeClock
) -> None:
    """A service or admin key probing the Audit API is refused with 403 and logged with its key id,
    the route and no results; its filters are kept only in their safe shape, like anyone's."""
    auditor, service, admin = as_key("audit:read"), as_key("pushes:write"), as_key("admin")
    calls = [
        (service, "/v1/audit/consent-events", {"subject_ref": "bob@example.org", "limit": "5"}),
        (admin, "/v1/audit/export", {}),
        (admin, f"/v1/audit/subjects/sub_{'b' * 52}", {}),
    ]
    for headers, path, params in calls:
        assert_problem(client.get(path, headers=headers, params=params), 403)
    assert_problem(client.get("/v1/audit/ledger/verify", headers=as_user("bob")), 403)  # no key id
    assert_problem(client.get("/v1/audit/ledger/verify"), 401)
    entries = client.get("/v1/audit/access-log", headers=auditor).json()["entries"]
    assert [(e["key_id"], e["route"], e["filters"], e["result_count"]) for e in entries] == [
        (key_id(service), "/v1/audit/consent-events", {"subject_ref": NOT_LOGGED, "limit": "5"}, 0),
        (key_id(admin), "/v1/audit/export", {}, 0),
        (key_id(admin), "/v1/audit/subjects/{subject_ref}", {"subject_ref": f"sub_{'b' * 52}"}, 0),
    ]
    assert "bob@example.org" not in json.dumps(entries)


def test_refused_values_are_not_kept_in_the_access_log(
    client: Client, as_key: Callable[..., Headers]
) -> None:
    # The log is append-only: an e-mail pasted into `subject_ref` would have stayed there for good.
    auditor = as_key("audit:read")
    calls: list[tuple[str, dict[str, str | int]]] = [
        ("/v1/audit/subjects/alice.secret@example.com", {}),
        ("/v1/audit/decisions", {"push_id": "+8613812345678", "reason": "bob@example.org", "limit": 5}),
        ("/v1/audit/consent-events", {"subject_ref": "Alice Liddell", "from": "alice@example.com"}),
        ("/v1/audit/ledger/proof/inclusion", {"seq": "13812345678", "size": "3"}),
    ]
    for path, params in calls:
        assert client.get(path, headers=auditor, params=params).status_code in (200, 400, 404), path
    entries = client.get("/v1/audit/access-log", headers=auditor).json()["entries"]
    assert [e["filters"] for e in entries[: len(calls)]] == [
        {"subject_ref": NOT_LOGGED},
        {"push_id": NOT_LOGGED, "reason": NOT_LOGGED, "limit": "5"},
        {"subject_ref": NOT_LOGGED, "from": NOT_LOGGED},
        {"seq": NOT_LOGGED, "size": "3"},  # a tree size, but shaped like a mobile number
    ]


def test_a_cursor_or_a_code_is_kept_only_as_one_the_gateway_knows(
    client: Client, as_key: Callable[..., Headers]
) -> None:
    """A user id fits a cursor's characters, and `[a-z_]` codes, well enough to have been kept."""
    auditor = as_key("audit:read")
    for params in (
        {"cursor": "leakuser-7f3a9"},
        {"cursor": "8613800138000"},
        {"cursor": base64.urlsafe_b64encode(b"events:13800138000").decode().rstrip("=")},  # a mobile
        {"status": "leak_user_id"},
        {"purpose": "li_wei_88", "reason": "zhang_san"},
    ):
        client.get("/v1/audit/consent-events", headers=auditor, params=params)
    client.get("/v1/audit/complaints", headers=auditor, params={"status": "open", "reason": "privacy"})
    page = client.get("/v1/audit/access-log", headers=auditor, params={"limit": 1}).json()
    client.get("/v1/audit/access-log", headers=auditor, params={"cursor": page["next_cursor"]})

    entries = client.get("/v1/audit/access-log", headers=auditor).json()["entries"]
    assert [e["filters"] for e in entries[:8]] == [
        {"cursor": NOT_LOGGED},
        {"cursor": NOT_LOGGED},
        {"cursor": NOT_LOGGED},
        {"status": NOT_LOGGED},
        {"purpose": NOT_LOGGED, "reason": NOT_LOGGED},
        {"status": "open", "reason": "privacy"},
        {"limit": "1"},
        {"cursor": page["next_cursor"]},
    ]


def test_ids_that_look_like_card_numbers_are_still_logged(
    client: Client, as_key: Callable[..., Headers]
) -> None:
    # Hex ids hold digit runs that pass the Luhn check; only their pattern decides.
    auditor = as_key("audit:read")
    params = {"push_id": "psh_9834053224385e60af66f13a", "campaign_id": "cmp_19c0282741060580"}
    assert client.get("/v1/audit/decisions", headers=auditor, params=params).status_code == 200
    entries = client.get("/v1/audit/access-log", headers=auditor).json()["entries"]
    assert entries[0]["filters"] == params


def test_access_log_pages(client: Client, as_key: Callable[..., Headers]) -> None:
    auditor = as_key("audit:read")
    for _ in range(3):
        client.get("/v1/audit/ledger/verify", headers=auditor)
    first = client.get("/v1/audit/access-log", headers=auditor, params={"limit": 2}).json()
    assert [e["id"] for e in first["entries"]] == [1, 2]
    rest = client.get(
        "/v1/audit/access-log", headers=auditor, params={"limit": 2, "cursor": first["next_cursor"]}
    )
    assert [e["id"] for e in rest.json()["entries"]] == [3, 4]  # 4 is the first access-log call


# -- who may call --------------------------------------------------------------------------------

ROLES: dict[str, tuple[str, ...] | None] = {
    "none": None,
    "user": (),
    "service": ("pushes:write", "campaigns:write", "campaigns:read", "complaints:write"),
    "admin": ("admin",),
    "auditor": ("audit:read",),
}


def audit_routes(app: Litestar) -> list[tuple[str, str]]:
    return sorted(
        (method, route.path)
        for route in app.routes
        if isinstance(route, HTTPRoute) and route.path.startswith("/v1/audit")
        for handler in route.route_handlers
        for method in handler.http_methods
        if method not in {"HEAD", "OPTIONS"}
    )


def test_only_audit_read_keys_may_call_the_audit_api(
    client: Client, as_user: Callable[[str], Headers], as_key: Callable[..., Headers]
) -> None:
    routes = audit_routes(client.app)
    assert len(routes) == 12
    assert {method for method, _ in routes} == {"GET"}  # read-only
    credentials = {
        role: {} if scopes is None else as_user("matrix-user") if not scopes else as_key(*scopes)
        for role, scopes in ROLES.items()
    }
    for method, template in routes:
        path = template.replace("{subject_ref:str}", f"sub_{'a' * 52}")
        for role, headers in credentials.items():
            response = client.request(method, path, headers=headers)
            if role == "auditor":
                assert response.status_code not in {401, 403}, (path, response.text)
            else:
                assert_problem(response, 401 if role == "none" else 403)
    assert client.post("/v1/audit/consent-events", headers=credentials["auditor"]).status_code == 405


def test_national_phone_numbers_are_not_kept_in_the_access_log(
    client: Client, as_key: Callable[..., Headers]
) -> None:
    # `find_pii` knows mobiles and `+` numbers; a landline or a number in national form passed the
    # loose time and number shapes and stayed in the append-only log, though the route refused it.
    auditor = as_key("audit:read")
    calls: list[tuple[str, dict[str, str]]] = [
        ("/v1/audit/consent-events", {"from": "010-65529988", "to": "415-555-0143"}),
        ("/v1/audit/consent-events", {"limit": "01065529988"}),
        ("/v1/audit/consent-events", {"limit": "4155550143"}),
        (f"/v1/audit/subjects/sub_{'a' * 52}", {"at": "0755-86013388"}),
        ("/v1/audit/ledger/proof/inclusion", {"seq": "020794609", "size": "7"}),
        ("/v1/audit/consent-events", {"from": "2026-11-23T10:00:00Z", "limit": "1000"}),
    ]
    for path, params in calls:
        assert client.get(path, headers=auditor, params=params).status_code in (200, 400, 404), path
    entries = client.get("/v1/audit/access-log", headers=auditor).json()["entries"]
    assert [e["filters"] for e in entries[: len(calls)]] == [
        {"from": NOT_LOGGED, "to": NOT_LOGGED},
        {"limit": NOT_LOGGED},
        {"limit": NOT_LOGGED},
        {"at": NOT_LOGGED, "subject_ref": f"sub_{'a' * 52}"},
        {"seq": NOT_LOGGED, "size": "7"},
        {"from": "2026-11-23T10:00:00Z", "limit": "1000"},
    ]
