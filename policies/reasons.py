"""The spec's stable reason codes.

Clients, dashboards and audit queries filter on these strings, so they are constants
and never built by string formatting.
"""

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

ALL_REASON_CODES: frozenset[str] = frozenset(
    {
        SUBJECT_UNKNOWN,
        SUBJECT_ERASED,
        NO_DEVICE,
        NO_CONSENT,
        TOPIC_OPTED_OUT,
        NO_PERSONALIZATION_CONSENT,
        NO_LOCATION_CONSENT,
        LOCATION_STALE,
        NOT_NEARBY,
        QUIET_HOURS,
        FREQUENCY_CAPPED,
        TOPIC_INTERVAL,
        RECENT_COMPLAINT,
        CAMPAIGN_PAUSED,
        PAYLOAD_PII,
        PAYLOAD_FIELD_NOT_ALLOWED,
        PAYLOAD_TOO_LARGE,
        EXPIRED,
    }
)

# `expired` is never part of a submission decision: a push that cannot be delivered before
# its expiry is rejected with `quiet_hours` instead. Dispatch gives `expired` (via
# `policies.ttl.check_expiry`) when a deferred push's time comes too late.
DISPATCH_ONLY_REASON_CODES: frozenset[str] = frozenset({EXPIRED})
