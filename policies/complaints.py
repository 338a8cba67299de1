"""Rule 8, complaints: a topic the user complained about stays muted; a paused campaign sends nothing.

The pause itself is set by storage when a campaign's complaint rate crosses
`complaint_pause_rate`; here only its effect is decided.
Reason codes: `recent_complaint` (detail `topic`, `until` in RFC 3339), `campaign_paused`.
"""

from datetime import datetime

from policies import reasons
from policies.context import RuleContext
from policies.decision import Reason, RuleResult, passed, reject, rfc3339
from policies.settings import PolicySettings


def check_complaints(ctx: RuleContext, now: datetime, settings: PolicySettings) -> RuleResult:
    found = []
    topic = ctx.push.topic
    until = ctx.subject.muted_until.get(topic)
    if until is not None and until > now:
        found.append(Reason(reasons.RECENT_COMPLAINT, {"topic": topic, "until": rfc3339(until)}))
    if ctx.campaign is not None and ctx.campaign.paused:
        found.append(Reason(reasons.CAMPAIGN_PAUSED))
    return reject(*found) if found else passed()


def should_pause_campaign(complaints: int, deliveries: int, settings: PolicySettings) -> bool:
    """A campaign is paused once its complaints reach `complaint_pause_rate` of its deliveries,
    judged only after `complaint_pause_min_deliveries` so a first complaint cannot stop it."""
    if deliveries < settings.complaint_pause_min_deliveries:
        return False
    return complaints >= settings.complaint_pause_rate * deliveries
