"""The pipeline: runs the rules in the order `policies/__init__.py` states and combines them.

`decide` raises on input it cannot judge (naive `now`, TTL out of range, unknown topic,
unknown time zone, malformed quiet window). There is no reason code for "could not
decide", and a rule that fails must never let a push through, so the caller treats any
exception from `decide` as a deny (and logs it, which this pure code cannot do).
"""

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import Flag, auto
from typing import NamedTuple

from policies.catalog import is_marketing
from policies.complaints import check_campaign_pause, check_complaints
from policies.consent import check_consent
from policies.context import CampaignState, PushRequest, RuleContext, SubjectState
from policies.decision import Decision, RuleResult, combine, passed
from policies.frequency import check_frequency
from policies.location import check_location
from policies.personalization import check_personalization
from policies.quiet_hours import check_quiet_hours
from policies.settings import PolicySettings
from policies.subject import check_subject, is_terminal
from policies.topics import check_topic
from policies.ttl import expires_at
from policies.unit import DecisionUnit

_TRANSACTIONAL_RULES = (check_personalization, check_campaign_pause)
_MARKETING_BEFORE_SENDING = (check_consent, check_topic, check_personalization)


class StateParts(Flag):
    """The parts of a `SubjectState` that `decide` may read for a push, past the subject's status
    and device count, which rule 1 reads for every push. Callers load only these: the rest of
    the state is left at its defaults, and a transactional push's subject is spared reading and
    opening its preferences, mutes and planned pushes, and its consents and location unless the
    push is personalized or near a place; a marketing push's, its location unless it is near one.
    No push's location is read at submission, where `decide` leaves it unread."""

    CONSENTS = auto()
    LOCATION = auto()
    PREFERENCES = auto()
    MUTES = auto()
    SCHEDULE = auto()
    ALL = CONSENTS | LOCATION | PREFERENCES | MUTES | SCHEDULE


class PushNeeds(NamedTuple):
    """What of a push says which parts of its subject's state the rules read. A push whose
    content is not open yet (a dispatch round reads the states first) is taken as personalized
    and near a place: the parts the most demanding push of its topic would need. `submitted` as
    `decide` takes it: a push judged at submission, whose location is not looked at."""

    topic: str
    personalized: bool = True
    near: bool = True
    submitted: bool = False


# What every marketing push's rules read: consent, the topic's switch, quiet hours and the caps
# (the preferences and the planned pushes), the mutes.
_MARKETING = StateParts.CONSENTS | StateParts.PREFERENCES | StateParts.MUTES | StateParts.SCHEDULE


def state_parts_for(pushes: Iterable[PushNeeds]) -> StateParts:
    """What `decide` may read of the subjects' states for these pushes. The location only for a
    push near a place (rule 7, with the consents) when it is sent, not submitted; the consents
    for a personalized one (rule 6); and for a marketing push what its other rules read. Most
    transactional pushes need neither consents nor location, and most marketing pushes no
    location. A change to the rules `decide` runs changes this with it (a property test holds it
    to the decisions: tests/property/test_state_parts.py)."""
    parts = StateParts(0)
    for push in pushes:
        if push.near:
            parts |= StateParts.CONSENTS if push.submitted else StateParts.CONSENTS | StateParts.LOCATION
        if is_marketing(push.topic):
            parts |= _MARKETING
        elif push.personalized:
            parts |= StateParts.CONSENTS
        if parts == StateParts.ALL:
            break
    return parts


def decide(
    push: PushRequest,
    subject: SubjectState,
    campaign: CampaignState | None,
    now: datetime,
    settings: PolicySettings,
    unit: DecisionUnit | None = None,
    *,
    submitted: bool = False,
) -> Decision:
    """`unit`: what the unit deciding this push (a submission, a dispatch round) has worked out
    for its pushes so far (policies/unit.py); without it, everything is worked out afresh.
    `submitted`: the decision answers the push's submission, and so leaves its location to be
    judged when it is sent (policies/location.py); by default, as at dispatch, it is judged."""
    if now.tzinfo is not UTC:  # callers pass UTC; any other zone is converted, never used
        if now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")
        # Arithmetic on an aware datetime keeps its zone's wall clock: `now - 7 days` in New York
        # across a clock change is 167 or 169 hours back, and the caps' windows with it.
        now = now.astimezone(UTC)
    expires = expires_at(push, now, settings)
    ctx = RuleContext(push=push, subject=subject, campaign=campaign, expires_at=expires)
    first = check_subject(ctx, now, settings)
    unit = DecisionUnit() if unit is None else unit
    minimization = unit.content.of(push, settings)  # rule 2: judged once per content in a unit
    if is_terminal(first):
        # No subject to judge the push by, but its content and campaign still say what they
        # say: a sender aiming at stale ids learnt only `subject_unknown`, not that its content
        # would be refused for anyone. Nothing of a subject is read past this point.
        return combine([first, minimization, check_campaign_pause(ctx, now, settings)], expires)
    results = [first, minimization]
    if not is_marketing(push.topic):
        results.append(passed("topic:transactional (contract)"))
        personalization, pause = (rule(ctx, now, settings) for rule in _TRANSACTIONAL_RULES)
        location = _location(ctx, now, settings, submitted, results, (personalization, pause))
        return combine([*results, personalization, location, pause], expires)
    # A push deferred past quiet hours is judged as it will be sent: a mute that ends before
    # then no longer holds it back, and the caps are counted then; its location is judged when
    # it is sent, at the window's end.
    quiet = check_quiet_hours(ctx, now, settings, unit.quiet)
    sent_at = quiet.until or now
    results += [rule(ctx, now, settings) for rule in _MARKETING_BEFORE_SENDING]
    after = [
        check_complaints(ctx, sent_at, settings),
        check_campaign_pause(ctx, now, settings),
        quiet,
        check_frequency(ctx, now, sent_at, settings, unit.quiet),
    ]
    results.append(_location(ctx, now, settings, submitted, results, after))  # looked at only if sent now
    return combine([*results, *after], expires)


def _location(
    ctx: RuleContext, at: datetime, settings: PolicySettings, submitted: bool, *others: Sequence[RuleResult]
) -> RuleResult:
    """Rule 7 in its place among the reasons, judged after the others and only when the push is
    sent: the sender of one just submitted, or of one the others refuse or defer, learns nothing
    of what the location would have said (policies/location.py). A deferral too: deferred at
    dispatch (quiet hours begun) inside the area and refused outside it, a push was then stopped
    by its campaign's pause before it went."""
    look = ctx.push.near_geohash is not None and not (
        submitted or any(result.verdict != "pass" for group in others for result in group)
    )
    return check_location(ctx, at, settings, look=look)
