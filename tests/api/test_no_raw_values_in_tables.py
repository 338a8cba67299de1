"""No personal value is stored in the clear in any table: read through the gateway's own readers.

The byte scans of the data directory (tests/unit/storage/test_db_files.py) show SQLCipher is on:
the files are encrypted page by page, so they would not show a raw user id written into a plaintext
column. Here every table of every database is read decrypted, as the gateway reads it, after a
realistic session over HTTP, and each marker must be found nowhere: user ids are kept only as
pseudonyms, and tokens, coordinates, push content and complaint text only sealed.

The users are an e-mail address and a phone number, as wallets use them; each marker is unique to
the test, and letters only where it goes into a push, so no PII rule reads it as a number.
"""

from __future__ import annotations

import json
import logging
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import WEBPUSH_KEYS, assert_problem, logged, readers, scan_tables

from gateway.runtime import Runtime

Client = TestClient[Litestar]
Json = dict[str, Any]


def _letters(n: int = 10) -> str:
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(n))


def _coordinate(base: float) -> float:
    """`base` plus a random offset, exactly six decimals long as Python prints it."""
    while True:
        value = round(base + secrets.randbelow(99_999) / 1e6, 6)
        if len(repr(value).split(".")[1]) == 6:
            return value


@dataclass
class Wallet:
    """One user and every personal value the session gives the gateway for them."""

    user_id: str
    tag: str
    lat: float
    lon: float

    @classmethod
    def make(cls, user_id: str) -> Wallet:
        return cls(user_id, _letters(), _coordinate(31.2), _coordinate(121.4))

    def token_marker(self, platform: str) -> str:
        """What a scan looks for: the apns one in hex, as an APNs token is hex digits only."""
        marker = f"TOKMARK{self.tag}{platform}"
        return marker.encode().hex() if platform == "apns" else marker

    def token(self, platform: str) -> str:
        # The marker sits inside the token, not at its end, which a hint may show.
        if platform == "apns":
            return f"0a1b{self.token_marker(platform)}{secrets.token_hex(4)}"
        return f"{platform}-{self.token_marker(platform)}-tail-{secrets.token_hex(4)}"

    @property
    def endpoint_marker(self) -> str:
        return f"ENDPOINTMARK{self.tag}"

    def needles(self) -> list[str]:
        digits = [repr(c).replace(".", "")[:7] for c in (self.lat, self.lon)]  # kept scaled, as integers
        return [
            self.user_id,
            self.user_id.lstrip("+"),
            *(self.token_marker(platform) for platform in ("fcm", "apns", "webhook")),
            self.endpoint_marker,
            repr(self.lat),
            repr(self.lon),
            *digits,
        ]


@dataclass
class Session:
    """What the session sent that must be sealed or hashed, besides the wallets' own values."""

    wallets: list[Wallet]
    texts: list[str]


def _ok(answer: Any, status: int = 200) -> Json:
    assert answer.status_code == status, answer.text
    body: Json = answer.json() if answer.content else {}
    return body


def _onboard(client: Client, headers: Headers, wallet: Wallet) -> str:
    """Consents, a device of each platform, a location and preferences; returns the geohash."""
    grant = {"granted": True, "notice_version": "v1"}
    for purpose in ("marketing", "personalization", "location"):
        _ok(client.put(f"/v1/me/consents/{purpose}", json=grant, headers=headers))
    for platform in ("fcm", "apns", "webhook"):
        device = {"platform": platform, "token": wallet.token(platform)}
        _ok(client.post("/v1/me/devices", json=device, headers=headers), 201)
    subscription = {
        "endpoint": f"https://fcm.googleapis.com/fcm/send/{wallet.endpoint_marker}-{secrets.token_hex(4)}",
        "keys": WEBPUSH_KEYS,
    }
    device = {"platform": "webpush", "token": json.dumps(subscription)}
    _ok(client.post("/v1/me/devices", json=device, headers=headers), 201)
    placed = _ok(client.put("/v1/me/location", json={"lat": wallet.lat, "lon": wallet.lon}, headers=headers))
    prefs = {"timezone": "Asia/Shanghai", "locale": "zh-CN"}  # 18:00 there at the FakeClock's 10:00 UTC
    _ok(client.patch("/v1/me/preferences", json=prefs, headers=headers))
    return str(placed["geohash"])


