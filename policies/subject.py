"""Rule 1, subject: only a known, not erased subject with a device can receive a push.

Reason codes: `subject_unknown`, `subject_erased` (the engine stops there: nothing else
about an unknown or erased subject may be looked at), `no_device`.
"""

from datetime import datetime

from policies import reasons
from policies.context import RuleContext
from policies.decision import Reason, RuleResult, passed, reject
from policies.settings import PolicySettings


def check_subject(ctx: RuleContext, now: datetime, settings: PolicySettings) -> RuleResult:
    status = ctx.subject.status
    if status == "unknown":
        return reject(Reason(reasons.SUBJECT_UNKNOWN))
    if status == "erased":
        return reject(Reason(reasons.SUBJECT_ERASED))
    if ctx.subject.active_devices < 1:
        return reject(Reason(reasons.NO_DEVICE))
    return passed()


_TERMINAL = frozenset((reasons.SUBJECT_UNKNOWN, reasons.SUBJECT_ERASED))


def is_terminal(result: RuleResult) -> bool:
    """True when the subject may not be looked at any further (unknown or erased)."""
    return any(r.code in _TERMINAL for r in result.reasons) if result.reasons else False
