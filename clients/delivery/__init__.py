"""Outward delivery: one small async interface, one adapter per provider, and the retry policy.

The outbox worker sends a `DeliveryMessage` through a `DeliveryAdapter` and acts on the
`DeliveryResult`: `delivered` done, `retry` again after `backoff_delay` (Retry-After honoured),
`invalid_token` disable the device, `failed` dead-letter. A `CircuitBreaker` per provider (an
adapter's `name`, or each service of one of `SeveralProviders`: Web Push's push services) stops
hammering a provider that is down. Adapters never log tokens or content.
"""

from clients.delivery.apns import ApnsAdapter, ApnsConfig
from clients.delivery.base import (
    EXPIRED_UNSENT,
    LONGEST_SEND_SECONDS,
    PROVIDER_TIMEOUT_SECONDS,
    Clock,
    DeliveryAdapter,
    DeliveryMessage,
    DeliveryResult,
    SecretText,
    SeveralProviders,
)
from clients.delivery.breaker import BreakerState, CircuitBreaker, is_provider_failure
from clients.delivery.fcm import FcmAdapter, FcmConfig
from clients.delivery.file import FileSink, FileSinkConfig
from clients.delivery.webhook import WebhookAdapter, WebhookConfig, verify_webhook_signature
from clients.delivery.webpush import WebPushAdapter, WebPushConfig
from clients.retry_after import backoff_delay, parse_retry_after

__all__ = [
    "EXPIRED_UNSENT",
    "LONGEST_SEND_SECONDS",
    "PROVIDER_TIMEOUT_SECONDS",
    "ApnsAdapter",
    "ApnsConfig",
    "BreakerState",
    "CircuitBreaker",
    "Clock",
    "DeliveryAdapter",
    "DeliveryMessage",
    "DeliveryResult",
    "FcmAdapter",
    "FcmConfig",
    "FileSink",
    "FileSinkConfig",
    "SecretText",
    "SeveralProviders",
    "WebPushAdapter",
    "WebPushConfig",
    "WebhookAdapter",
    "WebhookConfig",
    "backoff_delay",
    "is_provider_failure",
    "parse_retry_after",
    "verify_webhook_signature",
]
