"""The pure decision pipeline: may this push reach this person, and when?

Pure: no I/O, no clock (time is the `now` argument), no globals, no database. The
callers gather the state, call `decide`, and record the `Decision`. Any exception from
`decide` is a deny.

Evaluation order (each rule in its own module; every reason that applies is kept;
any reject beats a deferral, a deferral beats a pass):

 0. ttl            - `expires_at = now + ttl_seconds`, before any rule: every decision carries it. (ttl.py)
 1. subject        - unknown or erased: nothing of a subject is judged past here, though the
                     push's content (2) and campaign pause (8) are still reported; no active
                     device.                                               (subject.py)
 2. minimization   - sizes, allowed data keys, personal data in text.     (minimization.py)
    `transactional` is exempt from 4, 5, 8's topic mute, 9 and 10, but not from 6, 7 or
    8's campaign pause.
 4. consent        - every purpose the topic needs is granted.            (consent.py)
 5. topic          - the user has not turned the topic off.               (topics.py)
 6. personalization- a personalized push needs `personalization`.         (personalization.py)
 7. location       - a `near` push needs consent and a fresh, inside fix, (location.py)
                     judged when the push is sent (`decide(submitted=True)`
                     leaves it), not for one another rule refuses or defers.
 8. complaints     - topic muted after a complaint; campaign paused.      (complaints.py)
                     A paused campaign stops every push that names it.
 9. quiet hours    - defer to the window's end, or reject past expiry.    (quiet_hours.py)
10. frequency      - weekly, daily and per-topic limits at delivery time. (frequency.py)

At dispatch, `check_expiry` gives `expired` for a deferred push released too late.
"""

from policies.catalog import PURPOSES, TOPIC_PURPOSES, TOPICS, Purpose, Topic, is_marketing
from policies.context import CampaignState, PushRequest, RuleContext, Scheduled, SubjectState
from policies.decision import Decision, Outcome, Reason, RuleResult
from policies.engine import PushNeeds, StateParts, decide, state_parts_for
from policies.minimization import content_key
from policies.pii import find_pii
from policies.reasons import ALL_REASON_CODES, DISPATCH_ONLY_REASON_CODES
from policies.settings import PolicySettings
from policies.ttl import check_expiry
from policies.unit import DecisionUnit

__all__ = [
    "ALL_REASON_CODES",
    "DISPATCH_ONLY_REASON_CODES",
    "PURPOSES",
    "TOPICS",
    "TOPIC_PURPOSES",
    "CampaignState",
    "Decision",
    "DecisionUnit",
    "Outcome",
    "PolicySettings",
    "Purpose",
    "PushNeeds",
    "PushRequest",
    "Reason",
    "RuleContext",
    "RuleResult",
    "Scheduled",
    "StateParts",
    "SubjectState",
    "Topic",
    "check_expiry",
    "content_key",
    "decide",
    "find_pii",
    "is_marketing",
    "state_parts_for",
]
