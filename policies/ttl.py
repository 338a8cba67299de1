"""Time to live: when a push stops being worth delivering.

Submission computes `expires_at`; dispatch calls `check_expiry` when a deferred push's
time comes, because only then can it be too late (submission rejects with `quiet_hours`
instead of accepting a push it already knows will expire).

The admin's `max_ttl_seconds` is an admission limit, checked at the edge when a push is
submitted. It is not checked here: dispatch decides an accepted push again with what is left
of its TTL, and a maximum lowered since must neither refuse that push (it would be claimed
again at every lease, and sent days late once what is left fits) nor shorten it. An accepted
push keeps the expiry it was accepted with; only the spec's seven days bound every TTL.

Reason codes: `expired` (dispatch only).
"""

from datetime import UTC, datetime, timedelta

from policies import reasons
from policies.context import PushRequest
from policies.decision import Reason
from policies.settings import MAX_TTL_SECONDS, PolicySettings


def expires_at(push: PushRequest, now: datetime, settings: PolicySettings) -> datetime:
    """The edge validates the TTL against the maximum in force; a TTL out of the spec's range
    here is a caller bug, so it raises. `settings` is unused, kept so every step of the
    pipeline is called alike. Counted in UTC: added to a time in a zone, the seconds move its
    clock reading, and across a change of that zone's offset the moment was an hour off."""
    if not 1 <= push.ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl_seconds must be within 1..{MAX_TTL_SECONDS}")
    return now.astimezone(UTC) + timedelta(seconds=push.ttl_seconds)


def check_expiry(expires: datetime, now: datetime) -> Reason | None:
    """A push whose expiry has come (inclusive) must not be handed to a provider."""
    if now >= expires:
        return Reason(reasons.EXPIRED)
    return None
