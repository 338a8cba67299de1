from __future__ import annotations

import asyncio
import base64
import json
import os
import re

import http_ece
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from clients.delivery import DeliveryResult, WebPushAdapter, WebPushConfig
from clients.delivery.webpush import webpush_topic

from .doubles import FakeClock, PlainSecret, make_message
from .servers import Answer, Http1Server, Received

# An https contact with a path, as RFC 8292 allows: py_vapid's own check refused it.
SUBJECT = "https://wallet.example.com/push-contact"
VAPID_KEY = ec.generate_private_key(ec.SECP256R1())
VAPID_PEM = VAPID_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
VAPID_RAW = (
    base64.urlsafe_b64encode(VAPID_KEY.private_numbers().private_value.to_bytes(32, "big"))
    .decode()
    .rstrip("=")
)
RECEIVER = ec.generate_private_key(ec.SECP256R1())
AUTH = os.urandom(16)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def subscription(endpoint: str, p256dh: str | None = None) -> str:
    keys = {"p256dh": p256dh or b64(point(RECEIVER.public_key())), "auth": b64(AUTH)}
    return json.dumps({"endpoint": endpoint, "keys": keys})


class PushService:
    """Checks VAPID (RFC 8292) and the RFC 8030 headers, and decrypts like the browser (RFC 8291)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.origin = ""
        self.payloads: list[dict[str, object]] = []

    def __call__(self, got: Received) -> Answer:
        match = re.fullmatch(r"vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)", got.headers["authorization"])
        assert match, got.headers["authorization"]
        token, key = match.groups()
        assert key == b64(point(VAPID_KEY.public_key()))
        public = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), base64.urlsafe_b64decode(key + "==")
        )
        try:
            claims = jwt.decode(
                token, public, algorithms=["ES256"], audience=self.origin, options={"verify_exp": False}
            )
        except jwt.InvalidTokenError:
            return 403, {}, b""
        assert self.clock.now < claims["exp"] <= self.clock.now + 24 * 3600
        assert claims["sub"] == SUBJECT
        assert got.headers["content-encoding"] == "aes128gcm"
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,32}", got.headers["topic"])
        assert got.headers["urgency"] in {"very-low", "low", "normal", "high"}
        assert got.headers["ttl"].isdigit()
        if got.path == "/push/gone":
            return 410, {}, b""
        assert got.path == "/push/sub-1"
        plaintext = http_ece.decrypt(got.body, private_key=RECEIVER, auth_secret=AUTH, version="aes128gcm")
        self.payloads.append(json.loads(plaintext))
        return 201, {"location": "/message/1"}, b""


def local_config(key: str = VAPID_PEM) -> WebPushConfig:
    return WebPushConfig(
        vapid_private_key=PlainSecret(key),
        vapid_subject=SUBJECT,
        allowed_hosts=("127.0.0.1",),
        allow_http=True,
    )


def run(
    service: PushService, key: str, *steps: dict[str, object]
) -> tuple[list[DeliveryResult], list[Received]]:
    """Send one message per step to a subscription on the local push service."""
    with Http1Server(service) as server:
        service.origin = server.url

        async def scenario(path: str) -> list[DeliveryResult]:
            adapter = WebPushAdapter(local_config(key), clock=service.clock)
            try:
                results = []
                for changes in steps:
                    fields = {"platform": "webpush", "token": subscription(server.url + path), **changes}
                    results.append(await adapter.send(make_message(service.clock, **fields)))
                return results
            finally:
                await adapter.aclose()

        results = asyncio.run(scenario("/push/sub-1"))
    return results, server.received


@pytest.mark.parametrize("key", [VAPID_PEM, VAPID_RAW], ids=["pem", "raw"])
def test_encrypts_for_the_subscription_and_signs_vapid_for_its_origin(key: str) -> None:
    service = PushService(FakeClock())
    results, received = run(service, key, {}, {"topic": "transactional"})
    assert [r.status for r in results] == ["delivered", "delivered"]
    assert [r.provider_status for r in results] == [201, 201]
    assert service.payloads[0] == {
        "title": "Weekend offer",
        "body": "10% off at partner stores",
        "topic": "promotions",
        "data": {"deeplink": "wallet://offers/7"},
        "cgw_idempotency_key": "psh_01HZX:dev_42",
    }
    first, urgent = received
    assert first.headers["ttl"] == "3600"
    assert first.headers["urgency"] == "normal"
    assert urgent.headers["urgency"] == "high"
    assert first.headers["topic"] == urgent.headers["topic"] == webpush_topic("psh_01HZX:dev_42")
    assert first.headers["content-type"] == "application/octet-stream"
    assert b"Weekend offer" not in first.body


def test_gone_subscription_is_an_invalid_token() -> None:
    service = PushService(FakeClock())
    with Http1Server(service) as server:
        service.origin = server.url

        async def scenario() -> DeliveryResult:
            adapter = WebPushAdapter(local_config(), clock=service.clock)
            try:
                token = subscription(server.url + "/push/gone")
                return await adapter.send(make_message(service.clock, platform="webpush", token=token))
            finally:
                await adapter.aclose()

        assert asyncio.run(scenario()) == DeliveryResult(status="invalid_token", provider_status=410)


def send_with(token: str, config: WebPushConfig | None = None) -> DeliveryResult:
    async def scenario() -> DeliveryResult:
        adapter = WebPushAdapter(config or local_config(), clock=FakeClock())
        try:
            return await adapter.send(make_message(FakeClock(), platform="webpush", token=token))
        finally:
            await adapter.aclose()

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://fcm.googleapis.com/fcm/send/x",  # plain http
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://fcm.googleapis.com.evil.example/x",
        "https://evilfcm.googleapis.com.example/x",
        "https://user@fcm.googleapis.com/x",
        "https://[::1]/x",
        "https://[::1/x",
        "https://fcm.googleapis.com:bad/x",
        "file:///etc/passwd",
        # Other characters than ASCII in the host or port: registered, they reached our HTTP client,
        # which refused them as InvalidURL, a provider failure opening the circuit for everyone.
        "https://fcm.googleapis.com:\u0664\u0664\u0663/x",
        "https://\u00e4.fcm.googleapis.com/x",
        "https://fcm.googleapis.com:1/x",
        "https://fcm.googleapis.com:99999/x",
    ],
)
def test_endpoints_outside_the_push_services_are_never_contacted(endpoint: str) -> None:
    """Had the adapter tried, the answer would be a connection failure, not this refusal."""
    config = WebPushConfig(vapid_private_key=PlainSecret(VAPID_PEM), vapid_subject=SUBJECT)
    result = send_with(subscription(endpoint), config)
    assert result == DeliveryResult(
        status="invalid_token", provider_code="EndpointNotAllowed", asked_provider=False
    )


@pytest.mark.parametrize(
    ("endpoint", "audience"),
    [
        ("https://fcm.googleapis.com/fcm/send/abc", "https://fcm.googleapis.com"),
        (
            "https://updates.push.services.mozilla.com/wpush/v2/abc",
            "https://updates.push.services.mozilla.com",
        ),
        # RFC 6454's serialization (RFC 8292 §2): lower case, the scheme's own port left out.
        ("https://web.push.apple.com:443/QGx", "https://web.push.apple.com"),
        ("https://Web.Push.Apple.com/QGx", "https://web.push.apple.com"),
        ("https://FCM.googleapis.com:443/fcm/send/abc", "https://fcm.googleapis.com"),
    ],
)
def test_known_push_services_are_allowed_with_their_origin_as_audience(endpoint: str, audience: str) -> None:
    """Judged without sending (tests reach only 127.0.0.1); the real-server test above checks that
    the audience chosen is the one the VAPID token carries."""
    adapter = WebPushAdapter(WebPushConfig(vapid_private_key=PlainSecret(VAPID_PEM), vapid_subject=SUBJECT))
    assert adapter.audience_for(endpoint) == audience


@pytest.mark.parametrize(
    "token",
    [
        "not json",
        '{"endpoint": "http://127.0.0.1:9/push/sub-1"}',
        subscription("http://127.0.0.1:9/push/sub-1", p256dh="!!not-base64!!"),
        subscription("http://127.0.0.1:9/push/sub-1", p256dh=b64(b"\x04" + b"\x00" * 64)),
    ],
)
def test_malformed_subscription_is_an_invalid_token(token: str) -> None:
    result = send_with(token)
    assert result == DeliveryResult(
        status="invalid_token", provider_code="MalformedSubscription", asked_provider=False
    )


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (201, {}, DeliveryResult(status="delivered", provider_status=201)),
        (404, {}, DeliveryResult(status="invalid_token", provider_status=404)),
        (410, {}, DeliveryResult(status="invalid_token", provider_status=410)),
        (400, {}, DeliveryResult(status="failed", provider_status=400)),
        (401, {}, DeliveryResult(status="retry", provider_status=401)),  # our VAPID token: alike for all
        (403, {}, DeliveryResult(status="retry", provider_status=403)),  # ... absent, or invalid (RFC 8292)
        (413, {}, DeliveryResult(status="failed", provider_status=413)),
        (429, {"retry-after": "90"}, DeliveryResult(status="retry", retry_after=90.0, provider_status=429)),
        (500, {}, DeliveryResult(status="retry", provider_status=500)),
        (503, {}, DeliveryResult(status="retry", provider_status=503)),
    ],
)
def test_status_classification(status: int, headers: dict[str, str], expected: DeliveryResult) -> None:
    with Http1Server(lambda got: (status, headers, b"")) as server:
        result = send_with(subscription(server.url + "/push/sub-1"))
    assert result == expected
    assert len(server.received) == 1


def test_topic_header_is_short_and_url_safe() -> None:
    topic = webpush_topic("psh_" + "x" * 200 + ":dev_1")
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", topic)


@pytest.mark.parametrize(
    "subject",
    [
        "ops team", "mailto:ops", "http://example.com", "https://", "mailto:a b@c",
        "mailto:<ops@example.com>", "https://example.com:99999", "https://ex\x01ample.com", "https://example.com\\contact",
    ],
)  # fmt: skip
def test_rejects_a_subject_that_is_not_a_contact_uri(subject: str) -> None:
    with pytest.raises(ValueError, match="vapid_subject"):
        WebPushAdapter(WebPushConfig(vapid_private_key=PlainSecret(VAPID_PEM), vapid_subject=subject))


def der_b64url(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    """A key as py_vapid's from_string also reads it: base64url of its DER."""
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return base64.urlsafe_b64encode(der).decode().rstrip("=")


P384 = ec.generate_private_key(ec.SECP384R1())


@pytest.mark.parametrize(
    "key",
    [
        P384.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        der_b64url(P384),
        der_b64url(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ],
    ids=["p384-pem", "p384-der", "rsa-der"],
)
def test_a_vapid_key_that_is_not_p256_is_refused_at_load(key: str) -> None:
    """RFC 8292 signs with ES256, P-256 only: such a key would start, then fail every send."""
    with pytest.raises(ValueError, match="P-256"):
        WebPushAdapter(
            WebPushConfig(vapid_private_key=PlainSecret(key), vapid_subject="mailto:ops@example.com")
        )


def test_a_p256_vapid_key_as_der_is_still_accepted() -> None:
    adapter = WebPushAdapter(
        WebPushConfig(
            vapid_private_key=PlainSecret(der_b64url(VAPID_KEY)), vapid_subject="mailto:ops@example.com"
        )
    )
    asyncio.run(adapter.aclose())
