"""Wire models of the push API and campaigns."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Literal, get_args

import msgspec
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import KwargDefinition
from msgspec import Meta

from gateway.schemas.stats import DEFAULT_VARIANT
from policies.catalog import Topic
from policies.pii import find_pii_in_label
from policies.reasons import ReasonCode
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
    "holds_user_id",
]

BATCH_MAX = 10_000
_REASON_CODE = Schema(
    type=OpenAPIType.STRING,
    enum=list(get_args(ReasonCode)),
    title="ReasonCode",
    description="One of the stable reason codes (the README's table); clients may filter on them.",
)
WireReason = Annotated[
    dict[str, str | int],
    # For the OpenAPI document only (msgspec ignores it): on the wire a reason stays the map it
    # is, `code` and the details the rule gave, as strings and integers.
    KwargDefinition(
        description='Why: `code`, and the details that code carries, e.g. `{"code": "no_consent", '
        '"purpose": "marketing"}` or `{"code": "quiet_hours", "until": "2026-11-24T07:00:00Z"}`.',
        schema_extra={"properties": {"code": _REASON_CODE}, "required": ["code"]},
    ),
]
PushStatus = Literal["queued", "deferred", "rejected", "sending", "delivered", "failed", "expired"]
CampaignId = Annotated[str, Meta(pattern=r"^cmp_[0-9a-f]{16}$(?!\n)")]
Variant = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9_-]+$(?!\n)",
        description="The A/B variant of the campaign this push belongs to (needs `campaign_id`): 1-32 "
        "letters, digits, `_` or `-`, e.g. `A` or `short_title`. A label, not free text: it is kept in "
        "clear beside the push, through the user's erasure, and shown in campaign statistics and "
        "deliveries, so spaces, `@`, `.`, `+` and the like are refused to keep personal data out, and so "
        "is one that reads as a phone, card or ID number, or holds the push's `user_id`. `default` is "
        "taken: statistics group the "
        "campaign's pushes without a variant under it.",
    ),
]
TtlSeconds = Annotated[
    int,
    Meta(
        ge=1,
        le=604800,
        description="How long the push may wait to be delivered, in seconds. Default: the policy's "
        "`default_ttl_seconds` (86400, 24 h, unless an admin changed it); at most its `max_ttl_seconds` "
        "(604800, 7 days, by default), over which the push is refused with 400. A push that cannot be "
        "delivered before it expires is rejected, or, once deferred, ends as `expired`.",
    ),
]


# gc=False: made for every push and never part of a cycle (see gateway/gc_tuning.py).
class Near(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    geohash: Annotated[
        str, Meta(pattern=r"^[0-9b-hjkmnp-z]{1,6}$(?!\n)", description="target area, geohash 1-6 chars")
    ]


class PushCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=128)]
    user_id: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    subject_ref: Annotated[str, Meta(pattern=SUBJECT_REF_PATTERN)] | None = None
    topic: Topic
    title: Annotated[
        str,
        Meta(
            max_length=4096,
            description="Shown on the device. Either it or `body` must hold more than spaces, and neither "
            "a control character but tab and line breaks (400; a replay of a push accepted before this "
            "rule gets its first answer). The policy's length limits are reasons.",
        ),
    ]
    body: Annotated[str, Meta(max_length=16384)]
    # At most 64 keys: a topic allows a handful, and unbounded, one push's millions of keys made
    # the duplicate-key scan and its path search take seconds of the event loop.
    data: Annotated[
        dict[Annotated[str, Meta(max_length=64)], Annotated[str, Meta(max_length=4096)]], Meta(max_length=64)
    ] = {}
    campaign_id: CampaignId | None = None
    variant: Variant | None = None
    personalized: bool = False
    near: Near | None = None
    ttl_seconds: TtlSeconds | None = None
    dry_run: Annotated[
        bool,
        Meta(
            description="Decide without recording or counting anything, as a new push: the "
            "`idempotency_key` is not looked up, so a key already used gets what a new push would "
            "get now (a push it recorded counts against the caps), not the stored answer. Refused "
            "(400) for a push `near` an area: its answer would say where the user is, unrecorded."
        ),
    ] = False

    def __post_init__(self) -> None:
        if (self.user_id is None) == (self.subject_ref is None):
            raise ValueError("user_id: give exactly one of user_id or subject_ref")
        if self.variant is not None:
            _check_variant(self.variant, self.campaign_id, self.user_id)
        if self.user_id is not None and any(holds_user_id(key, self.user_id) for key in self.data):
            # A key not allowed for the topic is named in the push's reasons, kept in clear
            # through erasure; the value is sealed, the key is not.
            raise ValueError("data: a data key must not hold the push's user_id")
        if self.dry_run and self.near is not None:
            # Its answer says whether the user is inside the area, and nothing of it is kept:
            # dry runs near ever finer areas found a user's stored location with no trace.
            raise ValueError("dry_run: a push `near` an area is not decided as a dry run")


def _check_variant(variant: str, campaign_id: str | None, user_id: str | None) -> None:
    if campaign_id is None:
        raise ValueError("variant: a variant needs a campaign_id")
    if user_id is not None and _names(variant, user_id):
        # Kept in clear, through erasure, and read by campaign readers: the one place a raw
        # user id would outlive the edge.
        raise ValueError("variant: a variant must not hold the push's user_id")
    if variant == DEFAULT_VARIANT:
        raise ValueError(
            f"variant: `{DEFAULT_VARIANT}` names the pushes sent without a variant in campaign statistics"
        )
    if kinds := find_pii_in_label(variant):  # the pattern lets a phone or card number through
        raise ValueError(f"variant: a variant must not hold personal data ({', '.join(kinds)})")


def holds_user_id(text: str, user_id: str) -> bool:
    """Whether `text` (a data key, a notice version) holds the user id whole, for ids long enough
    (eight characters or more) not to turn up by chance in the words, dates and version numbers
    such text is made of: `coupon_code` holds a user `code`, and the preference center's notice
    `preference-center-2026-12` users `2026` and `center`. Or is the id, from four characters
    with a letter (a notice version `carol` from user `carol` was kept); shorter numbers are
    chance, as notice versions often are (user `3` could not withdraw under notice `3`)."""
    uid, folded = user_id.casefold(), text.casefold()
    if len(uid) >= 8:
        return uid in folded
    return folded == uid and len(uid) >= 4 and not uid.isdigit()


def _names(variant: str, user_id: str) -> bool:
    """The variant is the user id, or holds it whole where the user id is long enough (four
    characters or more) to be told from a label's letters."""
    label, uid = variant.casefold(), user_id.casefold()
    return label == uid or (len(uid) >= 4 and uid in label)


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
    """Kept in clear and shown to everyone who reads the campaign: it must name a campaign,
    never a person."""
    topic: Topic

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("name: a campaign name must hold more than spaces")
        if _hides_text(self.name):
            raise ValueError("name: one line, without control, zero-width or bidi characters")
        if kinds := find_pii_in_label(self.name):
            raise ValueError(f"name: a campaign name must not hold personal data ({', '.join(kinds)})")


