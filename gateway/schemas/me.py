"""Wire models of the preference center (`/v1/me/...`)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from clients.delivery.apns import device_token_valid
from clients.delivery.webpush import push_service_origin, subscription_keys_valid
from gateway.schemas.complaints import ComplaintRead
from gateway.schemas.pushes import WireReason
from gateway.timezones import is_iana_zone
from policies.catalog import Purpose, Topic
from policies.pii import find_pii_in_label
from policies.settings import Hhmm

__all__ = [
    "ConsentAnswer",
    "ConsentEvent",
    "ConsentReceipt",
    "ConsentState",
    "ConsentUpdate",
    "DeviceCreate",
    "DeviceCreated",
    "DeviceRead",
    "ExportDelivery",
    "ExportEvent",
    "ExportHistoryEvent",
    "ExportMute",
    "ExportNotification",
    "ExportRead",
    "Frequency",
    "LocationRead",
    "LocationUpdate",
    "PreferencesRead",
    "PreferencesUpdate",
    "QuietHours",
]

Locale = Literal["zh-CN", "en"]
Platform = Literal["fcm", "apns", "webpush", "webhook"]
NoticeVersion = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:+-]+$(?!\n)",
        description="The version of the notice (the purpose text) the user was shown, e.g. `2026-11` or "
        "`preference-center-2026-12`: 1-64 letters, digits, `.`, `_`, `:`, `+` or `-`. It is kept in "
        "clear in the consent ledger and outlives the user's erasure, so it must name a notice, never "
        "a person: spaces, `@` and other characters are refused, and so is a value that looks like "
        "personal data (a phone number, say), holds a run of 10 digits or more, or holds the user's "
        "own id.",
    ),
]
TOKEN_MAX = 4096


class QuietHours(msgspec.Struct, forbid_unknown_fields=True):
    start: Hhmm
    end: Annotated[
        Hhmm,
        Meta(
            description="local time HH:MM; the window may cross midnight, and an end equal to the "
            "start means no quiet hours (refused when the policy sets `min_quiet_minutes`)"
        ),
    ]


class Frequency(msgspec.Struct, forbid_unknown_fields=True):
    max_per_week: Annotated[
        int,
        Meta(
            ge=0,
            le=50,
            description="The user's weekly cap: 0 up to the system cap (the policy's `max_per_week`, 3 "
            "by default, at most 50), which a higher value is refused for; read, the lower of the two.",
        ),
    ]


def check_timezone(name: str) -> None:
    if not is_iana_zone(name):
        raise ValueError("timezone: not an IANA time zone name, such as Asia/Shanghai")


class PreferencesUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    timezone: str | UnsetType = UNSET
    locale: Locale | UnsetType = UNSET
    topics: (
        Annotated[
            dict[Topic, bool],
            Meta(
                description="Switches by topic. One turned on before the consents it needs is kept, "
                "and reads off (`topics` of the answer) until they are given; turned off, it stays off."
            ),
        ]
        | UnsetType
    ) = UNSET
    quiet_hours: QuietHours | UnsetType = UNSET
    frequency: Frequency | UnsetType = UNSET

    def __post_init__(self) -> None:
        if isinstance(self.timezone, str):
            check_timezone(self.timezone)
        if isinstance(self.topics, dict) and self.topics.get("transactional") is False:
            raise ValueError("topics.transactional: transactional messages cannot be turned off")


class ConsentState(msgspec.Struct):
    granted: bool
    updated_at: str | None
    notice_version: str | None


class PreferencesRead(msgspec.Struct):
    subject_ref: str
    timezone: str
    locale: Annotated[
        Locale | None,
        Meta(
            description="The language the person chose; null until they choose one, so a page or app "
            "can use its own (the browser's) meanwhile."
        ),
    ]
    consents: dict[Purpose, ConsentState]
    topics: Annotated[
        dict[Topic, bool],
        Meta(
            description="Each topic as pushes are judged now: on only while the consents it needs "
            "are given and the person has not turned it off."
        ),
    ]
    quiet_hours: QuietHours
    frequency: Frequency
    paused_until: Annotated[
        dict[Topic, str],
        Meta(
            description="Topics paused after the person's complaint about one of their messages, each "
            "with when the pause ends (RFC 3339). A topic's switch (`topics`) stays as they set it; the "
            "pause ends by itself."
        ),
    ] = {}


_LONG_NUMBER = re.compile(r"[0-9]{10}")


class ConsentUpdate(msgspec.Struct, forbid_unknown_fields=True):
    granted: bool
    notice_version: NoticeVersion
    """Kept in clear in the ledger and the consents table, and through erasure: it must name a
    notice, never a person (the pattern alone lets `+8613812345678` through)."""

    def __post_init__(self) -> None:
        kinds = find_pii_in_label(self.notice_version)
        if kinds:
            raise ValueError(
                f"notice_version: a notice version must not hold personal data ({', '.join(kinds)})"
            )
        if _LONG_NUMBER.search(self.notice_version):
            # The detectors know mobiles, international numbers and cards: a national phone
            # number (`015112345678`) or an account (`DE89370400440532013000`) passed, in clear.
            raise ValueError(
                "notice_version: a notice version must not hold a number of 10 digits or more "
                "(it is kept in clear, and such a number may be a person's)"
            )


class PurposeRef(msgspec.Struct):
    id: Purpose
    dpv_category: str
    description: str


class Controller(msgspec.Struct):
    name: str


class ConsentReceipt(msgspec.Struct, kw_only=True):
    """After Kantara Consent Receipt v1.1 and ISO/IEC TS 27560 (field names in our snake_case)."""

    version: str = "KI-CR-v1.1.0+ISO-27560"
    receipt_id: str
    timestamp: str
    jurisdiction: str
    collection_method: str
    subject_ref: str
    controller: Controller
    purpose: PurposeRef
    consent_type: Literal["explicit"] = "explicit"
    notice_version: str
    granted: bool | UnsetType = UNSET
    """PRODUCT.md names it among the receipt's fields (`state` is Kantara's word for it). Every
    receipt made now has it; receipts signed before it was added are given back as signed."""
    state: Literal["given", "withdrawn"]
    ledger_seq: int
    ledger_prev_hash: str | UnsetType = UNSET
    """The first 128 bits (hex) of the hash of the ledger's event before this receipt's: the whole
    history up to it, as signed for this user. Checked against an export (`audit verify --export
    F --receipt R`), a receipt is a witness no one holding the database key can forge: a history
    rewritten before its event no longer holds that hash. Receipts signed before it have none."""


class ConsentAnswer(msgspec.Struct):
    receipt: ConsentReceipt
    jws: str


class ConsentEvent(msgspec.Struct, kw_only=True):
    seq: int
    at: str
    kind: str
    purpose: str | None
    granted: bool | None = None
    notice_version: str | None = None
    source: str
    receipt_id: str | None = None


class _SubscriptionKeys(msgspec.Struct):
    p256dh: Annotated[str, Meta(min_length=1)]
    auth: Annotated[str, Meta(min_length=1)]


class _Subscription(msgspec.Struct):
    endpoint: Annotated[str, Meta(pattern=r"^https://")]
    keys: _SubscriptionKeys


def _one_word(text: str) -> bool:
    """No white space, control, format (zero-width) or unassigned characters: no provider's token
    holds one, and one in a token would be sent to the provider, or shown back, as it came."""
    return text.isprintable() and " " not in text


def _canonical_webpush(token: str) -> str:
    """The subscription as it is kept: endpoint and keys, in one spelling (Python's `json.dumps`
    of `{"endpoint", "keys": {"p256dh", "auth"}}`), whatever order, spacing or escapes it came
    in, and without `expirationTime` or other members, which delivery does not use.

    Refused here, not at the first push: keys the worker cannot encrypt to would only be found
    at delivery, and the device disabled then; an endpoint off the push services the adapter
    allows would fail every push (the message names no part of the token)."""
    try:
        subscription = msgspec.json.decode(token, type=_Subscription)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        subscription = None
    if subscription is None or not subscription_keys_valid(subscription.keys.p256dh, subscription.keys.auth):
        raise ValueError(
            "token: a webpush token is the subscription JSON: an https endpoint, keys.p256dh (base64url"
            " of a 65-byte P-256 point) and keys.auth (base64url of 16 bytes)"
        )
    if not _one_word(subscription.endpoint):
        raise ValueError(
            "token: a webpush subscription's endpoint is printable characters with no white space"
        )
    if push_service_origin(subscription.endpoint) is None:
        # The delivery adapter's own allowlist: every push to another host would fail while the
        # device showed `active`.
        raise ValueError(
            "token: a webpush subscription's endpoint must be on a known push service (Chrome's,"
            " Firefox's, Edge's or Safari's)"
        )
    keys = {"p256dh": subscription.keys.p256dh, "auth": subscription.keys.auth}
    return json.dumps({"endpoint": subscription.endpoint, "keys": keys})


class DeviceCreate(msgspec.Struct, forbid_unknown_fields=True):
    platform: Platform
    token: Annotated[str, Meta(min_length=8, max_length=TOKEN_MAX)]
    """For `webpush`, the subscription JSON; replaced by its one kept spelling once checked."""

    def __post_init__(self) -> None:
        if self.platform == "webpush":
            self.token = _canonical_webpush(self.token)
        elif self.platform == "apns":
            # The adapter's own rule: a token it would never send is refused here, not found at
            # the first push and the device disabled then.
            if not device_token_valid(self.token):
                wanted = "the device token APNs gave the app, in hex (16 to 200 hex digits)"
                raise ValueError(f"token: an apns token is {wanted}")
            # One spelling: in upper case it was another device, and the user before kept it.
            self.token = self.token.lower()
        elif not _one_word(self.token):
            raise ValueError("token: device tokens are printable characters with no white space")


class DeviceCreated(msgspec.Struct):
    device_id: str


class DeviceRead(msgspec.Struct):
    device_id: str
    platform: Platform
    token_hint: str
    status: Literal["active", "disabled"]
    created_at: str


class LocationUpdate(msgspec.Struct, forbid_unknown_fields=True):
    lat: Annotated[float, Meta(ge=-90.0, le=90.0)]
    lon: Annotated[float, Meta(ge=-180.0, le=180.0)]


class LocationRead(msgspec.Struct):
    geohash: str
    precision: int
    updated_at: str


class ExportDevice(msgspec.Struct, kw_only=True):
    """`disabled_at`: when it stopped getting pushes (the provider called the token invalid, or
    another user registered it); `registered_at`: when the app last registered it (None if not
    since that was kept)."""

    device_id: str
    platform: str
    token: str
    status: str
    created_at: str
    disabled_at: str | None
    registered_at: str | None


class ExportDelivery(msgspec.Struct, kw_only=True):
    """What became of a push on one of the user's devices, as the gateway records it: which
    provider (`adapter`) was given it, its `status` there, how many sends it took and the
    provider's last answer code. The device is named by its id, as in `devices` (which holds its
    token while it is registered); no token is repeated here."""

    device_id: str
    adapter: str
    status: str
    attempts: int
    last_code: str | None
    updated_at: str


class ExportNotification(msgspec.Struct, kw_only=True):
    """A push recorded for the user, whatever became of it: `GET /v1/me/notifications` shows the
    newest 500 accepted ones, the export every one. Content is None where none was kept (a
    rejected push's never is); `reasons` are the latest decision's (`outcome` and
    `submitted_reasons` the answer given when it was submitted), `why` what allowed it;
    `deliveries` what became of it on each device it was sent to (empty until one was tried).
    `personalized` and `near_geohash` (the area it was aimed at) are kept with the content."""

    push_id: str
    status: str
    topic: str
    campaign_id: str | None
    variant: str | None
    title: str | None
    body: str | None
    data: dict[str, str] | None
    created_at: str
    at: str
    why: list[str]
    reasons: list[WireReason]
    outcome: str
    submitted_reasons: list[WireReason]
    deliver_after: str | None
    expires_at: str
    attempts: int
    personalized: bool | None
    near_geohash: str | None
    deliveries: list[ExportDelivery]


class ExportMute(msgspec.Struct):
    """A topic muted by one of the user's complaints (`source` is `complaint:<complaint_id>`)."""

    topic: str
    until: str
    source: str


class ExportEvent(msgspec.Struct):
    push_id: str
    type: str
    at: str


class ExportHistoryEvent(msgspec.Struct, kw_only=True):
    """One of the user's ledger entries other than consents (which are `consent_history` and
    `receipts`): each preference change with what it set, each complaint's actions. Earlier
    time zones and quiet hours live only here, since the preferences row keeps the latest."""

    seq: int
    at: str
    kind: str
    source: str
    detail: dict[str, Any] | None


class ExportRead(msgspec.Struct, kw_only=True):
    subject_ref: str
    exported_at: str
    held: bool
    preferences: PreferencesRead
    consent_history: list[ConsentEvent]
    receipts: list[ConsentAnswer]
    devices: list[ExportDevice]
    location: LocationRead | None
    complaints: list[ComplaintRead]
    notifications: list[ExportNotification]
    mutes: list[ExportMute]
    events: list[ExportEvent]
    history: list[ExportHistoryEvent]
