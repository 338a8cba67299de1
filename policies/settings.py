"""Admin-configurable policy settings.

Settings arrive as untrusted JSON from `PUT /v1/admin/policy`, so every field carries its
sane range here and `msgspec.json.decode(raw, type=PolicySettings, strict=True)` refuses
nonsense before it can loosen a rule. Note that calling `PolicySettings(...)` directly
only runs the cross-field checks in `__post_init__`; the ranges are enforced on decode.
"""

import re
from collections.abc import Sequence
from typing import Annotated, cast

import msgspec

from policies.catalog import TOPICS, Topic

# ASCII digits: `\d` is any script's ("1٣:00"), which a browser's time input does not take.
HHMM_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$(?!\n)"
# What was taken before: a window stored then is read as the time it meant, and shown in ASCII
# (`ascii_hhmm`). Compiled once: every marketing decision parses two of these.
_STORED_HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
Hhmm = Annotated[str, msgspec.Meta(pattern=HHMM_PATTERN, description="local time HH:MM")]
DataKey = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$(?!\n)")]

# Data keys a push service keeps for itself (FCM refuses `from`, `message_type` and keys starting
# `gcm` or `google`; APNs's `aps` is the alert itself), or the gateway does (`cgw_idempotency_key`
# rides in every push's data): a push carrying one was accepted, then failed on every device of
# that service, or the app never saw the value. Refused in a new policy, and not allowed by one
# stored before.
RESERVED_DATA_KEY = re.compile(r"(?:from|message_type|aps)$|gcm|google|cgw_")

MAX_TTL_SECONDS = 7 * 24 * 3600
DEFAULT_DATA_KEYS = ("deeplink", "coupon_code", "merchant_id", "image_url")


def _default_data_keys() -> dict[Topic, list[DataKey]]:
    return {topic: list(DEFAULT_DATA_KEYS) for topic in TOPICS}


def hhmm_minutes(value: str) -> int:
    """Minutes after local midnight; subject windows are not decoded through `Hhmm`, so check again."""
    if not _STORED_HHMM.fullmatch(value):
        raise ValueError(f"not a local time HH:MM: {value!r}")
    return int(value[:2]) * 60 + int(value[3:])


def ascii_hhmm(value: str) -> str:
    """`value` in ASCII digits, as HH:MM is taken now."""
    if value.isascii():
        return value
    minutes = hhmm_minutes(value)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def quiet_window_minutes(start: str, end: str) -> int:
    """Length of a quiet window that may cross midnight; equal ends mean no quiet hours."""
    return (hhmm_minutes(end) - hhmm_minutes(start)) % (24 * 60)


class PolicySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    max_per_week: Annotated[int, msgspec.Meta(ge=0, le=50)] = 3
    max_per_day: Annotated[int, msgspec.Meta(ge=0, le=10)] = 1
    topic_interval_hours: Annotated[int, msgspec.Meta(ge=0, le=168)] = 24
    quiet_start: Hhmm = "21:00"
    quiet_end: Hhmm = "08:00"
    min_quiet_minutes: Annotated[int, msgspec.Meta(ge=0, le=23 * 60)] = 0
    location_max_age_minutes: Annotated[int, msgspec.Meta(ge=1, le=24 * 60)] = 30
    complaint_mute_days: Annotated[int, msgspec.Meta(ge=0, le=365)] = 30
    complaint_pause_rate: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.005
    complaint_pause_min_deliveries: Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)] = 200
    title_max_chars: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    body_max_chars: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 500
    # Title, body and data as JSON; never more than fits a provider (`minimization.ENVELOPE_BYTES`).
    payload_max_bytes: Annotated[int, msgspec.Meta(ge=256, le=4096)] = 4096
    allowed_data_keys: dict[Topic, list[DataKey]] = msgspec.field(default_factory=_default_data_keys)
    default_ttl_seconds: Annotated[int, msgspec.Meta(ge=1, le=MAX_TTL_SECONDS)] = 86400
    max_ttl_seconds: Annotated[int, msgspec.Meta(ge=1, le=MAX_TTL_SECONDS)] = MAX_TTL_SECONDS

    def data_keys_for(self, topic: str) -> Sequence[str]:
        """A topic left out of `allowed_data_keys` keeps the default keys; `[]` allows none.
        The keys as stored, not a set: there are a handful, and this runs for every decision."""
        return cast(dict[str, list[str]], self.allowed_data_keys).get(topic, DEFAULT_DATA_KEYS)

    def __post_init__(self) -> None:
        if self.default_ttl_seconds > self.max_ttl_seconds:
            raise ValueError("default_ttl_seconds: must not exceed max_ttl_seconds")
        window = quiet_window_minutes(self.quiet_start, self.quiet_end)
        if window < self.min_quiet_minutes:
            raise ValueError(
                f"min_quiet_minutes: the default quiet window is {window} minutes, shorter than that"
            )
