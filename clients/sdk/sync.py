"""`ConsentGateway`: the push API for services that block, on `httpx.Client`."""

from __future__ import annotations

import time
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

__all__ = ["ConsentGateway"]

T = TypeVar("T")


class ConsentGateway:
    """One gateway, one API key. `timeout` configures the client the SDK makes: httpx's, so it
    bounds each connect, write and wait for more of the answer, not a whole try (an answer that
    keeps trickling in runs past it). An injected `client` keeps its own settings and stays open
    when this one closes."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float | httpx.Timeout = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        client: httpx.Client | None = None,
    ) -> None:
        self._endpoint = Endpoint(base_url, api_key)
        self._retry = retry
        self._owned = client is None
        self._http = httpx.Client(timeout=timeout) if client is None else client

    def __repr__(self) -> str:
        return f"ConsentGateway({self._endpoint.base_url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self._http.close()

    def push(
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
        """Submit one push; a rejection is an answer with reasons, not an exception. The
        `idempotency_key` is the caller's: derive it from the event the push is about, so a
        repeat after the caller's own crash is one push too, not only the SDK's retries."""
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
        return self._run(calls.push(request))

    def push_batch(self, pushes: Sequence[PushRequest]) -> BatchAnswer:
        return self._run(calls.push_batch(pushes))

    def get_push(self, push_id: str) -> Push:
        return self._run(calls.get_push(push_id))

    def create_campaign(self, name: str, topic: Topic) -> CampaignCreated:
        return self._run(calls.create_campaign(name, topic))

    def get_campaign(self, campaign_id: str) -> Campaign:
        return self._run(calls.get_campaign(campaign_id))

    def campaign_stats(
        self, campaign_id: str, *, metric: Metric | None = None, control: str | None = None
    ) -> CampaignStats:
        return self._run(calls.campaign_stats(campaign_id, metric, control))

    def pause_campaign(self, campaign_id: str) -> Campaign:
        return self._run(calls.pause_campaign(campaign_id))

    def resume_campaign(self, campaign_id: str) -> Campaign:
        return self._run(calls.resume_campaign(campaign_id))

    def acknowledge_complaint(self, complaint_id: str) -> Complaint:
        return self._run(calls.acknowledge_complaint(complaint_id))

    def resolve_complaint(self, complaint_id: str, resolution: str) -> Complaint:
        return self._run(calls.resolve_complaint(complaint_id, resolution))

    def _run(self, call: calls.Call[T]) -> T:
        attempts = self._retry.start(call.safety)
        while True:
            try:
                answer = self._http.request(
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
            time.sleep(delay)
