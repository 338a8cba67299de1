"""The Python SDK services use to submit pushes and run campaigns through the gateway.

    with ConsentGateway("https://gateway.example", api_key) as gateway:
        answer = gateway.push(idempotency_key=f"order-{order.id}-paid", user_id=user.id,
                              topic="transactional", title="Payment received", body="...")

`ConsentGateway` blocks (httpx.Client); `AsyncConsentGateway` awaits (httpx.AsyncClient).
A policy refusal is an answer (`outcome="rejected"` with reasons); a refused request raises a
`GatewayError`. Pushes are retried with their own idempotency key, so a retry is never a
second push; calls that could happen twice are retried only when the request never left.

The SDK imports msgspec and httpx only, never the gateway. Receivers of the gateway's webhook
deliveries verify them with `clients.delivery.verify_webhook_signature`.
"""

from clients.sdk.aio import AsyncConsentGateway
from clients.sdk.calls import BATCH_MAX
from clients.sdk.errors import (
    Conflict,
    Forbidden,
    GatewayError,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    Unavailable,
    Unprocessable,
    Unreachable,
)
from clients.sdk.models import (
    BatchAnswer,
    Campaign,
    CampaignCreated,
    CampaignStats,
    Comparison,
    Complaint,
    Near,
    PauseEvidence,
    Push,
    PushAnswer,
    PushRequest,
    Reason,
    VariantStats,
)
from clients.sdk.retry import RetryPolicy
from clients.sdk.sync import ConsentGateway

__all__ = [
    "BATCH_MAX",
    "AsyncConsentGateway",
    "BatchAnswer",
    "Campaign",
    "CampaignCreated",
    "CampaignStats",
    "Comparison",
    "Complaint",
    "Conflict",
    "ConsentGateway",
    "Forbidden",
    "GatewayError",
    "InvalidInput",
    "Near",
    "NotAuthenticated",
    "NotFound",
    "PauseEvidence",
    "Push",
    "PushAnswer",
    "PushRequest",
    "Reason",
    "RetryPolicy",
    "Unavailable",
    "Unprocessable",
    "Unreachable",
    "VariantStats",
]
