"""Each push API call as data: what to send, whether retrying it is safe, how to read the answer.

The sync and the async client only carry these over HTTP, so a route, a body or an answer type
is written here once, and neither client can drift from the other.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Generic, NamedTuple, TypeVar

import httpx
import msgspec

from clients.retry_after import parse_retry_after
from clients.sdk.errors import GatewayError, error_from_answer
from clients.sdk.models import (
    BatchAnswer,
    Campaign,
    CampaignCreated,
    CampaignStats,
    Complaint,
    Metric,
    Push,
    PushAnswer,
    PushRequest,
    Topic,
)
from clients.sdk.retry import Attempts, Safety

__all__ = [
    "BATCH_MAX",
    "Call",
    "acknowledge_complaint",
    "campaign_stats",
    "create_campaign",
    "get_campaign",
    "get_push",
    "pause_campaign",
    "push",
    "push_batch",
    "resolve_complaint",
    "resume_campaign",
]

BATCH_MAX = 10_000
"""The gateway's limit per batch."""

T = TypeVar("T", covariant=True)


class Wait(NamedTuple):
    """An answer to try again after (`Call.settle`)."""

    seconds: float


class Call(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    method: str
    path: str
    answer: type[T]
    safety: Safety
    body: bytes | None = None
    params: dict[str, str] = {}

    def settle(self, answer: httpx.Response, attempts: Attempts) -> T | Wait:
        """The answer read, or how long to wait before trying again: one step of both clients'
        retry loops. A body cut short raises like a lost answer (`read`)."""
        wait = answer.headers.get("retry-after")
        delay = attempts.after_status(answer.status_code, wait)
        if delay is not None:
            return Wait(delay)
        return self.read(
            answer.status_code, answer.content, answer.reason_phrase, framed=framed(answer), retry_after=wait
        )

    def read(
        self,
        status_code: int,
        content: bytes,
        reason_phrase: str,
        *,
        framed: bool = True,
        retry_after: str | None = None,
    ) -> T:
        """The decoded answer, or the error it stands for. An answer the SDK cannot decode is a
        `GatewayError` too, so services catch one family whatever went wrong.

        One exception: a success whose body is not JSON and that nothing framed (`framed` False:
        no Content-Length or chunks, the connection's close ended it, as HTTP/1.0 and some proxies
        do) may have been cut, which httpx cannot see there. It is raised as httpx raises a body
        cut short (`RemoteProtocolError`), so the call's retry rules apply. A framed body arrived
        whole (httpx checks its length), so one that is not JSON (a proxy's or a portal's page) is
        an error at once. `retry_after` is the answer's header, given to the error it raises."""
        if not 200 <= status_code < 300:
            wait = parse_retry_after(retry_after, time.time())
            raise error_from_answer(status_code, content, reason_phrase, wait)
        try:
            return msgspec.json.decode(content, type=self.answer)
        except msgspec.ValidationError as exc:  # whole JSON, another shape: not a lost answer
            raise GatewayError(status_code, f"an answer this SDK cannot read: {exc}") from exc
        except msgspec.DecodeError as exc:
            if framed:
                raise GatewayError(status_code, f"an answer that is not JSON: {exc}") from exc
            raise httpx.RemoteProtocolError(f"a {status_code} answer whose body is not JSON: {exc}") from exc


def framed(answer: httpx.Response) -> bool:
    """Whether the body's end was marked rather than left to the close: always over HTTP/2 (the
    stream's end marks it, and a reset stream raises), over HTTP/1.x by a length or chunks."""
    if answer.http_version not in ("HTTP/1.0", "HTTP/1.1"):
        return True
    headers = answer.headers
    return "content-length" in headers or "chunked" in headers.get("transfer-encoding", "").lower()


class _Batch(msgspec.Struct):
    pushes: Sequence[PushRequest]


class _CampaignCreate(msgspec.Struct):
    name: str
    topic: Topic


class _Resolution(msgspec.Struct):
    resolution: str


_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what the gateway's ids are made of (`psh_…`, `cmp_…`, `cpl_…`)


def _segment(value: str, name: str) -> str:
    """An id as one path segment, or `ValueError` naming it: quoting did not keep an id to its
    route (the server decodes `%2F` before routing, so `cmp_1/stats` read the stats as a
    campaign), and an empty one reached the route above it (a 405)."""
    if not _ID.fullmatch(value):
        raise ValueError(f"{name}: an id of the gateway's is 1-64 letters, digits, '_' or '-'")
    return value


def _json(document: msgspec.Struct) -> bytes:
    """The body, or `ValueError` naming the field whose text cannot be UTF-8: a lone surrogate,
    half of a character (text cut between the two halves of an emoji), raised msgspec's
    `UnicodeEncodeError`, which named a position but not the argument."""
    try:
        return msgspec.json.encode(document)
    except UnicodeEncodeError:
        field = _half_character(msgspec.to_builtins(document), "") or "body"
        raise ValueError(
            f"{field}: text holding half a character (a lone surrogate) cannot be sent"
        ) from None


def _half_character(node: object, path: str) -> str | None:
    if isinstance(node, str):
        return None if node.isascii() or _encodes(node) else path
    if isinstance(node, dict):
        items = [(f"{path}.{key}" if path else str(key), value) for key, value in node.items()]
        keys = [(path or "body", key) for key in node]
        return next((hit for p, v in (*keys, *items) if (hit := _half_character(v, p))), None)
    if isinstance(node, list):
        return next((hit for i, v in enumerate(node) if (hit := _half_character(v, f"{path}[{i}]"))), None)
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def push(request: PushRequest) -> Call[PushAnswer]:
    body = _json(request)
    return Call(method="POST", path="/v1/pushes", answer=PushAnswer, safety="idempotent", body=body)


def push_batch(pushes: Sequence[PushRequest]) -> Call[BatchAnswer]:
    """Refuses an empty or oversized batch before encoding megabytes the gateway would refuse."""
    if not 1 <= len(pushes) <= BATCH_MAX:
        raise ValueError(f"pushes: a batch holds 1 to {BATCH_MAX} pushes, not {len(pushes)}")
    body = _json(_Batch(pushes))
    return Call(method="POST", path="/v1/pushes/batch", answer=BatchAnswer, safety="idempotent", body=body)


def get_push(push_id: str) -> Call[Push]:
    return Call(
        method="GET", path=f"/v1/pushes/{_segment(push_id, 'push_id')}", answer=Push, safety="idempotent"
    )


def create_campaign(name: str, topic: Topic) -> Call[CampaignCreated]:
    body = _json(_CampaignCreate(name, topic))
    return Call(method="POST", path="/v1/campaigns", answer=CampaignCreated, safety="unsent_only", body=body)


def get_campaign(campaign_id: str) -> Call[Campaign]:
    path = f"/v1/campaigns/{_segment(campaign_id, 'campaign_id')}"
    return Call(method="GET", path=path, answer=Campaign, safety="idempotent")


def campaign_stats(
    campaign_id: str, metric: Metric | None = None, control: str | None = None
) -> Call[CampaignStats]:
    """`metric` and `control` left out take the gateway's defaults (click-through rate; the first
    variant by name)."""
    params = {name: value for name, value in (("metric", metric), ("control", control)) if value}
    path = f"/v1/campaigns/{_segment(campaign_id, 'campaign_id')}/stats"
    return Call(method="GET", path=path, answer=CampaignStats, safety="idempotent", params=params)


def pause_campaign(campaign_id: str) -> Call[Campaign]:
    path = f"/v1/campaigns/{_segment(campaign_id, 'campaign_id')}/pause"
    return Call(method="POST", path=path, answer=Campaign, safety="idempotent")


def resume_campaign(campaign_id: str) -> Call[Campaign]:
    path = f"/v1/campaigns/{_segment(campaign_id, 'campaign_id')}/resume"
    return Call(method="POST", path=path, answer=Campaign, safety="idempotent")


def acknowledge_complaint(complaint_id: str) -> Call[Complaint]:
    """A second acknowledge is a 409, so this is not retried once it may have arrived."""
    path = f"/v1/complaints/{_segment(complaint_id, 'complaint_id')}/acknowledge"
    return Call(method="POST", path=path, answer=Complaint, safety="unsent_only")


def resolve_complaint(complaint_id: str, resolution: str) -> Call[Complaint]:
    body = _json(_Resolution(resolution))
    path = f"/v1/complaints/{_segment(complaint_id, 'complaint_id')}/resolve"
    return Call(method="POST", path=path, answer=Complaint, safety="unsent_only", body=body)
