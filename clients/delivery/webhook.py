"""The wallet's own push relay, reached by a signed JSON POST (PRODUCT.md, "Delivery").

The signature covers "<timestamp>.<raw body>" so a receiver can refuse both forged and replayed
requests; `verify_webhook_signature` is the receiver's side of that contract. The
Idempotency-Key header lets the relay drop the second copy when a retry follows a lost answer.

Every webhook device posts to the one configured relay URL, so a 404 says nothing about the
device: a wrong path in CGW_DELIVERY_WEBHOOK_URL, or a relay mid-redeploy, answers it for every
device alike. Only 410 Gone, which a relay sends on purpose, disables the device; a 404 is tried
again with backoff (and, as a failure of the relay, counts toward its circuit breaker), so once
the URL or the relay is fixed the pushes waiting go through and no user has to register again.
A 401 is the relay refusing our signature (the secret, or a clock far off): every device alike
again, so it is tried again the same way (`refused_alike`), not failed for the device.
"""

from __future__ import annotations

import hmac
import re
import time

import msgspec
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.hmac import HMAC

from clients.delivery._http import (
    CONNECTIONS,
    Http1Client,
    Reply,
    TransportFailure,
    classify_status,
    invalid_token,
    refused_alike,
    transport_failure,
)
from clients.delivery.base import PROVIDER_TIMEOUT_SECONDS, Clock, DeliveryMessage, DeliveryResult, SecretText

__all__ = ["WebhookAdapter", "WebhookConfig", "WebhookSigner", "sign_webhook", "verify_webhook_signature"]

# As the gateway writes one: a leading zero would be signed as read ("017...") by one receiver
# and as the number ("17...") by another, and this function signs the number.
_TIMESTAMP = re.compile(r"0|[1-9][0-9]{0,11}")
"""Unix seconds, as sent: ASCII digits only (`int` takes other scripts' digits, and past 4,300
digits refuses), and 12 of them reach the year 33658."""
_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")


class WebhookConfig(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    secret: SecretText
    timeout: float = PROVIDER_TIMEOUT_SECONDS
    connections: int = CONNECTIONS


class _Body(msgspec.Struct, kw_only=True):
    push_id: str
    device_id: str
    device_token: str
    topic: str
    title: str
    body: str
    data: dict[str, str]
    campaign_id: str | None
    variant: str | None


def sign_webhook(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The X-CGW-Signature value: "sha256=" + hex HMAC-SHA256 of "<timestamp>.<raw body>"."""
    return WebhookSigner(secret).sign(timestamp, body)


class WebhookSigner:
    """`sign_webhook` for one secret, its key set up once: a copy of the keyed HMAC per body
    costs half of a new one (~1.4 against ~2.7 µs), and a sender signs every push it posts."""

    def __init__(self, secret: str | bytes) -> None:
        self._keyed = HMAC(secret.encode() if isinstance(secret, str) else secret, SHA256())

    def sign(self, timestamp: int, body: bytes) -> str:
        mac = self._keyed.copy()
        mac.update(str(timestamp).encode() + b"." + body)
        return "sha256=" + mac.finalize().hex()


def verify_webhook_signature(
    secret: str | bytes,
    timestamp: str | int | None,
    body: bytes | bytearray,
    signature: str | None,
    now: float,
    tolerance: float = 300,
) -> bool:
    """For receivers: True only if the signature matches and the timestamp is within tolerance.

    Pass the raw request body as received (not re-serialized JSON) and the two headers as strings
    (None for a header that is missing). The headers are the sender's to choose, so anything
    malformed is False, never an exception: a missing header, a timestamp that is not 1-12 ASCII
    digits without a leading zero, a signature not shaped "sha256=" + 64 lower-case hex digits, a
    body that is not bytes.
    """
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        timestamp = str(timestamp) if 0 <= timestamp < 10**12 else None  # str() refuses huge ints
    if not isinstance(timestamp, str) or not _TIMESTAMP.fullmatch(timestamp):
        return False
    if not isinstance(signature, str) or not _SIGNATURE.fullmatch(signature):
        return False
    if not isinstance(body, bytes | bytearray):
        return False
    ts = int(timestamp)
    if abs(now - ts) > tolerance:
        return False
    return hmac.compare_digest(sign_webhook(secret, ts, bytes(body)), signature)


class WebhookAdapter:
    """Any 2xx is delivered; 410 invalid token; 404, 408/425/429, 5xx and network errors retry;
    any other status failed."""

    name = "webhook"

    def __init__(self, config: WebhookConfig, clock: Clock = time.time) -> None:
        self._url = config.url
        self._signer = WebhookSigner(config.secret.reveal())
        self._clock = clock
        self._http = Http1Client(config.timeout, connections=config.connections)

    async def send(self, message: DeliveryMessage) -> DeliveryResult:
        body = msgspec.json.encode(
            _Body(
                push_id=message.push_id,
                device_id=message.device_id,
                device_token=message.token,
                topic=message.topic,
                title=message.title,
                body=message.body,
                data=message.data,
                campaign_id=message.campaign_id,
                variant=message.variant,
            )
        )
        timestamp = int(self._clock())
        headers = {
            "content-type": "application/json",
            "idempotency-key": message.idempotency_key,
            "x-cgw-timestamp": str(timestamp),
            "x-cgw-signature": self._signer.sign(timestamp, body),
        }
        try:
            reply = await self._http.post(self._url, headers, content=body)
        except TransportFailure as exc:
            return transport_failure(exc.code)
        return self._classify(reply)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _classify(self, reply: Reply) -> DeliveryResult:
        """410 is the relay's word that this device token is no longer valid; a 404 is where the
        relay is (or is not), not the device (see the module's docstring)."""
        if reply.status == 410:
            return invalid_token(reply, None)
        if reply.status in (401, 404):
            return refused_alike(reply, self._clock, None)
        return classify_status(reply, self._clock)
