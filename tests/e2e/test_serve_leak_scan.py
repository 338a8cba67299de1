"""No personal data in the logs or metrics of a real `consent-gateway serve`, whatever it handled.

SECURITY.md, "Logs and metrics": no user id, subject_ref, token, e-mail, phone or free text is
logged; metric labels are route templates, outcomes, reason codes and provider names. One server
process on 127.0.0.1 with `CGW_LOG_LEVEL=debug` (the most it logs), its delivery worker on, a
local relay for `webhook` devices and the file sink for the other platforms, is given marked
values through every face: user ids that are an e-mail and a phone number, a device of each
platform, a location, pushes with marked titles, bodies, data and idempotency keys, a campaign
name, complaints with a comment and a resolution, an export, an erasure, and refused requests
whose paths, query strings, bodies, methods, credentials and headers hold markers. Then the whole
stderr and `GET /metrics` must hold none of them, nor either user's subject_ref.

The file sink stands in for a phone: it may hold titles, bodies and data (SECURITY.md, "What is
not protected") but no raw device token, user id or subject_ref. The data dir's databases are
SQLCipher files: no marker may show in them either.
"""

from __future__ import annotations

import json
import secrets
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import WEBPUSH_KEYS, Server, WebhookRelay, daytime_zone, serve_process

from clients.delivery.token_hint import token_hint

pytestmark = pytest.mark.slow

HOOK_SECRET = "e2e-leak-scan-webhook-secret-0123456789"
NOTICE = "e2e-notice-2026-11"
DELIVERY_SECONDS = 15.0
KEY_SCOPES = ("pushes:write", "campaigns:write", "campaigns:read", "complaints:write")


@dataclass
class Marks:
    """Marked values, each holding a random tag of letters only (no digit run the PII detector
    could take for a phone or card number). `secret` ones must show nowhere; `content` ones
    (what a phone shows) may be in the file sink, and only there."""

    tag: str = field(
        default_factory=lambda: "".join(secrets.choice(string.ascii_lowercase) for _ in range(12))
    )
    secret: dict[str, str] = field(default_factory=dict)
    content: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, value: str, *, content: bool = False) -> str:
        (self.content if content else self.secret)[name] = value
        return value

    def mark(self, name: str, *, content: bool = False) -> str:
        """A bare marker `<name><tag>`, to build values around."""
        return self.add(name, f"{name}{self.tag}", content=content)

    def hex_mark(self, name: str) -> str:
        """The marker `<name><tag>` in hex, for a value of hex digits only (an APNs token)."""
        return self.add(name, f"{name}{self.tag}".encode().hex())

    def everything(self) -> dict[str, str]:
        return {**self.secret, **self.content}


def _found(text: str, needles: dict[str, str]) -> list[str]:
    return sorted(name for name, needle in needles.items() if needle in text)


def _leaks(text: str, needles: dict[str, str]) -> dict[str, str]:
    """Each marker found in `text`, with the first line holding it (cut to 300 characters)."""
    return {
        name: next(line for line in text.splitlines() if needle in line)[:300]
        for name, needle in sorted(needles.items())
        if needle in text
    }