# Format characters that are invisible or reorder text where a name is shown (bidi controls,
# zero-width spaces and joiners that split an e-mail address past the check for one, tag
# characters that spell a whole address unseen) are refused. Kept: the joiners emoji and several
# scripts need, the soft hyphen, the visible Arabic and Syriac number signs, and the tag
# characters of an emoji flag (🏴 + tags + cancel tag). Unassigned code points are let through:
# Python's tables predate the newest emoji.
_SHOWN_FORMATS = frozenset("\u00ad\u200c\u200d\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f")
# A subdivision flag's tags: lower-case letters and digits, a few (`gbsct`), never `@` or `.`.
_EMOJI_TAGS = re.compile("\U0001f3f4[\U000e0030-\U000e0039\U000e0061-\U000e007a]{2,6}\U000e007f")


def _hides_text(name: str) -> bool:
    """Holds a control (NUL, a line break), a line or paragraph separator, a private-use code
    point, a noncharacter or a format character not kept above."""
    for char in _EMOJI_TAGS.sub("\U0001f3f4", name):
        kind = unicodedata.category(char)
        if kind in ("Cc", "Co", "Zl", "Zp") or (kind == "Cf" and char not in _SHOWN_FORMATS):
            return True
        if 0xFDD0 <= ord(char) <= 0xFDEF or ord(char) & 0xFFFE == 0xFFFE:  # noncharacters
            return True
    return False


class CampaignCreated(msgspec.Struct):
    campaign_id: str


class PauseEvidence(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the complaint-rate rule paused a campaign on: its complaints and deliveries since
    `since` (the last time an operator lifted such a pause; absent: since it began)."""

    rule: Literal["complaint_rate"]
    complaints: int
    deliveries: int
    rate: float
    threshold: float
    min_deliveries: int
    since: str | None = None


class CampaignRead(msgspec.Struct, kw_only=True):
    campaign_id: str
    name: str
    topic: str
    status: Literal["active", "paused"]
    created_at: str
    paused_at: str | None
    pause_reason: Annotated[
        str | None,
        Meta(description="Why it is paused, in words: by whom, or the complaint-rate rule's verdict."),
    ]
    pause_evidence: Annotated[
        PauseEvidence | None,
        Meta(description="The complaint-rate rule's numbers, for a campaign that rule paused."),
    ] = None
