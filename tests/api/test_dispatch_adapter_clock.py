"""The delivery adapters the gateway builds run on its clock, the one each push's `expires_at` was
computed by, not on `time.time`.

They took the wall clock: the webhook's signed timestamp, FCM's expiry check and TTL, APNs' and
Web Push's token times were read on a clock the gateway's FakeClock (2026-11-23) knew nothing
of. Here a real relay on 127.0.0.1 records what the gateway's own dispatcher sends, and only the
FakeClock moves. FCM, APNs and Web Push cannot be reached locally through the gateway's settings
(their endpoints must be https), so their use of the clock is read off the adapters it builds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from conftest import FakeClock, Headers
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from litestar import Litestar
from litestar.testing import TestClient
from support import WebhookRelay

from clients.delivery import (
    ApnsAdapter,
    DeliveryMessage,
    FcmAdapter,
    WebPushAdapter,
    verify_webhook_signature,
)
from gateway.adapters import build_adapters
from gateway.runtime import Runtime
from gateway.settings import Secret, Settings

SECRET = "adapter-clock-webhook-secret-0123456789"


@pytest.fixture
def settings(data_dir: Path, hook: WebhookRelay) -> Settings:
    return Settings(
        data_dir=data_dir,
        worker_enabled=False,
        delivery_webhook_url=hook.url,
        delivery_webhook_secret=Secret(SECRET),
    )


def _send_one(client: TestClient[Litestar], runtime: Runtime, key: Headers, n: int) -> None:
    """One transactional push to the user's webhook device, sent by the gateway's own dispatcher."""
    answer = client.post(
        "/v1/pushes",
        headers=key,
        json={"idempotency_key": f"clock-{n}", "user_id": "clock-user", "topic": "transactional",
              "title": "Card used", "body": "A payment was made", "data": {}},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "queued", answer.text
    assert client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 100) == 1
    status = client.get(f"/v1/pushes/{answer.json()['push_id']}", headers=key).json()["status"]
    assert status == "delivered"


def test_the_webhook_signature_timestamp_is_the_gateway_clock(
    client: TestClient[Litestar],
    runtime: Runtime,
    clock: FakeClock,
    hook: WebhookRelay,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    user, key = as_user("clock-user"), as_key("pushes:write")
    device = {"platform": "webhook", "token": "relay-device-clock-1"}
    assert client.post("/v1/me/devices", json=device, headers=user).status_code == 201
    for n in range(2):
        _send_one(client, runtime, key, n)
        stamp, signature, body = hook.signed[n]
        assert stamp == str(int(clock().timestamp()))
        assert verify_webhook_signature(SECRET, stamp, body, signature, now=clock().timestamp())
        assert json.loads(body)["topic"] == "transactional"
        clock.advance(hours=1)
    assert [int(stamp) for stamp, _, _ in hook.signed] == [
        int((clock() - timedelta(hours=h)).timestamp()) for h in (2, 1)
    ]


PEM, PKCS8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8


def _private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(PEM, PKCS8, serialization.NoEncryption()).decode()


def test_fcm_apns_and_webpush_built_by_the_gateway_read_its_clock(tmp_path: Path, clock: FakeClock) -> None:
    account = {
        "type": "service_account",
        "project_id": "demo-project",
        "private_key": _private_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "client_email": "push@demo-project.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    files = {
        "fcm.json": json.dumps(account),
        "AuthKey.p8": _private_pem(ec.generate_private_key(ec.SECP256R1())),
        "vapid.pem": _private_pem(ec.generate_private_key(ec.SECP256R1())),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    settings = Settings(
        data_dir=tmp_path / "data",
        fcm_service_account_file=tmp_path / "fcm.json",
        apns_key_file=tmp_path / "AuthKey.p8",
        apns_key_id="ABC123DEFG",
        apns_team_id="DEF123GHIJ",
        apns_bundle_id="com.example.wallet",
        webpush_vapid_key_file=tmp_path / "vapid.pem",
        webpush_vapid_subject="mailto:push-ops@example.com",
    )
    adapters = build_adapters(settings, clock)
    try:
        fcm, apns, webpush = adapters["fcm"], adapters["apns"], adapters["webpush"]
        assert isinstance(fcm, FcmAdapter)
        assert isinstance(apns, ApnsAdapter)
        assert isinstance(webpush, WebPushAdapter)
        message = DeliveryMessage(
            push_id="p1", device_id="d1", platform="fcm", token="t", topic="transactional", title="T",
            body="B", data={}, expires_at=clock() + timedelta(seconds=600),
        )  # fmt: skip
        clock.advance(seconds=100)
        android = fcm._message_json(message)["message"]["android"]  # type: ignore[index]
        assert android["ttl"] == "500s"
        iat = jwt.decode(apns._provider_token(), options={"verify_signature": False})["iat"]
        assert iat == int(clock().timestamp())
        assert webpush._clock() == clock().timestamp()
    finally:
        for adapter in {id(a): a for a in adapters.values()}.values():
            asyncio.run(adapter.aclose())
