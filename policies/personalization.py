"""Rule 6, personalization: a push tailored from behaviour needs `personalization` (PIPL art. 24).

Applies whatever the topic, transactional included: a contract covers the payment
result, not the use of purchase history to shape the message.
Reason codes: `no_personalization_consent`.
"""

from datetime import datetime

from policies import reasons
from policies.context import RuleContext
from policies.decision import Reason, RuleResult, passed, reject
from policies.settings import PolicySettings


def check_personalization(ctx: RuleContext, now: datetime, settings: PolicySettings) -> RuleResult:
    if not ctx.push.personalized:
        return passed()
    if "personalization" not in ctx.subject.consents:
        return reject(Reason(reasons.NO_PERSONALIZATION_CONSENT))
    return passed("consent:personalization")
