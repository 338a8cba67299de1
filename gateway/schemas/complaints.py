"""Wire models of complaints and engagement events."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "ComplaintCreate",
    "ComplaintCreated",
    "ComplaintRead",
    "ComplaintReason",
    "EventCreate",
    "EventRecorded",
    "Resolution",
]

ComplaintReason = Literal["too_frequent", "irrelevant", "offensive", "no_consent", "privacy", "other"]
ComplaintStatus = Literal["open", "acknowledged", "resolved"]
PushId = Annotated[str, Meta(pattern=r"^psh_[0-9a-f]{24}$(?!\n)")]


class ComplaintCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    push_id: PushId | None = None
    reason: ComplaintReason
    comment: Annotated[str, Meta(max_length=2000)] | None = None


class ComplaintCreated(msgspec.Struct):
    complaint_id: str
    actions_taken: Annotated[
        list[str],
        Meta(
            description="What the complaint did, in this order, each at most once: `topic_muted` (the "
            "push's marketing topic, for the policy's `complaint_mute_days`), `weekly_cap_lowered` "
            "(`too_frequent`: the user's weekly cap set to 1), `marketing_consent_withdrawn` "
            "(`no_consent`, when it was given) and `flagged_for_review` (`no_consent`). Empty when "
            "nothing was done (no push named, or a transactional one)."
        ),
    ]


class ComplaintRead(msgspec.Struct, kw_only=True):
    complaint_id: str
    push_id: str | None
    topic: str | None
    campaign_id: str | None
    reason: ComplaintReason
    comment: str | None
    status: ComplaintStatus
    flagged_for_review: bool
    actions_taken: list[str]
    created_at: str
    acknowledged_at: str | None
    resolved_at: str | None
    resolution: str | None
    complainant_erased: Annotated[
        bool,
        Meta(
            description="The complainant erased their data: their comment is gone, and a resolution "
            "given since is not kept (it was theirs to read, sealed under the key erasure destroyed)."
        ),
    ] = False


class Resolution(msgspec.Struct, forbid_unknown_fields=True):
    resolution: Annotated[str, Meta(min_length=1, max_length=2000)]

    def __post_init__(self) -> None:
        if not self.resolution.strip():  # the user reads it as the operator's answer
            raise ValueError("resolution: say how the complaint was resolved, not spaces alone")


class EventCreate(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["opened", "clicked", "converted", "dismissed"]


class EventRecorded(msgspec.Struct):
    push_id: str
    type: str
    recorded: bool
