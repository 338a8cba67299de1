"""Campaigns: created by marketers, paused and resumed by operators (or by complaints).

Pausing a paused campaign, or resuming an active one, changes nothing: the answer is the
campaign as it is, so a second pause never overwrites why (and when) it was paused. A pause
by the complaint-rate rule holds "until an operator resumes it": only an `admin` key lifts it.
A pause by hand does not shelter a campaign from the rule (`resume`).
"""

from __future__ import annotations

import msgspec

from gateway.clock import Clock, rfc3339_text, rfc3339_text_or_none
from gateway.errors import Forbidden, NotFound
from gateway.schemas.pushes import CampaignRead, PauseEvidence
from gateway.services.campaign_rule import judge_campaign
from storage.connections import Connection
from storage.repositories import admin_log, campaigns
from storage.repositories import policy as policy_repo
from storage.repositories.campaigns import COMPLAINT_RATE, OPERATOR, CampaignRow
from storage.store import Store

__all__ = ["CampaignService"]


def _read(row: CampaignRow) -> CampaignRead:
    """A pause by the complaint-rate rule is kept as its numbers (JSON in `pause_reason`): they
    are answered as `pause_evidence`, and `pause_reason` says them in words, as it says who
    paused a campaign by hand."""
    reason, evidence = row.pause_reason, None
    if row.pause_rule == COMPLAINT_RATE and reason is not None:
        evidence = msgspec.json.decode(reason, type=PauseEvidence)
        reason = (
            f"complaints about {evidence.complaints} of {evidence.deliveries} deliveries "
            f"({evidence.rate:.2%}) reached the pause threshold of {evidence.threshold:.2%}"
        )
    return CampaignRead(
        campaign_id=row.campaign_id,
        name=row.name,
        topic=row.topic,
        status=row.status,  # type: ignore[arg-type]
        created_at=rfc3339_text(row.created_at),
        paused_at=rfc3339_text_or_none(row.paused_at),
        pause_reason=reason,
        pause_evidence=evidence,
    )


class CampaignService:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def create(self, name: str, topic: str, created_by: str) -> CampaignRead:
        now = self._clock()
        row = await self._store.data.writer.run(
            lambda conn: campaigns.create(conn, name, topic, created_by, now)
        )
        return _read(row)

    def read(self, campaign_id: str) -> CampaignRead:
        return _read(_existing(self._store.data.reader(), campaign_id))

    async def pause(self, campaign_id: str, actor: str, *, operator: bool) -> CampaignRead:
        """`operator`: the caller holds `admin`; its pause only an operator may lift."""
        now = self._clock()

        def unit(conn: Connection) -> CampaignRead:
            row = _existing(conn, campaign_id)
            if row.status == "paused":
                return _read(row)
            campaigns.pause(conn, campaign_id, now, f"paused by {actor}", OPERATOR if operator else None)
            admin_log.record(conn, now, actor, "campaign.paused", campaign_id)
            return _read(_existing(conn, campaign_id))

        return await self._store.data.writer.run(unit)

    async def resume(self, campaign_id: str, actor: str, *, operator: bool) -> CampaignRead:
        """`operator`: the caller holds `admin`, the only role that may lift the complaint rule's
        pause, or an operator's.

        The rule judges a campaign paused by hand before it is resumed, in the same unit: over
        the threshold, the pause becomes the rule's, which a non-operator may not lift (403,
        the rule's pause kept), and which an operator's resume lifts as any rule's pause, with
        the rule's window starting again. The rule reads the policy newest in storage, as a
        resume is rare and another process may have changed it."""
        now = self._clock()
        refused: list[str] = []  # the rule of a pause this key may not lift

        def unit(conn: Connection) -> CampaignRead | None:
            row = _existing(conn, campaign_id)
            if row.status != "paused":
                return _read(row)
            if row.pause_rule in (None, OPERATOR) and judge_campaign(
                conn, campaign_id, policy_repo.current(conn).settings, now
            ):
                row = _existing(conn, campaign_id)
            if row.pause_rule is not None and not operator:
                refused.append(row.pause_rule)
                return None  # refused once the rule's pause, if it is new, is committed
            campaigns.resume(conn, campaign_id, now)
            lifted = row.pause_rule or "by hand"
            admin_log.record(conn, now, actor, "campaign.resumed", campaign_id, {"lifted": lifted})
            return _read(_existing(conn, campaign_id))

        resumed = await self._store.data.writer.run(unit)
        if resumed is None:
            by = "an operator" if refused[-1] == OPERATOR else "the complaint-rate rule"
            raise Forbidden(
                f"the campaign was paused by {by}: only an operator (an API key with scope `admin`) "
                "may resume it"
            )
        return resumed


def _existing(conn: Connection, campaign_id: str) -> CampaignRow:
    row = campaigns.get(conn, campaign_id)
    if row is None:
        raise NotFound("no such campaign", "campaign_id")
    return row
