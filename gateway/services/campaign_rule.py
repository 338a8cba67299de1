"""The complaint-rate rule applied to a campaign: paused, with the numbers that paused it, once
its complaints cross the policy's threshold. Judged at each delivery and each complaint of the
campaign, at a hand resume, and when an admin changes the policy (a threshold lowered puts
campaigns over it that no delivery may come to judge again).
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from gateway.clock import rfc3339_text
from policies.complaints import should_pause_campaign
from policies.settings import PolicySettings
from storage.connections import Connection
from storage.repositories import admin_log, campaigns
from storage.repositories import complaints as complaints_repo

__all__ = ["RULE_ACTOR", "count_deliveries", "judge_all", "judge_campaign", "may_pause_at_delivery"]

RULE_ACTOR = "gateway"
"""Who the admin log says paused a campaign the rule paused, with the numbers that paused it."""


def judge_campaign(conn: Connection, campaign_id: str, policy: PolicySettings, now: datetime) -> bool:
    """Pause the campaign if its complaint rate crosses the policy's threshold, with the numbers
    that paused it. Once an operator has lifted such a pause, only what happened since counts
    (pushes delivered after that resume and the complaints about them, `since` in the numbers):
    the resume holds until the campaign earns a new pause on its own.

    A campaign paused by hand is judged too, and over the threshold its pause becomes the
    rule's, which only an operator lifts: otherwise complaints filed while it was paused by
    hand would never be judged, and a `campaigns:write` resume would set it going over the rate.

    Judged as at each delivery of the campaign's pushes (`count_deliveries`), so it reads no more
    than the campaign row (whose `delivered_since_resume` is the deliveries since that resume, or
    since creation) and the campaign's complaints, through their campaign index."""
    campaign = campaigns.get(conn, campaign_id)
    if campaign is None or campaign.pause_rule == campaigns.COMPLAINT_RATE:
        return False
    since = campaign.resumed_at
    complained = complaints_repo.count_for_campaign(conn, campaign_id, since)
    if complained == 0:
        return False
    delivered = campaign.delivered_since_resume
    if not should_pause_campaign(complained, delivered, policy):
        return False
    numbers: dict[str, object] = {
        "rule": campaigns.COMPLAINT_RATE, "complaints": complained, "deliveries": delivered,
        "rate": round(complained / delivered, 6), "threshold": policy.complaint_pause_rate,
        "min_deliveries": policy.complaint_pause_min_deliveries,
    }  # fmt: skip
    if since is not None:
        numbers["since"] = rfc3339_text(since)
    reason = msgspec.json.encode(numbers).decode()
    paused = campaigns.pause(conn, campaign_id, now, reason, rule=campaigns.COMPLAINT_RATE)
    if paused:  # kept past the resume, which clears the campaign's own record of it
        admin_log.record(conn, now, RULE_ACTOR, "campaign.paused", campaign_id, numbers)
    return paused


def may_pause_at_delivery(
    conn: Connection, campaign_id: str, deliveries: int, policy: PolicySettings
) -> bool:
    """Whether `deliveries` more of the campaign's pushes delivered could have the rule pause it
    (`count_deliveries`). Judged with every complaint about the campaign, whatever its push's
    status: one about a push still being sent counts once that push is delivered, which may be
    by those very deliveries. An upper bound, so never False where the rule could pause."""
    campaign = campaigns.get(conn, campaign_id)
    if campaign is None or campaign.pause_rule == campaigns.COMPLAINT_RATE:
        return False
    complained = complaints_repo.count_any_for_campaign(conn, campaign_id)
    if complained == 0:
        return False
    before = campaign.delivered_since_resume
    return any(should_pause_campaign(complained, before + k, policy) for k in range(1, deliveries + 1))


def judge_all(conn: Connection, policy: PolicySettings, now: datetime) -> list[str]:
    """Judge every campaign complained of under `policy`; returns the ones it paused."""
    return [c for c in campaigns.complained_of(conn) if judge_campaign(conn, c, policy, now)]


def count_deliveries(
    conn: Connection, campaign_id: str, delivered: int, policy: PolicySettings, now: datetime
) -> None:
    """`delivered` more pushes of the campaign delivered in one unit, counted and judged as if one
    at a time (`judge_campaign` after each): the rule pauses at the delivery that crosses its
    threshold, with that delivery's numbers, and the rest are counted after the pause. Read once
    per campaign and unit, not three statements per delivered push (6% of delivering one, a fifth
    once the campaign has a complaint). The unit has written the pushes' statuses and delivery
    records before: nothing in it changes the complaints counted while this runs."""
    campaign = campaigns.get(conn, campaign_id)
    crossing = None
    if campaign is not None and campaign.pause_rule != campaigns.COMPLAINT_RATE:
        complained = complaints_repo.count_for_campaign(conn, campaign_id, campaign.resumed_at)
        if complained:
            before = campaign.delivered_since_resume
            crossing = next(
                (k for k in range(1, delivered + 1) if should_pause_campaign(complained, before + k, policy)),
                None,
            )
    if crossing is None:
        campaigns.count_delivery(conn, campaign_id, delivered)
        return
    campaigns.count_delivery(conn, campaign_id, crossing)
    judge_campaign(conn, campaign_id, policy, now)  # pauses, with the numbers of that delivery
    campaigns.count_delivery(conn, campaign_id, delivered - crossing)
