"""Rule 4, consent: every purpose the topic needs is granted now (no record = no consent).

Reason codes: `no_consent`, once per missing purpose (detail `purpose`), so the sender
sees every consent it lacks at once. An unknown topic raises KeyError: the caller denies.
"""

from datetime import datetime

from policies import reasons
from policies.catalog import PURPOSES, TOPIC_PURPOSES
from policies.context import RuleContext
from policies.decision import Reason, RuleResult, passed, reject
from policies.settings import PolicySettings


def check_consent(ctx: RuleContext, now: datetime, settings: PolicySettings) -> RuleResult:
    needed = [purpose for purpose in PURPOSES if purpose in TOPIC_PURPOSES[ctx.push.topic]]
    missing = [purpose for purpose in needed if purpose not in ctx.subject.consents]
    if missing:
        return reject(*(Reason(reasons.NO_CONSENT, {"purpose": purpose}) for purpose in missing))
    return passed(*(f"consent:{purpose}" for purpose in needed))
