"""Campaigns: create, read, pause and resume."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from gateway.auth import Principal
from gateway.body import Strict
from gateway.deps import RuntimeDep
from gateway.routes.access import CAMPAIGN_OPERATORS, CAMPAIGNS_READ, CAMPAIGNS_WRITE
from gateway.routes.handlers import get, post
from gateway.routes.refusals import refusals
from gateway.schemas.pushes import CampaignCreate, CampaignCreated, CampaignRead
from gateway.schemas.stats import CampaignStats, Metric

__all__ = ["CampaignController"]

NO_SUCH_CAMPAIGN = {404: "No campaign has this id."}


class CampaignController(Controller):
    path = "/v1/campaigns"
    tags = ["campaigns"]  # noqa: RUF012

    @post(
        "/",
        summary="Create a campaign for a topic",
        operation_id="createCampaign", dto=Strict[CampaignCreate], return_dto=None, status_code=201,
        guards=[CAMPAIGNS_WRITE.guard], responses=refusals(400, 413),
    )  # fmt: skip
    async def create(
        self, request: Request[Principal, Any, Any], runtime: RuntimeDep, data: JSONBody[CampaignCreate]
    ) -> CampaignCreated:
        campaign = await runtime.campaigns.create(data.name, data.topic, request.user.actor)
        return CampaignCreated(campaign.campaign_id)

    @get(
        "/{campaign_id:str}",
        summary="A campaign's status and why it was paused",
        operation_id="getCampaign", guards=[CAMPAIGNS_READ.guard],
        responses=refusals(400, why=NO_SUCH_CAMPAIGN),
    )  # fmt: skip
    async def read(self, runtime: RuntimeDep, campaign_id: FromPath[str]) -> CampaignRead:
        return runtime.campaigns.read(campaign_id)

    @get(
        "/{campaign_id:str}/stats",
        summary="A campaign's counts by outcome, variant and event",
        operation_id="getCampaignStats",
        guards=[CAMPAIGNS_READ.guard], responses=refusals(400, why=NO_SUCH_CAMPAIGN),
    )  # fmt: skip
    async def stats(
        self,
        runtime: RuntimeDep,
        campaign_id: FromPath[str],
        metric: FromQuery[Metric] = "click_through_rate",
        control: Annotated[str | None, QueryParameter(max_length=32)] = None,
    ) -> CampaignStats:
        """Per variant counts and rates; each variant compared with `control` (default: the first by name)."""
        return await runtime.stats.campaign(campaign_id, metric, control)

    @post(
        "/{campaign_id:str}/pause",
        summary="Pause a campaign: its queued pushes stop",
        operation_id="pauseCampaign", status_code=200,
        guards=[CAMPAIGN_OPERATORS.guard], responses=refusals(400, why=NO_SUCH_CAMPAIGN),
    )  # fmt: skip
    async def pause(
        self, request: Request[Principal, Any, Any], runtime: RuntimeDep, campaign_id: FromPath[str]
    ) -> CampaignRead:
        """An already paused campaign is answered as it is: why it was paused is kept. A pause by
        an `admin` key only an `admin` key may lift."""
        return await runtime.campaigns.pause(
            campaign_id, request.user.actor, operator="admin" in request.user.scopes
        )

    @post(
        "/{campaign_id:str}/resume",
        summary="Resume a paused campaign",
        operation_id="resumeCampaign", status_code=200,
        guards=[CAMPAIGN_OPERATORS.guard],
        responses=refusals(400, why={
            **NO_SUCH_CAMPAIGN,
            403: "The credential is not one this route admits, or the complaint-rate rule or an "
            "operator (an `admin` key) paused the campaign and the key does not hold `admin`.",
        }),
    )  # fmt: skip
    async def resume(
        self, request: Request[Principal, Any, Any], runtime: RuntimeDep, campaign_id: FromPath[str]
    ) -> CampaignRead:
        """A pause by hand is lifted with `campaigns:write` or `admin`; the complaint-rate rule's
        pause, and an operator's, only with `admin`, else 403. An active campaign is answered as it
        is."""
        return await runtime.campaigns.resume(
            campaign_id, request.user.actor, operator="admin" in request.user.scopes
        )
