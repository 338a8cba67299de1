"""Push API: submit pushes one at a time or in batches, and read their status."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request
from litestar.params import FromPath, JSONBody

from gateway.auth import Principal
from gateway.batch_slots import one_batch_slot
from gateway.body import Strict
from gateway.deps import RuntimeDep
from gateway.routes.access import PUSH_READERS, PUSHES_WRITE
from gateway.routes.handlers import get, post
from gateway.routes.refusals import MEANING, refusals
from gateway.schemas.pushes import BatchAnswer, BatchCreate, PushAnswer, PushCreate, PushRead

__all__ = ["PushController"]

KeyRequest = Request[Principal, Any, Any]
BATCH_BODY_LIMIT = 64 * 1024 * 1024
"""Room for 10,000 of the largest pushes the policies accept, written as UTF-8 (4 KiB of payload
plus a user id, keys and names, about 5 KB; a reviewer's 10,000 of 3.5 KB were refused whole at
32 MiB), as msgspec and our SDK write them. Escaping non-ASCII text as `\\uXXXX` (Python's
`json.dumps` by default) triples it: 10,000 maximal pushes in Cyrillic or emoji come to ~125 MB
and must be split; the 413 names this limit in bytes."""
READ_PUSH = (
    "No such push, or not one this key may read: a service reads the pushes it submitted, a "
    "`campaigns:read` key campaign pushes."
)
# A batch is refused whole, `extra` naming the push at fault (`pushes[3].campaign_id`).
SUBMISSION_REFUSALS = refusals(400, 413, 422, why={404: "`campaign_id` names no campaign."})
BATCHES_BUSY = (
    f"{MEANING[503]} Or the server is deciding as many batches as it takes at once "
    "(`CGW_MAX_CONCURRENT_BATCHES`), with `Retry-After`: nothing was read or kept."
)
BATCH_REFUSALS = refusals(400, 413, 422, why={404: "`campaign_id` names no campaign.", 503: BATCHES_BUSY})


def _key_id(request: KeyRequest) -> str:
    assert request.user.key_id is not None  # the scope guard admits API keys only
    return request.user.key_id


class PushController(Controller):
    path = "/v1/pushes"
    tags = ["push API"]  # noqa: RUF012

    @post(
        "/",
        summary="Submit one push: decided at once, queued, deferred or rejected",
        operation_id="submitPush", dto=Strict[PushCreate], return_dto=None, status_code=200,
        guards=[PUSHES_WRITE.guard], responses=SUBMISSION_REFUSALS,
    )  # fmt: skip
    async def submit(
        self, request: KeyRequest, runtime: RuntimeDep, data: JSONBody[PushCreate]
    ) -> PushAnswer:
        return await runtime.pushes.submit(_key_id(request), data)

    @post(
        "/batch",
        summary="Submit up to 10,000 pushes in one request",
        operation_id="submitPushBatch", dto=Strict[BatchCreate], return_dto=None, status_code=200,
        guards=[PUSHES_WRITE.guard], request_max_body_size=BATCH_BODY_LIMIT, middleware=[one_batch_slot],
        responses=BATCH_REFUSALS,
    )  # fmt: skip
    async def submit_batch(
        self, request: KeyRequest, runtime: RuntimeDep, data: JSONBody[BatchCreate]
    ) -> BatchAnswer:
        return await runtime.pushes.submit_batch(_key_id(request), data.pushes)

    @get(
        "/{push_id:str}", summary="A push's status, reasons and attempts", operation_id="getPush",
        guards=[PUSH_READERS.guard],
        responses=refusals(400, why={404: READ_PUSH}),
    )  # fmt: skip
    async def read(self, request: KeyRequest, runtime: RuntimeDep, push_id: FromPath[str]) -> PushRead:
        """A service reads the pushes it submitted; a `campaigns:read` key, campaign pushes.
        Another service's transactional push is not found: its reasons tell about one person
        (a quiet-hours end gives away their time zone)."""
        return runtime.pushes.read(push_id, _key_id(request), "campaigns:read" in request.user.scopes)
