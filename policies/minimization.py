"""Rule 2, minimization: a push carries no more personal data than it needs.

Applies to every topic, transactional included: a payment result needs no e-mail address.
Reason codes: `payload_too_large` (detail `field`: title, body or payload, and `limit`),
`payload_field_not_allowed` (detail `field`: the data key), `payload_pii` (detail
`field` and `kind`; never the matched text, which would copy the personal data into
decisions and the audit trail).
"""

from datetime import datetime

import msgspec

from policies import reasons
from policies.context import RuleContext
from policies.decision import Reason, RuleResult, passed, reject
from policies.pii import could_hold_pii, find_pii
from policies.settings import PolicySettings


def _size_reasons(ctx: RuleContext, settings: PolicySettings) -> list[Reason]:
    push = ctx.push
    found = []
    for field, text, limit in (
        ("title", push.title, settings.title_max_chars),
        ("body", push.body, settings.body_max_chars),
    ):
        if len(text) > limit:
            found.append(Reason(reasons.PAYLOAD_TOO_LARGE, {"field": field, "limit": limit}))
    size = len(msgspec.json.encode({"title": push.title, "body": push.body, "data": push.data}))
    if size > settings.payload_max_bytes:
        found.append(
            Reason(reasons.PAYLOAD_TOO_LARGE, {"field": "payload", "limit": settings.payload_max_bytes})
        )
    return found


def _pii_reasons(ctx: RuleContext) -> list[Reason]:
    push = ctx.push
    if not could_hold_pii("\n".join((push.title, push.body, *push.data.values()))):
        return []
    texts = [("title", push.title), ("body", push.body)]
    texts += [(f"data.{key}", value) for key, value in sorted(push.data.items())]
    return [
        Reason(reasons.PAYLOAD_PII, {"field": field, "kind": kind})
        for field, text in texts
        for kind in find_pii(text)
    ]


def check_minimization(ctx: RuleContext, now: datetime, settings: PolicySettings) -> RuleResult:
    allowed = settings.data_keys_for(ctx.push.topic)
    found = _size_reasons(ctx, settings)
    found += [
        Reason(reasons.PAYLOAD_FIELD_NOT_ALLOWED, {"field": key})
        for key in sorted(ctx.push.data)
        if key not in allowed
    ]
    found += _pii_reasons(ctx)
    return reject(*found) if found else passed()
