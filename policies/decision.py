"""Verdicts: what one rule says (`RuleResult`) and what the pipeline answers (`Decision`).

`combine` is the only place that turns rule results into an outcome, so "default deny,
reject beats defer beats pass, keep every reason" is written exactly once.
"""

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

import msgspec

Outcome = Literal["queued", "deferred", "rejected"]


# gc=False: made for every push and never part of a cycle (see gateway/gc_tuning.py).
class Reason(msgspec.Struct, frozen=True, gc=False):
    code: str
    detail: dict[str, str | int] = {}


class Decision(msgspec.Struct, frozen=True, gc=False):
    outcome: Outcome
    reasons: tuple[Reason, ...]
    deliver_after: datetime | None
    expires_at: datetime
    allowed_by: tuple[str, ...] = ()


class RuleResult(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One rule's verdict; `allowed_by` carries facts a passing rule wants the user to see."""

    verdict: Literal["pass", "defer", "reject"]
    reasons: tuple[Reason, ...] = ()
    until: datetime | None = None
    allowed_by: tuple[str, ...] = ()


def passed(*facts: str) -> RuleResult:
    return RuleResult(verdict="pass", allowed_by=facts)


def reject(*reasons: Reason) -> RuleResult:
    if not reasons:
        raise ValueError("a rejection needs at least one reason")
    return RuleResult(verdict="reject", reasons=reasons)


def defer(until: datetime, *reasons: Reason) -> RuleResult:
    if not reasons:
        raise ValueError("a deferral needs at least one reason")
    return RuleResult(verdict="defer", reasons=reasons, until=until)


def rfc3339(moment: datetime) -> str:
    """Reason details are strings on the wire; the spec wants RFC 3339 in UTC."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def combine(results: Iterable[RuleResult], expires_at: datetime) -> Decision:
    """Fold rule results into a decision.

    Default deny: with no results at all there is nothing that allowed the push, and as
    there is no reason code for "nothing was checked" this raises instead of queueing.
    """
    collected = list(results)
    if not collected:
        raise ValueError("no rule was evaluated; refusing to allow by default")
    reasons: list[Reason] = []
    allowed_by: list[str] = []
    verdicts: set[str] = set()
    until: datetime | None = None
    for result in collected:  # one plain pass: this runs for every decision of a campaign
        reasons += result.reasons
        allowed_by += result.allowed_by
        verdicts.add(result.verdict)
        if result.until is not None:
            until = result.until if until is None else max(until, result.until)
    if "reject" in verdicts:
        return Decision(outcome="rejected", reasons=tuple(reasons), deliver_after=None, expires_at=expires_at)
    if "defer" in verdicts and until is None:
        raise ValueError("a deferral without a time to deliver after")
    return Decision(
        outcome="deferred" if "defer" in verdicts else "queued",
        reasons=tuple(reasons),
        deliver_after=until if "defer" in verdicts else None,
        expires_at=expires_at,
        # Once each: the consent rule and the location rule both say `consent:location`.
        allowed_by=tuple(dict.fromkeys(allowed_by)),
    )