def _session(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], as_key: Callable[..., Headers]
) -> Session:
    phone = f"+86139{secrets.randbelow(10**8):08d}"
    wallets = [Wallet.make(f"wallet.{_letters()}@example.com"), Wallet.make(phone)]
    texts: list[str] = []
    sender = as_key("pushes:write", "campaigns:write")
    admin = as_key("admin")
    relaxed = {"topic_interval_hours": 0, "max_per_day": 10, "max_per_week": 50}  # only privacy at stake
    _ok(client.put("/v1/admin/policy", json=relaxed, headers=admin))
    winter = {"name": "Winter", "topic": "promotions"}
    campaign = _ok(client.post("/v1/campaigns", json=winter, headers=sender), 201)

    def push(wallet: Wallet, n: int, **fields: Any) -> Json:
        marks = [f"TITLEMARK{wallet.tag}x{n}", f"BODYMARK{wallet.tag}x{n}", f"DATAMARK{wallet.tag}x{n}"]
        idem = f"IDEMMARK{wallet.tag}x{n}"
        texts.extend([*marks, idem])
        body = {
            "idempotency_key": idem,
            "user_id": wallet.user_id,
            "topic": "promotions",
            "title": f"Winter sale {marks[0]}",
            "body": f"Only for you {marks[1]}",
            "data": {"deeplink": f"wallet://offers/{marks[2]}"},
        }
        return _ok(client.post("/v1/pushes", json=body | fields, headers=sender))

    pushed: dict[str, str] = {}
    for wallet in wallets:
        headers = as_user(wallet.user_id)
        geohash = _onboard(client, headers, wallet)
        ref = _ok(client.get("/v1/me/preferences", headers=headers))["subject_ref"]
        plain = push(wallet, 1)
        assert plain["outcome"] == "queued", plain
        pushed[wallet.user_id] = str(plain["push_id"])
        assert push(wallet, 2, personalized=True, near={"geohash": geohash[:5]})["outcome"] == "queued"
        assert push(wallet, 3, campaign_id=campaign["campaign_id"], variant="a")["outcome"] == "queued"
        assert push(wallet, 4, subject_ref=ref, user_id=None, dry_run=True)["outcome"] == "queued"
        # A push naming its user in the body is refused, and its text is not kept either.
        refused = push(wallet, 5, body=f"Hello {wallet.user_id}")
        assert [r["code"] for r in refused["reasons"]] == ["payload_pii"], refused
        idem, title, text = f"IDEMMARK{wallet.tag}b", f"TITLEMARK{wallet.tag}b", f"BODYMARK{wallet.tag}b"
        texts.extend([idem, title, text])
        tip = {"idempotency_key": idem, "user_id": wallet.user_id, "topic": "product_tips", "title": title}
        _ok(client.post("/v1/pushes/batch", json={"pushes": [tip | {"body": text}]}, headers=sender))

    assert client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 100) > 0
    handler = as_key("complaints:write")
    for wallet in wallets:
        headers = as_user(wallet.user_id)
        push_id = pushed[wallet.user_id]
        _ok(client.post(f"/v1/me/pushes/{push_id}/events", json={"type": "opened"}, headers=headers), 201)
        comment, resolution = f"COMMENTMARK{wallet.tag} about my divorce", f"RESOLUTIONMARK{wallet.tag} done"
        texts.extend([f"COMMENTMARK{wallet.tag}", f"RESOLUTIONMARK{wallet.tag}"])
        complaint = {"push_id": push_id, "reason": "privacy", "comment": comment}
        cid = _ok(client.post("/v1/me/complaints", json=complaint, headers=headers), 201)["complaint_id"]
        _ok(client.post(f"/v1/complaints/{cid}/acknowledge", headers=handler))
        _ok(client.post(f"/v1/complaints/{cid}/resolve", json={"resolution": resolution}, headers=handler))
        _ok(client.delete(f"/v1/me/devices/{_device_id(client, headers, 'apns')}", headers=headers), 204)
        _ok(client.get("/v1/me/export", headers=headers))

    auditor = as_key("audit:read")
    for wallet in wallets:
        _ok(client.get("/v1/audit/consent-events", params={"user_id": wallet.user_id}, headers=auditor))
        # An auditor pasting a user id where a subject_ref goes, or in a parameter no route reads.
        pasted = client.get("/v1/audit/decisions", params={"subject_ref": wallet.user_id}, headers=auditor)
        assert pasted.status_code == 400, pasted.text
        stray = client.get("/v1/audit/complaints", params={"email": wallet.user_id}, headers=auditor)
        assert_problem(stray, 400, "email")  # refused, and its value in no answer, log or table
        assert wallet.user_id not in stray.text
    _ok(client.get("/v1/audit/export", headers=auditor))
    return Session(wallets, texts)


