"""The spec's stable reason codes.

Clients, dashboards and audit queries filter on these strings, so they are constants
and never built by string formatting.
"""

from typing import Literal, get_args

SUBJECT_UNKNOWN = "subject_unknown"
SUBJECT_ERASED = "subject_erased"
NO_DEVICE = "no_device"
NO_CONSENT = "no_consent"
TOPIC_OPTED_OUT = "topic_opted_out"
NO_PERSONALIZATION_CONSENT = "no_personalization_consent"
NO_LOCATION_CONSENT = "no_location_consent"
LOCATION_STALE = "location_stale"
NOT_NEARBY = "not_nearby"
QUIET_HOURS = "quiet_hours"
FREQUENCY_CAPPED = "frequency_capped"
TOPIC_INTERVAL = "topic_interval"
RECENT_COMPLAINT = "recent_complaint"
CAMPAIGN_PAUSED = "campaign_paused"
PAYLOAD_PII = "payload_pii"
PAYLOAD_FIELD_NOT_ALLOWED = "payload_field_not_allowed"
PAYLOAD_TOO_LARGE = "payload_too_large"
EXPIRED = "expired"

# The codes as a type, for a query parameter or field that takes one: a misspelled code is then
# refused by name (400) rather than matching nothing.
ReasonCode = Literal[
    "subject_unknown",
    "subject_erased",
    "no_device",
    "no_consent",
    "topic_opted_out",
    "no_personalization_consent",
    "no_location_consent",
    "location_stale",
    "not_nearby",
    "quiet_hours",
    "frequency_capped",
    "topic_interval",
    "recent_complaint",
    "campaign_paused",
    "payload_pii",
    "payload_field_not_allowed",
    "payload_too_large",
    "expired",
]

ALL_REASON_CODES: frozenset[str] = frozenset(get_args(ReasonCode))

# `expired` is never part of a submission decision: a push that cannot be delivered before
# its expiry is rejected with `quiet_hours` instead. Dispatch gives `expired` (via
# `policies.ttl.check_expiry`) when a deferred push's time comes too late.
DISPATCH_ONLY_REASON_CODES: frozenset[str] = frozenset({EXPIRED})
