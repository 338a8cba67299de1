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
