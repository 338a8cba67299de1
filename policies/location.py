"""Rule 7, location: a push aimed `near` an area needs `location` consent and a fresh location inside it.

Without consent the stored location is not looked at at all, so the only reason is
`no_location_consent`. Nor is it when the push is submitted (`look` false): its answer goes
back to the sender at once, and a sender that could stop the push afterwards (pausing its
campaign before dispatch) read whether the user was inside the area from `queued` against
`not_nearby`, with nothing sent. It is judged when the push is about to be sent, and then not
for a push another rule refuses or defers, whose sender would otherwise learn the same from
`campaign_paused` or `frequency_capped` with `not_nearby` or without, or from a push deferred
at dispatch inside the area and refused outside it, then stopped by a pause. A sender learns where a
user is only from a push that reaches them, or one refused at its sending for location alone.
A stale location says nothing about where the user is now, so `not_nearby` is only judged on a
fresh one. An invalid or empty area (an empty prefix would match everyone) counts as not nearby.
Reason codes: `no_location_consent`, `location_stale`, `not_nearby`.
"""

from datetime import datetime, timedelta

from policies import reasons
from policies.context import RuleContext
from policies.decision import Reason, RuleResult, passed, reject
from policies.geohash import is_valid
from policies.settings import PolicySettings


def check_location(ctx: RuleContext, now: datetime, settings: PolicySettings, *, look: bool) -> RuleResult:
    near = ctx.push.near_geohash
    if near is None:
        return passed()
    subject = ctx.subject
    if "location" not in subject.consents:
        return reject(Reason(reasons.NO_LOCATION_CONSENT))
    if not look:
        return passed("consent:location")  # the fix is judged when the push is sent
    max_age = timedelta(minutes=settings.location_max_age_minutes)
    # A timestamp a little ahead of `now` is clock skew between writer and decider; one ahead by
    # more than the freshness allowed (a clock stepped back since) says nothing of where they are.
    if (
        subject.location_geohash is None
        or subject.location_at is None
        or abs(now - subject.location_at) > max_age
    ):
        return reject(Reason(reasons.LOCATION_STALE, {"max_age_minutes": settings.location_max_age_minutes}))
    if not is_valid(near) or not subject.location_geohash.startswith(near):
        return reject(Reason(reasons.NOT_NEARBY))
    return passed("consent:location", "location: inside the target area")