def _device_id(client: Client, headers: Headers, platform: str) -> str:
    listed = client.get("/v1/me/devices", headers=headers)
    assert listed.status_code == 200, listed.text
    (device,) = [d for d in listed.json() if d["platform"] == platform]
    return str(device["device_id"])


@pytest.fixture
def session(
    client: Client,
    runtime: Runtime,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
    caplog: pytest.LogCaptureFixture,
) -> Session:
    caplog.set_level(logging.DEBUG)
    return _session(client, runtime, as_user, as_key)


def test_the_session_really_stored_every_marker(
    client: Client, session: Session, as_user: Callable[[str], Headers]
) -> None:
    """Positive control: each user's export opens what was stored, markers included, so a clean
    table scan means sealed or pseudonymized, not lost."""
    for wallet in session.wallets:
        export = json.dumps(_ok(client.get("/v1/me/export", headers=as_user(wallet.user_id))))
        for needle in [f"TOKMARK{wallet.tag}fcm", f"TOKMARK{wallet.tag}webhook", wallet.endpoint_marker]:
            assert needle in export
        for needle in (f"TITLEMARK{wallet.tag}x1", f"BODYMARK{wallet.tag}x1", f"COMMENTMARK{wallet.tag}"):
            assert needle in export
        assert f"RESOLUTIONMARK{wallet.tag}" in export


def test_no_table_holds_a_user_id_token_coordinate_or_text_in_the_clear(
    session: Session, runtime: Runtime, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    databases = readers(runtime)
    on_disk = {path.name for path in data_dir.iterdir() if path.suffix == ".db"}
    assert on_disk, "no database file to read"
    assert on_disk <= set(databases), f"a database the scan would not read: {on_disk - set(databases)}"
    needles = [n for wallet in session.wallets for n in wallet.needles()] + session.texts
    assert scan_tables(databases, needles) == {}
    assert [n for n in needles if n in logged(caplog)] == []


def test_the_table_scan_reads_decrypted_values(session: Session, runtime: Runtime) -> None:
    """Control: what a table keeps in the clear on purpose, the subject_ref, is found where the
    file's bytes would not show it; and the scan read the tables that hold sealed values."""
    databases = readers(runtime)
    ref = runtime.store.pseudonyms.subject_ref(session.wallets[0].user_id)
    assert "subjects.db:subjects.subject_ref" in scan_tables(databases, [ref])[ref]
    rows = {
        f"{name}:{table}" for name, conn in databases.items() for (table,) in
        conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]  # noqa: S608
    }  # fmt: skip
    for table in ("devices", "pushes", "complaints", "ledger", "access_log", "locations"):
        assert f"gateway.db:{table}" in rows, f"{table} is empty: the scan proves nothing about it"
