"""Campaigns: created by marketers, paused and resumed by operators (or by complaints)."""

from __future__ import annotations

from gateway.clock import Clock, rfc3339_text
from gateway.errors import NotFound
from gateway.schemas.pushes import CampaignRead
from storage.repositories import campaigns
from storage.repositories.campaigns import CampaignRow
from storage.store import Store

__all__ = ["CampaignService"]


def _read(row: CampaignRow) -> CampaignRead:
    return CampaignRead(
        campaign_id=row.campaign_id,
        name=row.name,
        topic=row.topic,
        status=row.status,  # type: ignore[arg-type]
        created_at=rfc3339_text(row.created_at),
        paused_at=None if row.paused_at is None else rfc3339_text(row.paused_at),
        pause_reason=row.pause_reason,
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
        row = campaigns.get(self._store.data.reader(), campaign_id)
        if row is None:
            raise NotFound("no such campaign", "campaign_id")
        return _read(row)

    async def set_status(self, campaign_id: str, status: str, reason: str | None) -> CampaignRead:
        now = self._clock()
        if not await self._store.data.writer.run(
            lambda conn: campaigns.set_status(conn, campaign_id, status, now, reason)
        ):
            raise NotFound("no such campaign", "campaign_id")
        return self.read(campaign_id)
