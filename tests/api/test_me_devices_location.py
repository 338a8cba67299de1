"""Preference center: devices (`/v1/me/devices`) and coarse location (`PUT /v1/me/location`)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from support import WEBPUSH_KEYS, assert_problem, readers, scan_bytes, scan_tables

from gateway.runtime import Runtime
from storage import ledger
from storage.crypto import KeyedHash
from storage.repositories import devices
from storage.store import DATA_FILE

Client = TestClient[Litestar]
Headers = dict[str, str]
AsUser = Callable[[str], Headers]

ALICE = "alice.wong+test@example.com"
BOB = "+8613812345678"
NOTICE = "privacy-notice-2026-11"
DEVICE_ID = re.compile(r"^dev_[0-9a-f]{24}$")
MARK = "Zq7DEVMARK"  # unique marker inside every fake token, for byte scans and leak checks

FCM = f"fcm:APA91bH{MARK}fcm0001-k3Yt8pLq2Xw9sVn4"
# An APNs token is hex digits only, so its marker is too.
APNS = f"7f3a1c9e{MARK.encode().hex()}0a6b2d4f8e1c3a5b7d9f0e2c4a6b8d0f1e3c5a7b9d1f3e5a"
WEBHOOK = f"relay-{MARK}-wallet-device-42"
WEBPUSH = json.dumps(
    {
        "endpoint": f"https://fcm.googleapis.com/fcm/send/{MARK}-c1x2y3",
        "keys": WEBPUSH_KEYS,
    }
)
TOKENS = {"fcm": FCM, "apns": APNS, "webhook": WEBHOOK, "webpush": WEBPUSH}

# Shanghai, People's Square, with digits unlikely to occur by chance in a file.
LAT, LON = 31.230416, 121.473701
GEOHASH = "wtw3sj"


# -- helpers ----------------------------------------------------------------------------------


def events(runtime: Runtime) -> list[ledger.LedgerEvent]:
    return list(ledger.events(runtime.store.data.reader()))


def row_counts(runtime: Runtime) -> dict[str, int]:
    conn = runtime.store.data.reader()
    return {
        table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
        for table in ("preferences", "consents", "devices", "locations", "ledger")
    }


def register(client: Client, headers: Headers, platform: str, token: str, status: int = 201) -> str:
    response = client.post("/v1/me/devices", headers=headers, json={"platform": platform, "token": token})
    assert response.status_code == status, response.text
    device_id: str = response.json()["device_id"]
    assert DEVICE_ID.match(device_id)
    return device_id


def consent(client: Client, headers: Headers, purpose: str, granted: bool) -> None:
    response = client.put(
        f"/v1/me/consents/{purpose}", headers=headers, json={"granted": granted, "notice_version": NOTICE}
    )
    assert response.status_code == 200, response.text


def export(client: Client, headers: Headers) -> dict[str, Any]:
    response = client.get("/v1/me/export", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def snapshot(client: Client, runtime: Runtime, headers: Headers) -> tuple[Any, ...]:
    return export(client, headers), row_counts(runtime)


def fcm_token(n: int) -> str:
    return f"fcm-{MARK}-{n:04d}-pLq2Xw9sVn4"


# -- devices ----------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", list(TOKENS))
def test_register_list_and_export_a_device(
    client: Client, runtime: Runtime, as_user: AsUser, platform: str
) -> None:
    headers = as_user(ALICE)
    token = TOKENS[platform]

    device_id = register(client, headers, platform, token)

    listing = client.get("/v1/me/devices", headers=headers)
    assert listing.status_code == 200
    [device] = listing.json()
    assert device["device_id"] == device_id
    assert device["platform"] == platform
    assert device["status"] == "active"
    assert device["created_at"] == "2026-11-23T10:00:00Z"
    assert device["token_hint"]
    assert MARK not in listing.text
    assert token not in listing.text
    assert len(device["token_hint"]) < 24
    [exported] = export(client, headers)["devices"]
    assert exported == {
        "device_id": device_id,
        "platform": platform,
        "token": token,
        "status": "active",
        "created_at": "2026-11-23T10:00:00Z",
        "disabled_at": None,
        "registered_at": "2026-11-23T10:00:00Z",
    }


def test_the_same_token_again_is_the_same_device(client: Client, runtime: Runtime, as_user: AsUser) -> None:
    headers = as_user(ALICE)
    first = register(client, headers, "fcm", FCM)

    again = register(client, headers, "fcm", FCM, status=200)

    assert again == first
    assert len(client.get("/v1/me/devices", headers=headers).json()) == 1
    assert row_counts(runtime)["devices"] == 1
    other = register(client, as_user(BOB), "fcm", FCM)
    assert other != first


@pytest.mark.parametrize("platform", ["fcm", "webpush"])
def test_a_device_registered_by_another_user_is_theirs_now(
    client: Client, runtime: Runtime, as_user: AsUser, as_key: Callable[..., Headers], platform: str
) -> None:
    """An app's logout and another login on the same install, with no DELETE in between: both
    registrations stayed active, and the first user's payments went to the phone the second holds.
    The same device (for Web Push, the same endpoint with other keys) is now the last user's."""
    alice, bob = as_user(ALICE), as_user(BOB)
    alices = register(client, alice, platform, TOKENS[platform])
    other_keys = {
        **WEBPUSH_KEYS,
        "auth": base64.urlsafe_b64encode(bytes(range(200, 216))).decode().rstrip("="),
    }
    token = (
        WEBPUSH.replace(json.dumps(WEBPUSH_KEYS), json.dumps(other_keys)) if platform == "webpush" else FCM
    )
    assert (token != TOKENS[platform]) == (platform == "webpush")  # a subscription's keys may change
    bobs = register(client, bob, platform, token)

    assert [(d["device_id"], d["status"]) for d in client.get("/v1/me/devices", headers=alice).json()] == [
        (alices, "disabled")
    ]
    assert [d["status"] for d in client.get("/v1/me/devices", headers=bob).json()] == ["active"]
    key = as_key("pushes:write")
    paid = {"idempotency_key": "paid-1", "user_id": ALICE, "topic": "transactional", "title": "Paid",
            "body": "CNY 300.00"}  # fmt: skip
    answer = client.post("/v1/pushes", json=paid, headers=key).json()
    assert (answer["outcome"], answer["reasons"]) == ("rejected", [{"code": "no_device"}])

    assert register(client, alice, platform, TOKENS[platform], status=200) == alices  # back to alice
    assert [d["status"] for d in client.get("/v1/me/devices", headers=alice).json()] == ["active"]
    assert [(d["device_id"], d["status"]) for d in client.get("/v1/me/devices", headers=bob).json()] == [
        (bobs, "disabled")
    ]