def _scan_files(root: Path, needles: dict[str, str], but: Path) -> dict[str, list[str]]:
    """Which markers occur, as UTF-8 or UTF-16, in which files under root other than `but`."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p != but):
        blob = path.read_bytes()
        for name, needle in needles.items():
            if needle.encode() in blob or needle.encode("utf-16-le") in blob:
                found.setdefault(name, []).append(path.name)
    return found


def _ok(answer: httpx.Response, *status: int) -> Any:
    assert answer.status_code in (status or (200,)), (
        f"{answer.request.method} {answer.status_code} {answer.text}"
    )
    return answer.json() if answer.content else None


@pytest.fixture
def server(tmp_path: Path, hook: WebhookRelay) -> Iterator[Server]:
    settings = {
        "CGW_LOG_LEVEL": "debug",
        "CGW_TIMEZONE": daytime_zone(),  # no quiet hours defer the pushes, whatever the hour
        "CGW_DELIVERY_WEBHOOK_URL": hook.url,
        "CGW_DELIVERY_WEBHOOK_SECRET": HOOK_SECRET,
        "CGW_DELIVERY_BACKOFF_SECONDS": "0.2",
    }
    with serve_process(tmp_path / "data", tmp_path / "server.stderr", settings) as running:
        yield running


def _cli(server: Server, *args: str) -> str:
    done = server.cli(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _delivered(http: httpx.Client, key: dict[str, str], push_ids: list[str]) -> None:
    deadline = time.monotonic() + DELIVERY_SECONDS
    while True:
        statuses = {p: _ok(http.get(f"/v1/pushes/{p}", headers=key))["status"] for p in push_ids}
        if set(statuses.values()) == {"delivered"}:
            return
        assert time.monotonic() < deadline, f"not delivered within {DELIVERY_SECONDS} s: {statuses}"
        time.sleep(0.1)


def test_no_marker_reaches_the_logs_or_metrics(server: Server, hook: WebhookRelay) -> None:
    m = Marks()
    email = m.add("email", f"mail.{m.tag}@example.com")
    phone = m.add("phone", "+86139" + "".join(secrets.choice(string.digits) for _ in range(8)))
    m.add("phone digits", phone.removeprefix("+86"))  # also as %2B86..., or reformatted
    m.add("email local part", f"mail.{m.tag}")
    tokens = {
        "fcm": m.add("fcm token", f"fcm:APA91b-{m.mark('tokfcm')}-k3Yt8pLq2Xw9sVn4"),
        "apns": m.add("apns token", f"7f3a1c9e{m.hex_mark('tokapns')}0a6b2d4f8e1c3a5b7d9f0e2c"),
        "webhook": m.add("webhook token", f"relay-{m.mark('tokwebhook')}-wallet-device-42"),
        "webpush": json.dumps(
            {
                "endpoint": f"https://fcm.googleapis.com/fcm/send/{m.mark('tokwebpush')}-c1x2y3",
                "keys": WEBPUSH_KEYS,
            }
        ),
    }
    m.add("webpush p256dh", WEBPUSH_KEYS["p256dh"])
    m.add("webpush auth", WEBPUSH_KEYS["auth"])
    phone_tokens = {
        "webhook": m.add("phone webhook token", f"relay-{m.mark('tokphonewebhook')}-wallet-device-7"),
        "fcm": m.add("phone fcm token", f"fcm:APA91b-{m.mark('tokphonefcm')}-q8Zr2Wm5"),
    }
    lat = float("31.2" + "".join(secrets.choice("123456789") for _ in range(6)))
    lon = float("121.4" + "".join(secrets.choice("123456789") for _ in range(6)))
    m.add("latitude", repr(lat))
    m.add("longitude", repr(lon))

    api_key = _cli(server, "keys", "create", "--name", "leak scan", "--scope", *KEY_SCOPES)
    audit_key = _cli(server, "keys", "create", "--name", "leak scan audit", "--scope", "audit:read")
    user_jwt, phone_jwt = _cli(server, "token", email), _cli(server, "token", phone)
    for name, credential in (("api key", api_key), ("audit key", audit_key)):
        m.add(name, credential.split("_", 2)[2])  # the secret part; the key id may be logged
    for name, jwt in (("user token", user_jwt), ("phone user token", phone_jwt)):
        m.add(name, jwt.rsplit(".", 1)[1])  # the signature: what makes a token usable
    key = {"Authorization": f"Bearer {api_key}"}
    audit = {"Authorization": f"Bearer {audit_key}"}
    user = {"Authorization": f"Bearer {user_jwt}"}
    phone_user = {"Authorization": f"Bearer {phone_jwt}"}
    # Headers a client chooses are text of its own: a log line must not carry them either.
    client_headers = {"User-Agent": m.mark("useragent"), "Referer": f"https://{m.mark('referer')}.example/"}

    with httpx.Client(base_url=server.base, timeout=10.0, headers=client_headers) as http:
        # -- a user with every kind of data, identified by e-mail ----------------------------
        for purpose in ("marketing", "personalization", "location"):
            consent = {"granted": True, "notice_version": NOTICE}
            _ok(http.put(f"/v1/me/consents/{purpose}", json=consent, headers=user))
        for platform, token in tokens.items():
            _ok(http.post("/v1/me/devices", json={"platform": platform, "token": token}, headers=user), 201)
        geohash = _ok(http.put("/v1/me/location", json={"lat": lat, "lon": lon}, headers=user))["geohash"]
        m.add("geohash", geohash)
        ref = m.add("subject_ref", _ok(http.get("/v1/me/preferences", headers=user))["subject_ref"])

        # -- a user identified by phone number, pushed to by subject_ref ---------------------
        for platform, token in phone_tokens.items():
            _ok(
                http.post("/v1/me/devices", json={"platform": platform, "token": token}, headers=phone_user),
                201,
            )
        phone_ref = m.add(
            "phone subject_ref", _ok(http.get("/v1/me/preferences", headers=phone_user))["subject_ref"]
        )

        # -- pushes: delivered to the relay and the file sink ------------------------------
        campaign = _ok(
            http.post(
                "/v1/campaigns", json={"name": m.mark("campaignname"), "topic": "promotions"}, headers=key
            ),
            201,
        )["campaign_id"]
        promo = {
            "idempotency_key": m.mark("idemkey"), "user_id": email, "topic": "promotions",
            "campaign_id": campaign, "variant": "A",
            "title": f"Winter {m.mark('pushtitle', content=True)}",
            "body": f"Offer {m.mark('pushbody', content=True)}",
            "data": {"deeplink": f"wallet://offers/{m.mark('pushdata', content=True)}"},
        }  # fmt: skip
        receipt = {
            "idempotency_key": m.mark("idemphone"), "subject_ref": phone_ref, "topic": "transactional",
            "title": f"Paid {m.mark('receipttitle', content=True)}",
            "body": f"CNY {m.mark('receiptbody', content=True)}",
            "data": {"coupon_code": m.mark("receiptdata", content=True)},
        }  # fmt: skip
        pushed = [_ok(http.post("/v1/pushes", json=p, headers=key)) for p in (promo, receipt)]
        assert [p["outcome"] for p in pushed] == ["queued", "queued"], pushed
        push_id = pushed[0]["push_id"]
        _delivered(http, key, [p["push_id"] for p in pushed])
        near = {
            "idempotency_key": m.mark("idemnear"), "user_id": email, "topic": "nearby_offers",
            "title": "Near you", "body": "A shop", "near": {"geohash": geohash[:5]}, "dry_run": True,
        }  # fmt: skip
        _ok(http.post("/v1/pushes", json=near, headers=key), 400)  # no dry run near an area
        ghost = m.add("unknown user", f"ghost.{m.tag}@example.com")
        refused = [
            {"idempotency_key": m.mark("idempii"), "user_id": email, "topic": "promotions",
             "title": "Hello", "body": f"call {phone} or {email}"},
            {"idempotency_key": m.mark("idemghost"), "user_id": ghost, "topic": "promotions",
             "title": "Hi", "body": "there"},
        ]  # fmt: skip
        for body in refused:
            assert _ok(http.post("/v1/pushes", json=body, headers=key))["outcome"] == "rejected"

        # -- engagement, complaints and their handling ---------------------------------------
        _ok(http.post(f"/v1/me/pushes/{push_id}/events", json={"type": "opened"}, headers=user), 201)
        comment = f"Stop this {m.mark('complaintcomment')}, I never asked"
        filed = {"push_id": push_id, "reason": "other", "comment": comment}
        _ok(http.post("/v1/me/complaints", json=filed, headers=user), 201)
        other = {"reason": "privacy", "comment": m.mark("phonecomment")}
        complaint_id = _ok(http.post("/v1/me/complaints", json=other, headers=phone_user), 201)[
            "complaint_id"
        ]
        _ok(http.post(f"/v1/complaints/{complaint_id}/acknowledge", headers=key))
        resolution = {"resolution": f"Called back {m.mark('resolution')}"}
        _ok(http.post(f"/v1/complaints/{complaint_id}/resolve", json=resolution, headers=key))

        # -- an auditor looks the users up --------------------------------------------------
        _ok(http.get("/v1/audit/consent-events", params={"user_id": email}, headers=audit))
        _ok(http.get(f"/v1/audit/subjects/{ref}", headers=audit))
        _ok(http.get("/v1/audit/decisions", params={"subject_ref": phone_ref}, headers=audit))
        _ok(http.get("/v1/audit/complaints", headers=audit))

        # -- requests refused on the way, with markers where a client puts things -------------
        consent = {"granted": True, "notice_version": NOTICE}
        fake_key = f"cgw_{m.mark('fakekeyid')}_{m.mark('fakekeysecret')}"
        malformed = f'{{"platform": "webhook", "token": "{m.mark("malformed")}'
        duplicated = f'{{"{m.mark("dupkey")}": 1, "{m.mark("dupkey")}": 2}}'
        bad_push = {"idempotency_key": "x", "user_id": email, "topic": "promotions", "title": 5,
                    "body": m.mark("badtypebody")}  # fmt: skip
        big = {"reason": "other", "comment": m.mark("bigbody") * 6000}  # over CGW_MAX_BODY_BYTES
        me, on_email = {"headers": user}, {"user_id": email}
        refusals: list[tuple[str, str, dict[str, Any], int]] = [
            ("POST", "/v1/me/devices", {**me, "content": malformed}, 400),
            (
                "POST",
                "/v1/me/devices",
                {**me, "json": {"platform": m.mark("platformvalue"), "token": "x" * 12}},
                400,
            ),
            ("POST", "/v1/me/complaints", {**me, "json": {"reason": "other", m.mark("fieldname"): 1}}, 400),
            ("POST", "/v1/me/complaints", {**me, "content": duplicated}, 400),
            ("PATCH", "/v1/me/preferences", {**me, "json": {"timezone": f"Mars/{m.mark('timezone')}"}}, 400),
            ("PUT", "/v1/me/consents/marketing", {**me, "json": {**consent, "notice_version": phone}}, 400),
            ("PUT", f"/v1/me/consents/{m.mark('purpose')}", {**me, "json": consent}, 400),
            ("POST", "/v1/pushes", {"json": bad_push, "headers": key}, 400),
            (
                "GET",
                "/v1/audit/decisions",
                {"params": {"subject_ref": m.mark("badref")}, "headers": audit},
                400,
            ),
            ("GET", "/v1/me/preferences", {"headers": {"Authorization": f"Bearer {m.mark('bearer')}"}}, 401),
            ("GET", "/v1/admin/policy", {"headers": {"Authorization": f"Bearer {fake_key}"}}, 401),
            ("GET", "/v1/audit/consent-events", {"params": {"user_id": phone}}, 401),
            ("POST", "/v1/pushes", {**me, "json": {"user_id": email, "body": m.mark("forbiddenbody")}}, 403),
            ("GET", "/v1/audit/consent-events", {"params": on_email, "headers": key}, 403),
            ("GET", f"/v1/{m.mark('badpath')}/x", {"params": {"user_id": email, "phone": phone}}, 404),
            ("GET", f"/v1/audit/{m.mark('auditpath')}", {"params": on_email, "headers": audit}, 404),
            ("DELETE", "/v1/me/devices/dev_0123456789abcdef01234567", {**me, "params": on_email}, 400),
            ("DELETE", "/v1/me/devices/dev_0123456789abcdef01234567", me, 404),
            ("GET", f"/v1/pushes/psh_{m.mark('pushpath')}", {"headers": key}, 404),
            ("POST", f"/v1/complaints/{m.mark('complaintpath')}/acknowledge", {"headers": key}, 404),
            ("PATCH", "/healthz", {"params": on_email}, 405),
            # uvicorn's parser refuses a method it does not know before the app sees it
            (m.add("method", f"M{m.tag.upper()}"), "/v1/me/preferences", {**me, "params": on_email}, 400),
            ("POST", "/v1/me/complaints", {**me, "json": big}, 413),
        ]
        got = [
            (method, path, http.request(method, path, **kw).status_code) for method, path, kw, _ in refusals
        ]
        assert got == [(method, path, status) for method, path, _, status in refusals]

        # -- the rights: export, then erasure, then the erased user looked up and pushed to ---
        export = http.get("/v1/me/export", headers=user)
        assert export.status_code == 200
        # The export holds the markers: the data the scan looks for was really kept and read.
        assert _found(export.text, {n: m.secret[n] for n in ("tokfcm", "tokapns", "complaintcomment")}) == [
            "complaintcomment", "tokapns", "tokfcm",
        ]  # fmt: skip
        assert m.content["pushtitle"] in export.text
        _ok(http.delete("/v1/me", headers=user), 204)
        again = {**promo, "idempotency_key": m.mark("idemafter")}
        after = _ok(http.post("/v1/pushes", json=again, headers=key))
        assert [r["code"] for r in after["reasons"]] == ["subject_erased"], after
        _ok(http.get("/v1/audit/consent-events", params={"user_id": email}, headers=audit))

        metrics = http.get("/metrics").text

    server.stop()
    log = server.stderr()
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    lines = {(r.get("method"), r.get("route"), r.get("status")) for r in records if r.get("msg") == "request"}
    # The server did log these requests (a scan of an empty log proves nothing).
    assert {
        ("POST", "/v1/me/devices", 201), ("PUT", "/v1/me/location", 200), ("POST", "/v1/me/complaints", 201),
        ("GET", "/v1/me/export", 200), ("DELETE", "/v1/me", 204), ("GET", "unmatched", 404),
        ("PATCH", "unmatched", 405), ("POST", "/v1/me/complaints", 413), ("GET", "/v1/me/preferences", 401),
    } <= lines  # fmt: skip
    assert "cgw_deliveries_total" in metrics

    everything = m.everything()
    assert _leaks(log, everything) == {}, "markers in the server's stderr"
    assert _leaks(metrics, everything) == {}, "markers in /metrics"

    # The file sink: what a phone shows, nothing that names the user or reaches the device.
    sink = server.data_dir / "deliveries.jsonl"
    delivered = [json.loads(line) for line in sink.read_text().splitlines()]
    assert sorted(d["platform"] for d in delivered) == ["apns", "fcm", "fcm", "webpush"]
    sent = {
        ("fcm", tokens["fcm"]),
        ("apns", tokens["apns"]),
        ("fcm", phone_tokens["fcm"]),
        ("webpush", tokens["webpush"]),
    }
    assert {d["token"] for d in delivered} == {token_hint(*sent_to) for sent_to in sent}
    assert _found(sink.read_text(), m.content) == sorted(m.content), "the deliveries are not in the sink"
    assert _leaks(sink.read_text(), m.secret) == {}, "markers other than content in deliveries.jsonl"
    # The relay, which delivers to the device, got the raw token: the value was really used.
    assert {h["device_token"] for h in hook.received} == {tokens["webhook"], phone_tokens["webhook"]}

    assert _scan_files(server.data_dir, everything, but=sink) == {}, "markers in the data dir"
