"""What `GET /v1/me/devices` and the file sink show of a token: enough to tell devices apart, never enough to
push to one. A Web Push endpoint is a capability URL: only its host's last labels show, and its
last four characters only where many more stay hidden."""

from __future__ import annotations

import json

import pytest

from clients.delivery.token_hint import token_hint

KEYS = {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUb", "auth": "tBHItJPLfX"}


def webpush(endpoint: str) -> str:
    return json.dumps({"endpoint": endpoint, "keys": KEYS})


@pytest.mark.parametrize(
    ("endpoint", "hint"),
    [
        ("https://fcm.googleapis.com/fcm/send/cZ3x:APA91bHun4MxP5egoKMwt2KZFBaFUH", "googleapis.com …aFUH"),
        ("https://updates.push.services.mozilla.com/wpush/v2/gAAAAABnLk2q9Vx0", "mozilla.com …9Vx0"),
        ("https://wns2-par02p.notify.windows.com/w/?token=BQYAAADzb%2bP3%3d", "windows.com …3%3d"),
        ("https://web.push.apple.com/QGuQyavXutnMH7iYbcT1n3HkKnGx8dC6U0-7K5BgnSHmW", "push.apple.com …SHmW"),
        ("https://push.example.net/push/0123456789abcdef", "push.example.net …cdef"),
        ("https://PUSH.Example.NET:8443/push/0123456789abcdef", "push.example.net …cdef"),
        ("https://127.0.0.1:8443/push/0123456789abcdef", "127.0.0.1 …cdef"),
        ("https://[::1]/push/0123456789abcdef", "::1 …cdef"),
        ("https://" + "p" * 40 + ".example/push/0123456789abcdef", "example …cdef"),
        ("https://" + "p" * 40 + "/push/0123456789abcdef", "…" + "p" * 15 + " …cdef"),
        # Sixteen characters after the host stay hidden, or none of them shows.
        ("https://push.example/push/0123456789abcd", "push.example …abcd"),
        ("https://push.example/push/0123456789abc", "push.example"),
        ("https://push.example/abc123", "push.example"),
    ],
)
def test_a_webpush_hint_is_the_push_services_host(endpoint: str, hint: str) -> None:
    assert token_hint("webpush", webpush(endpoint)) == hint
    assert len(hint) < 24


@pytest.mark.parametrize(
    "token",
    [
        "not json",
        json.dumps({"keys": KEYS}),
        json.dumps({"endpoint": 42, "keys": KEYS}),
        json.dumps({"endpoint": "https://[::1/push/0123456789abcdef", "keys": KEYS}),
        json.dumps({"endpoint": "nothing-like-a-url-0123456789abcdef", "keys": KEYS}),
        "[" * 2000 + "]" * 2000,
    ],
)
def test_a_subscription_that_does_not_parse_shows_nothing_of_itself(token: str) -> None:
    assert token_hint("webpush", token) == "webpush subscription"


def test_other_platforms_show_the_last_four_characters() -> None:
    assert token_hint("fcm", "fcm:APA91bHun4MxP5ego") == "…5ego"