def test_a_device_taken_over_by_a_user_with_no_room_left_is_still_released(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    """Bob at ten devices registers the phone Alice had: he is refused (409), and the phone is
    no longer Alice's either. The release was undone with the refusal, in one unit."""
    alice, bob = as_user(ALICE), as_user(BOB)
    register(client, alice, "fcm", FCM)
    for n in range(10):
        register(client, bob, "fcm", fcm_token(n))
    refused = client.post("/v1/me/devices", headers=bob, json={"platform": "fcm", "token": FCM})
    assert_problem(refused, 409, "token")
    assert [d["status"] for d in client.get("/v1/me/devices", headers=alice).json()] == ["disabled"]


def test_the_tag_key_is_no_subject_ref(runtime: Runtime) -> None:
    """Derived first as an HMAC under the pseudonym key of a fixed label: exactly the digest in
    that label's subject ref, which an auditor can have the gateway compute (`?user_id=`)."""
    store = runtime.store
    label_ref = store.pseudonyms.subject_ref("cgw device token tags")
    digest = base64.b32decode(label_ref.removeprefix("sub_").upper() + "====")
    assert devices.token_tag(store.device_tags, "fcm", FCM) != devices.token_tag(
        KeyedHash(digest), "fcm", FCM
    )


def test_delete_device_then_404(client: Client, runtime: Runtime, as_user: AsUser) -> None:
    headers = as_user(ALICE)
    keep = register(client, headers, "apns", APNS)
    drop = register(client, headers, "fcm", FCM)

    deleted = client.delete(f"/v1/me/devices/{drop}", headers=headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_problem(client.delete(f"/v1/me/devices/{drop}", headers=headers), 404, "device_id")
    assert [d["device_id"] for d in client.get("/v1/me/devices", headers=headers).json()] == [keep]
    assert [d["token"] for d in export(client, headers)["devices"]] == [APNS]
    assert register(client, headers, "fcm", FCM) != drop


def test_someone_elses_device_is_404_and_survives(client: Client, runtime: Runtime, as_user: AsUser) -> None:
    alice, bob = as_user(ALICE), as_user(BOB)
    register(client, alice, "webhook", WEBHOOK)
    bobs = register(client, bob, "fcm", FCM)

    assert_problem(client.delete(f"/v1/me/devices/{bobs}", headers=alice), 404, "device_id")
    assert_problem(client.delete("/v1/me/devices/dev_000000000000000000000000", headers=alice), 404)
    assert_problem(
        client.delete("/v1/me/devices/dev_000000000000000000000000", headers=as_user("new.user@example.com")),
        404,
    )
    assert [d["device_id"] for d in client.get("/v1/me/devices", headers=bob).json()] == [bobs]
    assert runtime.store.directory.status(runtime.store.pseudonyms.subject_ref("new.user@example.com")) == (
        "unknown"
    )


@pytest.mark.parametrize("device_id", ["not-a-device", "dev_XYZ", "dev_" + "0" * 25, "../preferences"])
def test_malformed_device_id_is_a_4xx(client: Client, as_user: AsUser, device_id: str) -> None:
    headers = as_user(ALICE)
    register(client, headers, "fcm", FCM)

    response = client.delete(f"/v1/me/devices/{device_id}", headers=headers)

    assert 400 <= response.status_code < 500, response.text
    assert len(client.get("/v1/me/devices", headers=headers).json()) == 1


def test_at_most_ten_active_devices(client: Client, runtime: Runtime, as_user: AsUser) -> None:
    headers = as_user(ALICE)
    ids = [register(client, headers, "fcm", fcm_token(n)) for n in range(10)]
    before = snapshot(client, runtime, headers)

    refused = client.post("/v1/me/devices", headers=headers, json={"platform": "apns", "token": APNS})

    assert_problem(refused, 409, "token")
    assert snapshot(client, runtime, headers) == before
    assert register(client, headers, "fcm", fcm_token(3), status=200) == ids[3]
    assert client.delete(f"/v1/me/devices/{ids[0]}", headers=headers).status_code == 204
    register(client, headers, "apns", APNS)
    assert len(client.get("/v1/me/devices", headers=headers).json()) == 10
    register(client, as_user(BOB), "fcm", fcm_token(99))


def test_registering_a_disabled_token_again_makes_it_active(
    client: Client, runtime: Runtime, as_user: AsUser, clock: Any
) -> None:
    """Regression: the known token came back as the same device, still `disabled`."""
    headers = as_user(ALICE)
    device_id = register(client, headers, "fcm", FCM)
    # What the delivery worker does when the provider calls the token invalid.
    runtime.store.data.writer.run_sync(lambda conn: devices.set_status(conn, device_id, "disabled", clock()))
    assert client.get("/v1/me/devices", headers=headers).json()[0]["status"] == "disabled"

    response = client.post("/v1/me/devices", headers=headers, json={"platform": "fcm", "token": FCM})

    assert response.status_code in (200, 201), response.text
    active = [d for d in client.get("/v1/me/devices", headers=headers).json() if d["status"] == "active"]
    assert [d["device_id"] for d in active] == [response.json()["device_id"]]
    # Active again, so not disabled: the export said "disabled_at" was the moment it came back.
    (exported,) = client.get("/v1/me/export", headers=headers).json()["devices"]
    assert (exported["status"], exported["disabled_at"]) == ("active", None)


BAD_WEBPUSH = [
    "not json at all",
    "[1, 2, 3]",
    '"https://push.example.com/x"',
    json.dumps({"endpoint": f"http://push.example.com/{MARK}", "keys": {"p256dh": "BNc", "auth": "tBH"}}),
    json.dumps({"endpoint": f"ftp://push.example.com/{MARK}", "keys": {"p256dh": "BNc", "auth": "tBH"}}),
    json.dumps({"keys": {"p256dh": "BNcRdreALRFX", "auth": "tBHItJPLfX"}}),
    json.dumps({"endpoint": 42, "keys": {"p256dh": "BNcRdreALRFX", "auth": "tBHItJPLfX"}}),
    json.dumps({"endpoint": "https://push.example.com/abc"}),
    json.dumps({"endpoint": "https://push.example.com/abc", "keys": ["BNc", "tBH"]}),
    json.dumps({"endpoint": "https://push.example.com/abc", "keys": {"p256dh": "BNcRdreALRFX"}}),
    json.dumps({"endpoint": "https://push.example.com/abc", "keys": {"auth": "tBHItJPLfX"}}),
    json.dumps({"endpoint": "https://push.example.com/abc", "keys": {"p256dh": 1, "auth": "tBHItJPLfX"}}),
]

# Not white space, and as invisible: a NUL, a zero-width space, a soft hyphen, a bidi override.
UNSEEN = ["\x00", "\u200b", "\u00ad", "\u202e"]

BAD_DEVICES: list[tuple[Any, str]] = [
    *(({"platform": "webpush", "token": token}, "token") for token in BAD_WEBPUSH),
    *(({"platform": "webpush", "token": WEBPUSH.replace(MARK, MARK + ch)}, "token") for ch in UNSEEN),
    *(
        ({"platform": p, "token": TOKENS[p][:12] + ch + TOKENS[p][12:]}, "token")
        for p in TOKENS
        for ch in UNSEEN
    ),
    ({"platform": "fcm", "token": "t" * 10 * 1024}, "token"),
    ({"platform": "fcm", "token": "short"}, "token"),
    ({"platform": "fcm", "token": ""}, "token"),
    ({"platform": "fcm", "token": f"with space {MARK}"}, "token"),
    ({"platform": "apns", "token": f"line\nbreak{MARK}"}, "token"),
    ({"platform": "fcm", "token": 12345678901}, "token"),
    ({"platform": "fcm", "token": None}, "token"),
    ({"platform": "fcm"}, "token"),
    ({"platform": "sms", "token": fcm_token(1)}, "platform"),
    ({"platform": "FCM", "token": fcm_token(1)}, "platform"),
    ({"token": fcm_token(1)}, "platform"),
    ({"platform": "fcm", "token": fcm_token(1), "status": "active"}, "status"),
    ({"platform": "fcm", "token": fcm_token(1), "device_id": "dev_000000000000000000000000"}, "device_id"),
    ([fcm_token(1)], "body"),
]


def test_bad_device_registrations_are_refused_naming_the_field(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    headers = as_user(ALICE)
    register(client, headers, "apns", APNS)
    before = snapshot(client, runtime, headers)

    for body, field in BAD_DEVICES:
        response = client.post("/v1/me/devices", headers=headers, json=body)
        assert response.status_code == 400, (body, response.text)
        assert_problem(response, 400, field)
        assert MARK not in response.text or field != "token" or "webpush" not in json.dumps(body), (
            response.text
        )

    assert snapshot(client, runtime, headers) == before


BAD_APNS = {
    "not hex": f"{MARK}-not-hex-at-all",
    "too short": "0123456789abcde",  # 15 hex digits
    "too long": "a" * 201,
}


@pytest.mark.parametrize("token", list(BAD_APNS.values()), ids=list(BAD_APNS))
def test_an_apns_token_the_adapter_would_never_send_is_refused_at_registration(
    client: Client, runtime: Runtime, as_user: AsUser, token: str
) -> None:
    """Regression: a token that is not 16 to 200 hex digits was taken (201), and the APNs adapter
    disabled the device at its first push (`MalformedToken`) without asking Apple."""
    headers = as_user(ALICE)
    register(client, headers, "fcm", FCM)
    before = snapshot(client, runtime, headers)

    response = client.post("/v1/me/devices", headers=headers, json={"platform": "apns", "token": token})

    body = assert_problem(response, 400, "token")
    assert "hex" in body["detail"] or "hex" in json.dumps(body.get("extra")), body
    assert MARK not in response.text
    assert snapshot(client, runtime, headers) == before


@pytest.mark.parametrize("token", ["0123456789abcdef", "0123456789ABCDEF" * 4, "a" * 200])
def test_an_apns_token_of_16_to_200_hex_digits_is_taken(
    client: Client, runtime: Runtime, as_user: AsUser, token: str
) -> None:
    headers = as_user(ALICE)

    device_id = register(client, headers, "apns", token)

    [exported] = export(client, headers)["devices"]
    assert (exported["device_id"], exported["platform"], exported["token"]) == (
        device_id,
        "apns",
        token.lower(),
    )


def _stored_before_in_upper_case(runtime: Runtime, user_id: str, device_id: str, token: str) -> None:
    """The device row as registration kept an upper-case apns token before it kept lower case."""
    store = runtime.store
    key = store.directory.resolve(store.pseudonyms.subject_ref(user_id))
    assert key is not None
    upper = token.upper()
    tag = devices.token_tag(store.device_tags, "apns", upper)

    def unit(conn: Any) -> None:
        devices.refresh(conn, key, device_id, "apns", upper)
        conn.execute("UPDATE devices SET token_tag = ? WHERE device_id = ?", (tag, device_id))

    store.data.writer.run_sync(unit)


def test_an_apns_device_stored_in_upper_case_is_found_again_in_lower_case(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    """Review of 701289a: registered again, a device stored in upper case before tokens were
    kept in lower case became a second device of the same phone (each push sent twice)."""
    alice = as_user(ALICE)
    device_id = register(client, alice, "apns", "ab" * 32)
    _stored_before_in_upper_case(runtime, ALICE, device_id, "ab" * 32)

    again = register(client, alice, "apns", "AB" * 32, status=200)

    assert again == device_id
    [exported] = export(client, alice)["devices"]
    assert (exported["token"], exported["status"]) == ("ab" * 32, "active")


def test_an_apns_device_stored_in_upper_case_is_released_to_its_new_user(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    alice, bob = as_user(ALICE), as_user("bob")
    device_id = register(client, alice, "apns", "ab" * 32)
    _stored_before_in_upper_case(runtime, ALICE, device_id, "ab" * 32)

    register(client, bob, "apns", "ab" * 32)

    [device] = client.get("/v1/me/devices", headers=alice).json()
    assert device["status"] == "disabled"


def test_an_apns_token_in_upper_case_is_the_same_device(client: Client, as_user: AsUser) -> None:
    """Regression (review of 43c060c): the same hex token in the other case was another device,
    so when the phone passed to another user (an app that writes hex in upper case since an
    update) the user before kept getting pushes on it."""
    alice, bob = as_user(ALICE), as_user("bob")
    register(client, alice, "apns", "ab" * 32)

    register(client, bob, "apns", "AB" * 32)

    [device] = client.get("/v1/me/devices", headers=alice).json()
    assert device["status"] == "disabled"


def test_deeply_nested_webpush_token_is_a_400(client: Client, runtime: Runtime, as_user: AsUser) -> None:
    """Regression: json.loads raised RecursionError (not a ValueError) and the request answered 500."""
    response = client.post(
        "/v1/me/devices",
        headers=as_user(ALICE),
        json={"platform": "webpush", "token": "[" * 2000 + "]" * 2000},
    )

    assert_problem(response, 400, "token")
    assert row_counts(runtime)["devices"] == 0


def test_device_list_of_a_new_user_is_empty_and_writes_nothing(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    response = client.get("/v1/me/devices", headers=as_user(ALICE))

    assert response.status_code == 200
    assert response.json() == []
    assert runtime.store.directory.status(runtime.store.pseudonyms.subject_ref(ALICE)) == "unknown"
    assert row_counts(runtime) == dict.fromkeys(row_counts(runtime), 0)


# -- location ---------------------------------------------------------------------------------


def test_location_without_consent_is_409_and_writes_nothing(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    new_user = client.put("/v1/me/location", headers=as_user(BOB), json={"lat": LAT, "lon": LON})
    assert_problem(new_user, 409, "location")
    assert runtime.store.directory.status(runtime.store.pseudonyms.subject_ref(BOB)) == "unknown"

    headers = as_user(ALICE)
    consent(client, headers, "marketing", True)
    consent(client, headers, "location", False)
    before = snapshot(client, runtime, headers)
    assert_problem(
        client.put("/v1/me/location", headers=headers, json={"lat": LAT, "lon": LON}), 409, "location"
    )
    assert snapshot(client, runtime, headers) == before
    assert before[0]["location"] is None


def test_location_is_kept_only_as_a_six_character_geohash(
    client: Client, runtime: Runtime, as_user: AsUser, data_dir: Path
) -> None:
    headers = as_user(ALICE)
    consent(client, headers, "location", True)

    response = client.put("/v1/me/location", headers=headers, json={"lat": LAT, "lon": LON})

    assert response.status_code == 200, response.text
    assert response.json() == {"geohash": GEOHASH, "precision": 6, "updated_at": "2026-11-23T10:00:00Z"}
    assert str(LAT) not in response.text
    assert export(client, headers)["location"] == {
        "geohash": GEOHASH,
        "precision": 6,
        "updated_at": "2026-11-23T10:00:00Z",
    }
    needles = ["31.230416", "121.473701", "31.2304", "121.4737", "3123041", "12147370"]
    assert scan_tables(readers(runtime), needles) == {}  # in no column, as text, blob or number
    # The bytes on disk, while the WAL still holds the write and after a checkpoint folded it in.
    assert (data_dir / f"{DATA_FILE}-wal").stat().st_size > 0, "no live WAL to scan"
    assert scan_bytes(data_dir, needles) == {}
    runtime.store.data.checkpoint()
    assert scan_bytes(data_dir, needles) == {}


def test_a_new_location_replaces_the_old_one(
    client: Client, runtime: Runtime, as_user: AsUser, clock: Any
) -> None:
    headers = as_user(ALICE)
    consent(client, headers, "location", True)
    client.put("/v1/me/location", headers=headers, json={"lat": LAT, "lon": LON})
    clock.advance(minutes=10)

    moved = client.put("/v1/me/location", headers=headers, json={"lat": 39.9042, "lon": 116.4074})

    assert moved.status_code == 200
    assert moved.json()["geohash"] == "wx4g0b"
    assert export(client, headers)["location"] == {
        "geohash": "wx4g0b",
        "precision": 6,
        "updated_at": "2026-11-23T10:10:00Z",
    }
    assert row_counts(runtime)["locations"] == 1


def test_location_accepts_the_whole_globe(client: Client, as_user: AsUser) -> None:
    headers = as_user(ALICE)
    consent(client, headers, "location", True)

    for lat, lon in [(90, 180), (-90, -180), (0, 0), (-33.8688, 151.2093), (64.1466, -21.9426)]:
        response = client.put("/v1/me/location", headers=headers, json={"lat": lat, "lon": lon})
        assert response.status_code == 200, (lat, lon, response.text)
        assert len(response.json()["geohash"]) == 6


BAD_LOCATIONS: list[tuple[Any, str]] = [
    ({"lat": 91, "lon": LON}, "lat"),
    ({"lat": -90.0001, "lon": LON}, "lat"),
    ({"lat": LAT, "lon": 181}, "lon"),
    ({"lat": LAT, "lon": -180.5}, "lon"),
    ({"lat": "31.23", "lon": LON}, "lat"),
    ({"lat": LAT, "lon": "121.47"}, "lon"),
    ({"lat": None, "lon": LON}, "lat"),
    ({"lat": True, "lon": LON}, "lat"),
    ({"lat": LAT}, "lon"),
    ({"lon": LON}, "lat"),
    ({"lat": LAT, "lon": LON, "accuracy": 5}, "accuracy"),
    ({"lat": LAT, "lon": LON, "geohash": "wtw3sjq"}, "geohash"),
    ([LAT, LON], "body"),
]


def test_bad_locations_are_refused_naming_the_field(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    headers = as_user(ALICE)
    consent(client, headers, "location", True)
    assert (
        client.put("/v1/me/location", headers=headers, json={"lat": 39.9042, "lon": 116.4074}).status_code
        == 200
    )
    before = snapshot(client, runtime, headers)

    for body, field in BAD_LOCATIONS:
        response = client.put("/v1/me/location", headers=headers, json=body)
        assert response.status_code == 400, (body, response.text)
        assert_problem(response, 400, field)

    raw = b'{"lat": NaN, "lon": 0}'
    response = client.put(
        "/v1/me/location", headers={**headers, "Content-Type": "application/json"}, content=raw
    )
    assert_problem(response, 400)
    assert snapshot(client, runtime, headers) == before


def test_withdrawing_location_consent_deletes_the_location(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    headers = as_user(ALICE)
    consent(client, headers, "location", True)
    client.put("/v1/me/location", headers=headers, json={"lat": LAT, "lon": LON})
    assert export(client, headers)["location"] is not None

    consent(client, headers, "location", False)

    assert export(client, headers)["location"] is None
    assert row_counts(runtime)["locations"] == 0
    consent(client, headers, "location", True)
    assert export(client, headers)["location"] is None
    assert_problem(
        client.put("/v1/me/location", headers=as_user(BOB), json={"lat": LAT, "lon": LON}), 409, "location"
    )


def test_location_updates_racing_consent_changes_never_outlive_the_consent(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    headers = as_user(ALICE)
    consent(client, headers, "location", True)

    def job(n: int) -> int:
        if n % 3 == 0:
            body = {"granted": n % 2 == 0, "notice_version": f"n{n}"}
            return client.put("/v1/me/consents/location", headers=headers, json=body).status_code
        return client.put("/v1/me/location", headers=headers, json={"lat": LAT, "lon": LON}).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(job, range(30)))

    assert set(statuses) <= {200, 409}
    state = export(client, headers)
    if not state["preferences"]["consents"]["location"]["granted"]:
        assert state["location"] is None
    assert len(state["consent_history"]) == 1 + len(range(0, 30, 3))
    assert ledger.verify(runtime.store.data.reader()).ok


def test_the_same_token_on_another_platform_is_another_device(
    client: TestClient[Litestar], as_user: Callable[[str], dict[str, str]]
) -> None:
    headers = as_user("platform-twins")
    shared = "5a4b3c2d1e0f9a8b7c6d1234"  # hex, which an APNs token must be
    fcm = client.post("/v1/me/devices", json={"platform": "fcm", "token": shared}, headers=headers)
    apns = client.post("/v1/me/devices", json={"platform": "apns", "token": shared}, headers=headers)
    assert (fcm.status_code, apns.status_code) == (201, 201)
    assert fcm.json()["device_id"] != apns.json()["device_id"]
    listed = {d["platform"] for d in client.get("/v1/me/devices", headers=headers).json()}
    assert listed == {"fcm", "apns"}
