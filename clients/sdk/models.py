"""The push API's bodies and answers as the SDK sees them.

These mirror the gateway's wire models without importing them, so a service needs only this
package, msgspec and httpx. Answers do not forbid unknown fields: a gateway that grows a field
must not break services pinned to an older SDK. Times arrive as RFC 3339 UTC and are decoded
to aware `datetime`s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

__all__ = [
    "BatchAnswer",
    "Campaign",
    "CampaignCreated",
    "CampaignStats",
    "Comparison",
    "Complaint",
    "Metric",
    "Near",
    "PauseEvidence",
    "Push",
    "PushAnswer",
    "PushRequest",
    "Reason",
    "Topic",
    "VariantStats",
]

Topic = Literal[
    "transactional",
    "promotions",
    "flash_sales",
    "cart_reminders",
    "recommendations",
    "nearby_offers",
    "product_tips",
    "feedback_requests",
]
Metric = Literal["open_rate", "click_through_rate", "conversion_rate", "complaint_rate", "opt_out_rate"]
Outcome = Literal["queued", "deferred", "rejected"]
PushStatus = Literal["queued", "deferred", "rejected", "sending", "delivered", "failed", "expired"]

Reason = dict[str, str | int]
"""`{"code": "no_consent", "purpose": "marketing"}`: a stable code and whatever detail it has."""


class Near(msgspec.Struct, frozen=True):
    geohash: str


class PushRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One push, as `push` sends it and as each item of `push_batch`.

    Defaults are left out of the body, so the gateway's own defaults (TTL 24 h) apply and a
    push sent with and without them is the same push to its idempotency check. Values are
    checked by the gateway, which names the bad field in its 400, not here a second time.
    """

    idempotency_key: str
    topic: Topic
    title: str
    body: str
    user_id: str | None = None
    subject_ref: str | None = None
    data: dict[str, str] = {}
    campaign_id: str | None = None
    variant: str | None = None
    personalized: bool = False
    near: Near | None = None
    ttl_seconds: int | None = None
    dry_run: bool = False


class PushAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """The decision. `push_id` is None only for a dry run, which records nothing."""

    push_id: str | None
    outcome: Outcome
    reasons: list[Reason]
    deliver_after: datetime | None = None
    expires_at: datetime


class BatchAnswer(msgspec.Struct, frozen=True):
    """`results` in the order the pushes were given; `counts` per outcome and per reason code."""

    results: list[PushAnswer]
    counts: dict[str, int]


class Push(msgspec.Struct, frozen=True, kw_only=True):
    """A push's state now. `reasons` are dispatch's when dispatch ended it, the submission's
    otherwise."""

    push_id: str
    status: PushStatus
    outcome: Outcome
    reasons: list[Reason]
    reasons_policy_version: int | None = None
    attempts: int
    topic: str
    campaign_id: str | None
    variant: str | None
    created_at: datetime
    deliver_after: datetime | None
    expires_at: datetime
    updated_at: datetime


class CampaignCreated(msgspec.Struct, frozen=True):
    campaign_id: str


class PauseEvidence(msgspec.Struct, frozen=True, kw_only=True):
    """The complaint-rate rule's numbers for a campaign it paused."""

    rule: str
    complaints: int
    deliveries: int
    rate: float
    threshold: float
    min_deliveries: int
    since: datetime | None = None


class Campaign(msgspec.Struct, frozen=True, kw_only=True):
    campaign_id: str
    name: str
    topic: str
    status: Literal["active", "paused"]
    created_at: datetime
    paused_at: datetime | None
    pause_reason: str | None
    pause_evidence: PauseEvidence | None = None


class VariantStats(msgspec.Struct, frozen=True, kw_only=True):
    submitted: int = 0
    queued: int = 0
    deferred: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = {}
    stopped_at_dispatch: int = 0
    stopped_at_dispatch_by_reason: dict[str, int] = {}
    expired: int = 0
    delivered: int = 0
    failed: int = 0
    opened: int = 0
    clicked: int = 0
    converted: int = 0
    dismissed: int = 0
    complaints: int = 0
    opted_out_after_receipt: int = 0
    rates: dict[str, float | None] = {}
    """Each over `delivered`; None with no delivery."""


class Comparison(msgspec.Struct, frozen=True, kw_only=True):
    """One variant against the control on `metric`: a two-proportion test."""

    metric: Metric
    control: str
    variant: str
    control_rate: float | None
    variant_rate: float | None
    difference: float | None
    ci95: tuple[float, float]
    z: float | None
    p_value: float | None
    p_value_adjusted: float | None = None
    """Holm's adjustment over the campaign's comparisons; `significant` is judged on it."""
    significant: bool
    verdict: str


class CampaignStats(msgspec.Struct, frozen=True, kw_only=True):
    campaign_id: str
    status: str
    metric: Metric
    variants: dict[str, VariantStats]
    comparisons: list[Comparison]


class Complaint(msgspec.Struct, frozen=True, kw_only=True):
    """A complaint goes `open` → `acknowledged` → `resolved`, each step timed."""

    complaint_id: str
    push_id: str | None
    topic: str | None
    campaign_id: str | None
    reason: str
    comment: str | None
    status: Literal["open", "acknowledged", "resolved"]
    flagged_for_review: bool
    actions_taken: list[str]
    created_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    resolution: str | None
    complainant_erased: bool = False
    """The person who complained erased their data: their comment is gone, and a resolution
    written now is not kept."""
