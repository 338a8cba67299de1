"""Rule 5, topic: a marketing topic is on once its purposes are granted, unless the user turned it off.

Reason codes: `topic_opted_out`.
"""

from datetime import datetime

from policies import reasons
from policies.context import RuleContext
from policies.decision import Reason, RuleResult, passed, reject
from policies.settings import PolicySettings


def check_topic(ctx: RuleContext, now: datetime, settings: PolicySettings) -> RuleResult:
    topic = ctx.push.topic
    if topic in ctx.subject.topics_off:
        return reject(Reason(reasons.TOPIC_OPTED_OUT, {"topic": topic}))
    return passed(f"topic:{topic} on")
