"""Web Push devices: a subscription is named by its endpoint, whatever its JSON looks like.

A browser gives the same subscription with `expirationTime`, in another key order or spacing;
re-subscribing may keep the endpoint and change the keys. Each is the device already registered,
not a second one (which got every push twice), and the list tells devices apart by the push
service's host, never by the endpoint, which is a capability URL.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from litestar import Litestar
from litestar.testing import TestClient

from gateway.runtime import Runtime
from gateway.services.devices import MAX_ACTIVE_DEVICES
from storage.directory import SubjectKey
from storage.repositories import devices

Client = TestClient[Litestar]
Headers = dict[str, str]
AsUser = Callable[[str], Headers]

USER = "webpush-devices-user"
MARK = "Zq7WPDEVMARK"  # in every endpoint: must not come back in a device list
ENDPOINT = f"https://fcm.googleapis.com/fcm/send/{MARK}-dQw4w9WgXcQ:APA91bHun4MxP5egoKMwt2KZFBaFUH"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def new_keys() -> dict[str, str]:
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {"p256dh": b64(point), "auth": b64(os.urandom(16))}


KEYS = new_keys()


def canonical(endpoint: str = ENDPOINT, keys: dict[str, str] = KEYS) -> str:
    """The one form the gateway keeps (that of Python's json.dumps)."""
    return json.dumps({"endpoint": endpoint, "keys": {"p256dh": keys["p256dh"], "auth": keys["auth"]}})


def spellings(endpoint: str = ENDPOINT, keys: dict[str, str] = KEYS) -> list[str]:
    """The same subscription as browsers and libraries write it."""
    escaped = endpoint.replace("/", "\\/")
    return [
        json.dumps({"endpoint": endpoint, "keys": keys}, separators=(",", ":")),  # JSON.stringify
        json.dumps({"endpoint": endpoint, "expirationTime": None, "keys": keys}, separators=(",", ":")),
        json.dumps(
            {"keys": {"auth": keys["auth"], "p256dh": keys["p256dh"]}, "endpoint": endpoint}, indent=2
        ),
        json.dumps({"endpoint": endpoint, "expirationTime": 1798761600000, "keys": keys}),
        '{ "endpoint" : "%s" ,\n "keys" : { "p256dh" : "%s" , "auth" : "%s" } }'  # noqa: UP031
        % (escaped, keys["p256dh"], keys["auth"]),
        canonical(endpoint, keys),
    ]


def register(client: Client, headers: Headers, token: str) -> tuple[int, str]:
    answer = client.post("/v1/me/devices", headers=headers, json={"platform": "webpush", "token": token})
    assert answer.status_code in (200, 201), answer.text
    return answer.status_code, str(answer.json()["device_id"])


def listed(client: Client, headers: Headers) -> list[dict[str, Any]]:
    answer = client.get("/v1/me/devices", headers=headers)
    assert answer.status_code == 200, answer.text
    assert MARK not in answer.text
    devices_: list[dict[str, Any]] = answer.json()
    return devices_


def exported_tokens(client: Client, headers: Headers) -> dict[str, str]:
    answer = client.get("/v1/me/export", headers=headers)
    assert answer.status_code == 200, answer.text
    return {d["device_id"]: d["token"] for d in answer.json()["devices"]}


def subject(runtime: Runtime) -> SubjectKey:
    store = runtime.store
    key = store.directory.resolve(store.pseudonyms.subject_ref(USER))
    assert key is not None
    return key


def fingerprint(runtime: Runtime, device_id: str) -> bytes:
    row = (
        runtime.store.data.reader()
        .execute("SELECT fingerprint FROM devices WHERE device_id = ?", (device_id,))
        .fetchone()
    )
    return bytes(row[0])


def stored_before(runtime: Runtime, clock: Any, token: str, status: str = "active") -> str:
    """A webpush device as the gateway stored it before this change: the raw JSON sealed, and
    fingerprinted by the raw string."""
    store = runtime.store
    key = store.directory.ensure(store.pseudonyms.subject_ref(USER), clock())
    legacy = key.cipher.fingerprint(f"webpush\0{token}".encode())

    def unit(conn: Any) -> str:
        device_id = devices.insert(
            conn, key, "webpush", token, devices.token_tag(store.device_tags, "webpush", token), clock()
        )
        conn.execute(
            "UPDATE devices SET fingerprint = ?, status = ? WHERE device_id = ?", (legacy, status, device_id)
        )
        return device_id

    device_id: str = runtime.store.data.writer.run_sync(unit)
    return device_id


# -- one subscription, one device -------------------------------------------------------------


def test_one_subscription_spelled_many_ways_is_one_device(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    """The review's reproduction: the same subscription with `"expirationTime": null` and spaces
    was a second active device (201, another device_id), and the browser got every push twice."""
    headers = as_user(USER)
    first_status, first = register(client, headers, spellings()[0])

    answers = [register(client, headers, token) for token in spellings()[1:]]

    assert first_status == 201
    assert answers == [(200, first)] * (len(spellings()) - 1)
    assert [d["device_id"] for d in listed(client, headers)] == [first]
    assert exported_tokens(client, headers) == {first: canonical()}


def test_the_subscription_is_kept_without_what_delivery_does_not_need(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    headers = as_user(USER)
    token = json.dumps(
        {"endpoint": ENDPOINT, "expirationTime": None, "keys": {**KEYS, "note": "x"}, "extra": MARK}
    )

    _, device_id = register(client, headers, token)

    assert exported_tokens(client, headers) == {device_id: canonical()}
    [row] = devices.list_for(runtime.store.data.reader(), subject(runtime))
    assert row.token == canonical()


def test_new_keys_at_the_same_endpoint_update_the_device(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    """A browser that re-subscribes at the same endpoint with new keys can only decrypt pushes
    encrypted to the new ones: the device is kept, its keys replaced."""
    headers = as_user(USER)
    _, device_id = register(client, headers, canonical())
    before = fingerprint(runtime, device_id)
    rotated = new_keys()

    status, again = register(client, headers, spellings(keys=rotated)[1])

    assert (status, again) == (200, device_id)
    assert exported_tokens(client, headers) == {device_id: canonical(keys=rotated)}
    assert fingerprint(runtime, device_id) == before
    assert register(client, headers, canonical(keys=rotated)) == (200, device_id)


def test_another_endpoint_is_another_device(client: Client, runtime: Runtime, as_user: AsUser) -> None:
    headers = as_user(USER)
    _, first = register(client, headers, canonical())

    status, second = register(client, headers, canonical(ENDPOINT + "x"))

    assert status == 201
    assert second != first
    assert len(listed(client, headers)) == 2
    assert register(client, as_user("someone-else"), canonical())[0] == 201


def test_a_disabled_subscription_registered_again_with_new_keys_is_active_with_them(
    client: Client, runtime: Runtime, as_user: AsUser, clock: Any
) -> None:
    headers = as_user(USER)
    _, device_id = register(client, headers, canonical())
    runtime.store.data.writer.run_sync(lambda conn: devices.set_status(conn, device_id, "disabled", clock()))
    rotated = new_keys()

    assert register(client, headers, spellings(keys=rotated)[0]) == (200, device_id)

    assert [(d["device_id"], d["status"]) for d in listed(client, headers)] == [(device_id, "active")]
    assert exported_tokens(client, headers) == {device_id: canonical(keys=rotated)}


def test_a_respelled_subscription_is_not_refused_at_the_device_limit(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    """It was a new device, so a user at the limit got 409 for a device they already had."""
    headers = as_user(USER)
    for n in range(MAX_ACTIVE_DEVICES - 1):
        answer = client.post(
            "/v1/me/devices", headers=headers, json={"platform": "fcm", "token": f"fcm-{MARK}-{n:04d}"}
        )
        assert answer.status_code == 201, answer.text
    _, device_id = register(client, headers, spellings()[0])

    assert register(client, headers, spellings()[1]) == (200, device_id)
    assert len(listed(client, headers)) == MAX_ACTIVE_DEVICES


# -- devices stored before ----------------------------------------------------------------------


def test_a_subscription_stored_before_is_found_whatever_its_spelling(
    client: Client, runtime: Runtime, as_user: AsUser, clock: Any
) -> None:
    """Rows fingerprinted by the raw JSON are found by their endpoint, and take today's form."""
    headers = as_user(USER)
    old = stored_before(runtime, clock, spellings()[1])
    legacy = fingerprint(runtime, old)

    assert register(client, headers, spellings()[2]) == (200, old)

    assert [d["device_id"] for d in listed(client, headers)] == [old]
    assert exported_tokens(client, headers) == {old: canonical()}
    assert fingerprint(runtime, old) != legacy
    assert register(client, headers, spellings()[4]) == (200, old)
    assert len(listed(client, headers)) == 1


def test_a_disabled_subscription_stored_before_comes_back_active(
    client: Client, runtime: Runtime, as_user: AsUser, clock: Any
) -> None:
    headers = as_user(USER)
    old = stored_before(runtime, clock, spellings()[0], status="disabled")

    assert register(client, headers, spellings()[3]) == (200, old)

    assert [(d["device_id"], d["status"]) for d in listed(client, headers)] == [(old, "active")]


def test_duplicates_stored_before_become_one_device_when_registered_again(
    client: Client, runtime: Runtime, as_user: AsUser, clock: Any
) -> None:
    """What the defect left behind: one subscription stored twice. The next registration keeps
    the oldest active row and removes the others."""
    headers = as_user(USER)
    disabled = stored_before(runtime, clock, spellings()[5], status="disabled")
    clock.advance(minutes=1)
    first = stored_before(runtime, clock, spellings()[0])
    clock.advance(minutes=1)
    stored_before(runtime, clock, spellings()[1])
    clock.advance(minutes=1)
    other = register(client, headers, canonical(ENDPOINT + "-other"))[1]
    assert len(listed(client, headers)) == 4

    assert register(client, headers, spellings()[3]) == (200, first)

    assert [d["device_id"] for d in listed(client, headers)] == [first, other]
    assert disabled not in exported_tokens(client, headers)


def test_other_platforms_keep_their_tokens_as_given(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    """Only webpush tokens are JSON: a webhook token that looks like a subscription is itself."""
    headers = as_user(USER)
    token = json.dumps({"endpoint": ENDPOINT, "keys": KEYS}, separators=(",", ":"))
    first = client.post("/v1/me/devices", headers=headers, json={"platform": "webhook", "token": token})
    respelled = client.post(
        "/v1/me/devices", headers=headers, json={"platform": "webhook", "token": token.replace(",", ", ")}
    )

    assert (first.status_code, respelled.status_code) == (201, 400)  # white space is refused there
    assert exported_tokens(client, headers) == {first.json()["device_id"]: token}


# -- what the list shows ----------------------------------------------------------------------


def test_the_list_names_the_push_service_never_the_endpoint(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    headers = as_user(USER)
    firefox = f"https://updates.push.services.mozilla.com/wpush/v2/gAAAAABn{MARK}Lk2q9Vx0"
    safari = f"https://web.push.apple.com/QGuQyavXutnMH{MARK}7iYbc"
    ids = {
        register(client, headers, canonical(endpoint))[1]: endpoint
        for endpoint in (ENDPOINT, firefox, safari)
    }

    hints = {d["device_id"]: d["token_hint"] for d in listed(client, headers)}

    assert {ids[device_id]: hint for device_id, hint in hints.items()} == {
        ENDPOINT: "googleapis.com …aFUH",
        firefox: "mozilla.com …9Vx0",
        safari: "push.apple.com …iYbc",
    }
    for hint in hints.values():
        assert "/" not in hint
        assert len(hint) < 24
