"""The one interface between the outbox worker and every delivery provider.

The worker only ever sees `DeliveryMessage` in and `DeliveryResult` out, so retry, dead-letter,
token disabling and the circuit breaker are decided in one place whatever the provider. Adapters
never raise for a provider's answer, a network failure or a token they cannot use: those are
results, not exceptions. An adapter that raises anyway costs only its own message a `retry` (the
worker catches it), never the rest of the worker's round.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

import msgspec

__all__ = [
    "EXPIRED_UNSENT", "LONGEST_SEND_SECONDS", "PROVIDER_TIMEOUT_SECONDS", "Clock", "DeliveryAdapter",
    "DeliveryMessage", "DeliveryResult", "SecretText", "SeveralProviders", "provider_code",
]  # fmt: skip

Platform = Literal["fcm", "apns", "webpush", "webhook"]
Status = Literal["delivered", "retry", "invalid_token", "failed"]

PROVIDER_TIMEOUT_SECONDS = 10.0
"""How long one call to a provider may take, its connection's wait included, in every adapter."""

LONGEST_SEND_SECONDS = 2 * PROVIDER_TIMEOUT_SECONDS
"""How long one send may take: FCM may fetch its access token first. (After a 401 it fetches
again and sends again, twice as long; that path is rare, and its resend carries the same key.)"""

Clock = Callable[[], float]
"""Unix seconds; `time.time` in production, a fixed or stepping function in tests."""

EXPIRED_UNSENT = "ExpiredUnsent"
"""The provider code of a send not made because its push had expired by the time it could start
(a wait for a connection, or for FCM's access token): no attempt, and the push ends `expired`."""

_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{16,}")
UNRECOGNIZED = "unrecognized"


def provider_code(text: str | None) -> str | None:
    """A provider's error code as the worker may keep it (in the deliveries table, through the
    user's erasure, and in their export), or `unrecognized`. FCM's `UNREGISTERED` and APNs'
    `BadDeviceToken` are names; a provider or a proxy that echoes the request's device token
    (`BAD_TOKEN:<token>`, 64 hex digits) is not, and that must not be stored in clear. Nor is a
    token alone, short enough to have a name's shape: an APNs token may be 16 hex digits."""
    if text is None:
        return None
    if not _CODE.fullmatch(text) or text.isdigit() or _HEX_RUN.fullmatch(text):
        return UNRECOGNIZED
    return text


class SecretText(Protocol):
    """Key material whose repr is masked (the gateway's `Secret`), so configs can be logged."""

    def reveal(self) -> str: ...


class DeliveryMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One push for one device, with the device token already decrypted by the worker."""

    push_id: str
    device_id: str
    platform: Platform
    token: str
    """Plaintext device token; for webpush the subscription JSON {"endpoint", "keys": {"p256dh", "auth"}}."""
    topic: str
    title: str
    body: str
    data: dict[str, str]
    campaign_id: str | None = None
    variant: str | None = None
    expires_at: datetime
    """UTC; adapters turn it into the provider's TTL so a late push is dropped, not shown."""

    @property
    def idempotency_key(self) -> str:
        """Stable across retries, so providers and receivers can drop a second copy."""
        return f"{self.push_id}:{self.device_id}"

    @property
    def collapse_id(self) -> str:
        """What a phone replaces a shown notification by, so that a push sent again (a late
        answer, a crash mid-round: delivery is at least once) is shown once: the push id, at most
        64 bytes (Apple's `apns-collapse-id` limit)."""
        if len(self.push_id.encode()) > 64:
            return hashlib.sha256(self.push_id.encode()).hexdigest()
        return self.push_id

    @property
    def urgent(self) -> bool:
        """Only transactional pushes (payments, security) may wake a device at high priority."""
        return self.topic == "transactional"


class DeliveryResult(msgspec.Struct, frozen=True, kw_only=True):
    """What the worker needs to decide next; never carries the token or the content.

    `retry` is transient (5xx, 429, timeouts, connection errors); `failed` is permanent (a 4xx
    other than an invalid token); `invalid_token` tells the worker to disable the device: the
    provider called the token dead, or it can never work (a Web Push subscription whose keys
    cannot be encrypted to).
    """

    status: Status
    retry_after: float | None = None
    provider_status: int | None = None
    provider_code: str | None = None
    asked_provider: bool = True
    """False when the adapter answered without a call to the provider (a token that can never
    be sent to): the provider's circuit breaker learns nothing from it."""
    device_throttled: bool = False
    """A `retry` the provider asked for because of this device alone (APNs' `TooManyRequests`:
    too many pushes to one device token): the provider is working, and its circuit counts it so.
    Five pushes to one busy phone opened the APNs circuit for every other device."""


class DeliveryAdapter(Protocol):
    """An outward sender; `name` is the metrics label and the circuit-breaker key (unless it is
    one of `SeveralProviders`)."""

    name: str

    async def send(self, message: DeliveryMessage) -> DeliveryResult: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class SeveralProviders(Protocol):
    """An adapter that sends to several independent services, each to be judged on its own by a
    circuit breaker: Web Push goes to each browser vendor's push service, and one of them down
    must not hold back the pushes to the others. A key is the adapter's name, a space, then the
    service (`webpush fcm.googleapis.com`): the circuits' gauge counts them under the name."""

    def breaker_key(self, message: DeliveryMessage) -> str: ...
