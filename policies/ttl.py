"""Time to live: when a push stops being worth delivering.

Submission computes `expires_at`; dispatch calls `check_expiry` when a deferred push's
time comes, because only then can it be too late (submission rejects with `quiet_hours`
instead of accepting a push it already knows will expire).

Reason codes: `expired` (dispatch only).
"""

from datetime import datetime, timedelta

from policies import reasons
from policies.context import PushRequest
from policies.decision import Reason
from policies.settings import PolicySettings


def expires_at(push: PushRequest, now: datetime, settings: PolicySettings) -> datetime:
    """The edge validates the TTL range; an out-of-range TTL here is a caller bug, so it raises."""
    if not 1 <= push.ttl_seconds <= settings.max_ttl_seconds:
        raise ValueError(f"ttl_seconds must be within 1..{settings.max_ttl_seconds}")
    return now + timedelta(seconds=push.ttl_seconds)


def check_expiry(expires: datetime, now: datetime) -> Reason | None:
    """A push whose expiry has come (inclusive) must not be handed to a provider."""
    if now >= expires:
        return Reason(reasons.EXPIRED)
    return None
