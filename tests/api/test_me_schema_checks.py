"""What `/v1/me` refuses at the edge: Web Push subscriptions whose keys cannot be encrypted to or
whose endpoint is on no push service the delivery adapter allows, and notice versions that carry
personal data (stored in clear, kept through erasure)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

from gateway.routes.pages import NOTICE_VERSION
from gateway.runtime import Runtime
from storage import ledger

Client = TestClient[Litestar]
Headers = dict[str, str]
AsUser = Callable[[str], Headers]

USER = "schema-checks-user"
MARK = "Zq7SCHEMAMARK"  # in every endpoint: must not come back in a refusal
POINT = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
)
AUTH = os.urandom(16)


def b64(data: bytes, *, padded: bool = False) -> str:
    text = base64.urlsafe_b64encode(data).decode()
    return text if padded else text.rstrip("=")


def webpush(p256dh: str = b64(POINT), auth: str = b64(AUTH), endpoint: str = "") -> str:
    endpoint = endpoint or f"https://fcm.googleapis.com/fcm/send/{MARK}-{os.urandom(4).hex()}"
    return json.dumps({"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}})


def devices_and_events(client: Client, runtime: Runtime, headers: Headers) -> tuple[Any, int]:
    answer = client.get("/v1/me/devices", headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json(), len(list(ledger.events(runtime.store.data.reader())))


# -- webpush tokens -----------------------------------------------------------------------------


GOOD_WEBPUSH = {
    "unpadded": webpush(),
    "padded": webpush(b64(POINT, padded=True), b64(AUTH, padded=True)),
    "firefox": webpush(endpoint=f"https://updates.push.services.mozilla.com/wpush/v2/{MARK}"),
    "safari": webpush(endpoint=f"https://web.push.apple.com/QGuQyavXutnMH/{MARK}"),
    "edge": webpush(endpoint=f"https://wns2-par02p.notify.windows.com/w/?token={MARK}"),
}

BAD_WEBPUSH = {
    "review_repro_non_ascii_p256dh": webpush("\u00e9", "x"),
    "p256dh_64_bytes": webpush(b64(POINT[:64])),
    "p256dh_66_bytes": webpush(b64(POINT + b"\x00")),
    "p256dh_compressed_prefix": webpush(b64(b"\x02" + POINT[1:])),
    "p256dh_standard_alphabet": webpush(base64.b64encode(b"\x04" + b"\xfb" * 64).decode()),
    "p256dh_impossible_length": webpush(b64(POINT) + "A"),
    "p256dh_inner_padding": webpush(b64(POINT[:32], padded=True) + b64(POINT[32:])),
    "auth_15_bytes": webpush(auth=b64(AUTH[:15])),
    "auth_17_bytes": webpush(auth=b64(AUTH + b"\x00")),
    "auth_3_bytes": webpush(auth="AAAA"),  # was sent: the browser could never decrypt it
    "auth_empty": webpush(auth=""),
    "http_endpoint": webpush(endpoint=f"http://fcm.googleapis.com/{MARK}"),
    # Hosts outside the delivery adapter's push services: every push to them would fail.
    "unknown_push_service": webpush(endpoint=f"https://push.example.com/{MARK}"),
    "lookalike_suffix": webpush(endpoint=f"https://fcm.googleapis.com.example.com/{MARK}"),
    "lookalike_prefix": webpush(endpoint=f"https://evilfcm.googleapis.com/{MARK}"),
    # A service with one host allows no subdomain: a made-up one never answers, and its failures
    # counted against the service's circuit, shared by every user's pushes to it.
    "made_up_subdomain": webpush(endpoint=f"https://nx.updates.push.services.mozilla.com/{MARK}"),
    "apns_not_safari": webpush(endpoint=f"https://api.push.apple.com/3/device/{MARK}"),
    "windows_without_region": webpush(endpoint=f"https://notify.windows.com/w/?token={MARK}"),
    "loopback": webpush(endpoint=f"https://127.0.0.1:8443/{MARK}"),
    "userinfo": webpush(endpoint=f"https://{MARK}@fcm.googleapis.com/fcm/send/x"),
    # Not ASCII in the host or port: the client refuses to send there, and counted as the push
    # service failing, one user's five of them opened its circuit for everyone.
    "arabic_indic_port": webpush(endpoint=f"https://fcm.googleapis.com:\u0664\u0664\u0663/{MARK}"),
    "non_ascii_subdomain": webpush(endpoint=f"https://\u00e4.fcm.googleapis.com/{MARK}"),
    "port_not_443": webpush(endpoint=f"https://fcm.googleapis.com:1/{MARK}"),  # never connects
    "port_out_of_range": webpush(endpoint=f"https://fcm.googleapis.com:99999/{MARK}"),
    # The fake keys some older tests register (tests/api/test_me_devices_location.py).
    "fake_keys": webpush(f"BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUb{MARK}", f"tBHI{MARK}JPLfX"),
}


@pytest.mark.parametrize("token", list(GOOD_WEBPUSH.values()), ids=list(GOOD_WEBPUSH))
def test_a_real_subscription_is_registered(client: Client, as_user: AsUser, token: str) -> None:
    answer = client.post(
        "/v1/me/devices", headers=as_user(USER), json={"platform": "webpush", "token": token}
    )
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize("token", list(BAD_WEBPUSH.values()), ids=list(BAD_WEBPUSH))
def test_a_subscription_that_could_never_be_delivered_is_refused_naming_token(
    client: Client, runtime: Runtime, as_user: AsUser, token: str
) -> None:
    headers = as_user(USER)
    before = devices_and_events(client, runtime, headers)
    answer = client.post("/v1/me/devices", headers=headers, json={"platform": "webpush", "token": token})
    assert_problem(answer, 400, "token")
    assert MARK not in answer.text
    assert devices_and_events(client, runtime, headers) == before


# -- notice versions ----------------------------------------------------------------------------


GOOD_NOTICES = ["v1", "2026-01", "privacy-notice:3.2", "notice-2026.11+zh", "2026-11-15", "v2026.11.15-001"]
PII_NOTICES = {
    "e164_phone": "+8613812345678",
    "grouped_e164_phone": "+86-138-1234-5678",
    "cn_mobile": "13812345678",
    "cn_mobile_in_a_version": "v2.13812345678",
    "card": "4111111111111111",
    "cn_resident_id": "11010519491231002X",
    "underscored_card": "v2_4111_1111_1111_1111",  # labels group digits with `_` and `:` too
    "coloned_mobile": "138:1234:5678",
    "trailing_newline": "v1\n",  # not personal data, but `$` matched before it and it was kept
    # No detector's kind, but a number long enough to be a person's, kept in clear through erasure.
    "national_phone": "015112345678",
    "iban": "DE89370400440532013000",
}


@pytest.mark.parametrize("notice", GOOD_NOTICES)
def test_ordinary_notice_versions_are_recorded(client: Client, as_user: AsUser, notice: str) -> None:
    headers = as_user(USER)
    answer = client.put(
        "/v1/me/consents/marketing", headers=headers, json={"granted": True, "notice_version": notice}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["receipt"]["notice_version"] == notice
    state = client.get("/v1/me/preferences", headers=headers).json()["consents"]["marketing"]
    assert (state["granted"], state["notice_version"]) == (True, notice)


@pytest.mark.parametrize("notice", list(PII_NOTICES.values()), ids=list(PII_NOTICES))
@pytest.mark.parametrize("granted", [True, False])
def test_a_notice_version_holding_personal_data_is_refused(
    client: Client, runtime: Runtime, as_user: AsUser, notice: str, granted: bool
) -> None:
    headers = as_user(USER)
    answer = client.put(
        "/v1/me/consents/marketing", headers=headers, json={"granted": True, "notice_version": "v1"}
    )
    assert answer.status_code == 200, answer.text
    before = len(list(ledger.events(runtime.store.data.reader())))

    answer = client.put(
        "/v1/me/consents/marketing", headers=headers, json={"granted": granted, "notice_version": notice}
    )

    assert_problem(answer, 400, "notice_version")
    assert notice not in answer.text
    assert len(list(ledger.events(runtime.store.data.reader()))) == before
    state = client.get("/v1/me/preferences", headers=headers).json()["consents"]["marketing"]
    assert (state["granted"], state["notice_version"]) == (True, "v1")


@pytest.mark.parametrize("notice", [USER, f"{USER}:v1", f"2026-11.{USER}", f"v1+{USER}-2"])
def test_a_notice_version_holding_the_users_own_id_is_refused(
    client: Client, runtime: Runtime, as_user: AsUser, notice: str
) -> None:
    """It was recorded, and stayed in clear in the ledger after the user's erasure."""
    headers = as_user(USER)
    before = len(list(ledger.events(runtime.store.data.reader())))
    answer = client.put(
        "/v1/me/consents/marketing", headers=headers, json={"granted": True, "notice_version": notice}
    )
    assert_problem(answer, 400, "notice_version")
    assert USER not in answer.text
    assert len(list(ledger.events(runtime.store.data.reader()))) == before
    # Another user's id, or the id's words apart, is just text to this user's consent.
    other = client.put(
        "/v1/me/consents/marketing",
        headers=as_user("someone-else"),
        json={"granted": True, "notice_version": notice},
    )
    assert other.status_code == 200, other.text


