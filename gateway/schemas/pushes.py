"""Wire models of the push API and campaigns."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from policies.catalog import Topic
from storage.pseudonyms import SUBJECT_REF_PATTERN

__all__ = [
    "BATCH_MAX",
    "BatchAnswer",
    "BatchCreate",
    "CampaignCreate",
    "CampaignCreated",
    "CampaignRead",
    "Near",
    "NotificationRead",
    "PushAnswer",
    "PushCreate",
    "PushRead",
    "WireReason",
]

BATCH_MAX = 10_000
WireReason = dict[str, str | int]
PushStatus = Literal["queued", "deferred", "rejected", "sending", "delivered", "failed", "expired"]
CampaignId = Annotated[str, Meta(pattern=r"^cmp_[0-9a-f]{16}$")]


# gc=False: made for every push and never part of a cycle (see gateway/gc_tuning.py).
class Near(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    geohash: Annotated[
        str, Meta(pattern=r"^[0-9b-hjkmnp-z]{1,6}$", description="target area, geohash 1-6 chars")
    ]


class PushCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=128)]
    user_id: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    subject_ref: Annotated[str, Meta(pattern=SUBJECT_REF_PATTERN)] | None = None
    topic: Topic
    title: Annotated[str, Meta(max_length=4096)]
    body: Annotated[str, Meta(max_length=16384)]
    data: dict[Annotated[str, Meta(max_length=64)], Annotated[str, Meta(max_length=4096)]] = {}
    campaign_id: CampaignId | None = None
    variant: Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")] | None = None
    personalized: bool = False
    near: Near | None = None
    ttl_seconds: Annotated[int, Meta(ge=1, le=604800)] | None = None
    dry_run: bool = False

    def __post_init__(self) -> None:
        if (self.user_id is None) == (self.subject_ref is None):
            raise ValueError("user_id: give exactly one of user_id or subject_ref")
        if self.variant is not None and self.campaign_id is None:
            raise ValueError("variant: a variant needs a campaign_id")


class PushAnswer(msgspec.Struct, kw_only=True, gc=False):
    push_id: str | None
    outcome: Literal["queued", "deferred", "rejected"]
    reasons: list[WireReason]
    deliver_after: str | None = None
    expires_at: str


class BatchCreate(msgspec.Struct, forbid_unknown_fields=True):
    pushes: Annotated[list[PushCreate], Meta(min_length=1, max_length=BATCH_MAX)]


class BatchAnswer(msgspec.Struct):
    results: list[PushAnswer]
    counts: dict[str, int]


class PushRead(msgspec.Struct, kw_only=True):
    """A push's state. `reasons` are dispatch's when it ended the push with its own verdict, the
    submission's otherwise; `reasons_policy_version` is the policy version they were given under
    (null only for dispatch reasons recorded before the gateway kept that version)."""

    push_id: str
    status: PushStatus
    outcome: Literal["queued", "deferred", "rejected"]
    reasons: list[WireReason]
    reasons_policy_version: int | None
    attempts: int
    topic: str
    campaign_id: str | None
    variant: str | None
    created_at: str
    deliver_after: str | None
    expires_at: str
    updated_at: str


class NotificationRead(msgspec.Struct, kw_only=True):
    push_id: str
    status: PushStatus
    topic: str
    campaign_id: str | None
    title: str | None
    body: str | None
    at: str
    why: list[str]


class CampaignCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    topic: Topic


class CampaignCreated(msgspec.Struct):
    campaign_id: str


class CampaignRead(msgspec.Struct, kw_only=True):
    campaign_id: str
    name: str
    topic: str
    status: Literal["active", "paused"]
    created_at: str
    paused_at: str | None
    pause_reason: str | None
