"""`AsyncConsentGateway`: the push API for asyncio services, on `httpx.AsyncClient`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Self, TypeVar

import httpx

from clients.sdk import calls
from clients.sdk.endpoint import Endpoint
from clients.sdk.errors import GatewayError, Unreachable
from clients.sdk.models import (
    BatchAnswer,
    Campaign,
    CampaignCreated,
    CampaignStats,
    Complaint,
    Metric,
    Near,
    Push,
    PushAnswer,
    PushRequest,
    Topic,
)
from clients.sdk.retry import DEFAULT_RETRY, RetryPolicy

__all__ = ["AsyncConsentGateway"]

T = TypeVar("T")


class AsyncConsentGateway:
    """`ConsentGateway`'s twin, call for call; requests, retries and answers are built once in
    `calls` and `retry`, only the awaiting differs."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float | httpx.Timeout = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._endpoint = Endpoint(base_url, api_key)
        self._retry = retry
        self._owned = client is None
        self._http = httpx.AsyncClient(timeout=timeout) if client is None else client

    def __repr__(self) -> str:
        return f"AsyncConsentGateway({self._endpoint.base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owned:
            await self._http.aclose()

    async def push(
        self,
        *,
        idempotency_key: str,
        topic: Topic,
        title: str,
        body: str,
        user_id: str | None = None,
        subject_ref: str | None = None,
        data: dict[str, str] | None = None,
        campaign_id: str | None = None,
        variant: str | None = None,
        personalized: bool = False,
        near: Near | None = None,
        ttl_seconds: int | None = None,
        dry_run: bool = False,
    ) -> PushAnswer:
        request = PushRequest(
            idempotency_key=idempotency_key,
            topic=topic,
            title=title,
            body=body,
            user_id=user_id,
            subject_ref=subject_ref,
            data=data or {},
            campaign_id=campaign_id,
            variant=variant,
            personalized=personalized,
            near=near,
            ttl_seconds=ttl_seconds,
            dry_run=dry_run,
        )
        return await self._run(calls.push(request))

    async def push_batch(self, pushes: Sequence[PushRequest]) -> BatchAnswer:
        return await self._run(calls.push_batch(pushes))

    async def get_push(self, push_id: str) -> Push:
        return await self._run(calls.get_push(push_id))

    async def create_campaign(self, name: str, topic: Topic) -> CampaignCreated:
        return await self._run(calls.create_campaign(name, topic))

    async def get_campaign(self, campaign_id: str) -> Campaign:
        return await self._run(calls.get_campaign(campaign_id))

    async def campaign_stats(
        self, campaign_id: str, *, metric: Metric | None = None, control: str | None = None
    ) -> CampaignStats:
        return await self._run(calls.campaign_stats(campaign_id, metric, control))

    async def pause_campaign(self, campaign_id: str) -> Campaign:
        return await self._run(calls.pause_campaign(campaign_id))

    async def resume_campaign(self, campaign_id: str) -> Campaign:
        return await self._run(calls.resume_campaign(campaign_id))

    async def acknowledge_complaint(self, complaint_id: str) -> Complaint:
        return await self._run(calls.acknowledge_complaint(complaint_id))

    async def resolve_complaint(self, complaint_id: str, resolution: str) -> Complaint:
        return await self._run(calls.resolve_complaint(complaint_id, resolution))

    async def _run(self, call: calls.Call[T]) -> T:
        attempts = self._retry.start(call.safety)
        while True:
            try:
                answer = await self._http.request(
                    call.method,
                    self._endpoint.url(call),
                    content=call.body,
                    params=call.params,
                    headers=self._endpoint.headers(call),
                )
                outcome = call.settle(answer, attempts)
                if not isinstance(outcome, calls.Wait):
                    return outcome
                delay = outcome.seconds
            except httpx.DecodingError as exc:  # the gateway never encodes its answers
                raise GatewayError(None, f"an answer that could not be decoded: {exc}") from exc
            except httpx.TransportError as exc:
                again = attempts.after_error(exc)
                if again is None:
                    raise Unreachable(attempts.gave_up(exc)) from exc
                delay = again
            await asyncio.sleep(delay)