@pytest.mark.parametrize("user_id", ["carol", "Anna", "u_42", "100234567891"])
def test_a_notice_version_that_is_the_user_id_is_refused(
    client: Client, runtime: Runtime, as_user: AsUser, user_id: str
) -> None:
    """Ids under eight characters were not looked for at all: `carol`'s notice version `carol` was
    kept in clear in the ledger, which her erasure leaves; and for a while, under the rule for
    short numbers, neither was a long numeric id."""
    before = len(list(ledger.events(runtime.store.data.reader())))
    answer = client.put(
        "/v1/me/consents/marketing",
        headers=as_user(user_id),
        json={"granted": True, "notice_version": user_id.upper()},
    )
    assert_problem(answer, 400, "notice_version")
    assert len(list(ledger.events(runtime.store.data.reader()))) == before


@pytest.mark.parametrize("short_id", ["2026", "center", "12", "v1"])
@pytest.mark.parametrize("granted", [True, False])
def test_a_short_user_id_inside_an_ordinary_notice_is_chance(
    client: Client, as_user: AsUser, short_id: str, granted: bool
) -> None:
    """The page's own notice holds users `2026` and `center`: their consents, and withdrawals,
    were refused."""
    for notice in (NOTICE_VERSION, "v1.2", "2025-12-01"):
        answer = client.put(
            "/v1/me/consents/marketing",
            headers=as_user(short_id),
            json={"granted": granted, "notice_version": notice},
        )
        assert answer.status_code == 200, (notice, answer.text)


@pytest.mark.parametrize("short_id", ["3", "12", "v1", "2026"])
@pytest.mark.parametrize("granted", [True, False])
def test_a_notice_version_that_is_a_numeric_or_very_short_id_is_chance(
    client: Client, as_user: AsUser, short_id: str, granted: bool
) -> None:
    """Notice versions are often numbers: user `3` could neither give nor withdraw consent under
    notice `3` (a review of the rule above found it)."""
    answer = client.put(
        "/v1/me/consents/marketing",
        headers=as_user(short_id),
        json={"granted": granted, "notice_version": short_id},
    )
    assert answer.status_code == 200, answer.text


def test_the_length_bound_stays(client: Client, as_user: AsUser) -> None:
    headers = as_user(USER)
    for notice, status in (("v" * 64, 200), ("v" * 65, 400)):
        answer = client.put(
            "/v1/me/consents/marketing", headers=headers, json={"granted": True, "notice_version": notice}
        )
        assert answer.status_code == status, answer.text
