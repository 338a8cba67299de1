"""Rule 8, complaints: a topic the user complained about stays muted; a paused campaign sends nothing.

Two checks, because they reach different pushes: the mute (`check_complaints`) is about
marketing the user complained of, so `transactional` is exempt from it; a campaign paused
"until an operator resumes it" (`check_campaign_pause`) stops every push that names it,
`transactional` too.

The pause itself is set by storage when a campaign's complaint rate crosses
`complaint_pause_rate`; here only its effect is decided.
Reason codes: `recent_complaint` (detail `topic`, `until` in RFC 3339), `campaign_paused`.
"""

from datetime import datetime
from fractions import Fraction

from policies import reasons
from policies.context import RuleContext
from policies.decision import Reason, RuleResult, passed, reject, rfc3339
from policies.settings import PolicySettings


def check_complaints(ctx: RuleContext, now: datetime, settings: PolicySettings) -> RuleResult:
    """The push's topic is not muted for the user after a complaint (`recent_complaint`)."""
    topic = ctx.push.topic
    until = ctx.subject.muted_until.get(topic)
    if until is not None and until > now:
        return reject(Reason(reasons.RECENT_COMPLAINT, {"topic": topic, "until": rfc3339(until)}))
    return passed()


def check_campaign_pause(ctx: RuleContext, now: datetime, settings: PolicySettings) -> RuleResult:
    """The push's campaign, if it names one, is not paused (`campaign_paused`); any topic."""
    if ctx.campaign is not None and ctx.campaign.paused:
        return reject(Reason(reasons.CAMPAIGN_PAUSED))
    return passed()


def should_pause_campaign(complaints: int, deliveries: int, settings: PolicySettings) -> bool:
    """A campaign is paused once its complaints reach `complaint_pause_rate` of its deliveries,
    judged only after `complaint_pause_min_deliveries` so a first complaint cannot stop it.

    Compared exactly, with the rate as the decimal it was written as: in floats, 0.035 * 200
    is 7.000000000000001, and 7 complaints in 200 deliveries would not reach 3.5%."""
    if deliveries < settings.complaint_pause_min_deliveries:
        return False
    return complaints >= Fraction(repr(settings.complaint_pause_rate)) * deliveries
