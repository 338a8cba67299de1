"""The error answers a route declares in the OpenAPI document (`responses=refusals(...)`).

Every answer below has the one shape `gateway.errors` gives them (`ErrorRead`). Four can come
from any route behind a credential, whatever it does, so `refusals()` always declares them:
400 (a query parameter the route does not take, `gateway.query`), 401 (the authentication
middleware), 403 (the route's guards) and 503 (storage unavailable: a write failed its fsync or
found the disk full, or a read could not be made durable; see `gateway.errors` and
`gateway.durability`). A route names the others, those its handler and the services it calls
raise, with what they mean there when the words below would not do.
"""

from __future__ import annotations

from collections.abc import Mapping

from litestar.openapi import ResponseSpec

from gateway.schemas.errors import ErrorRead

__all__ = ["LEDGER_BROKEN", "MEANING", "refusals"]

MEANING: dict[int, str] = {
    400: "A parameter, header or the body is not acceptable; `extra` names which.",
    401: "No bearer credential, or one that does not verify (unknown, revoked or expired).",
    403: "The credential is not one this route admits: the wrong kind, or without the scope its "
    "description names.",
    404: "Not found, or not this caller's to see.",
    409: "The request clashes with the current state.",
    412: "`If-Match` names a version that is no longer current: nothing was changed; read it again.",
    413: "The body is larger than the gateway takes.",
    415: "The body is declared as another type than JSON (`Content-Type`): nothing was read or changed.",
    422: "`idempotency_key` was already used by this API key with a different body: nothing was "
    "recorded. The same body gets its first answer again.",
    429: "This user has made more changes than `CGW_USER_WRITES_PER_HOUR` allows: nothing was "
    "changed; `Retry-After` says in how many seconds the next is allowed.",
    503: "Storage is unavailable (a disk sync failed, until a restart; the disk is full or refused the "
    "write; or another process held the write lock too long, with `Retry-After`): the request may "
    "not have been kept. Retry later.",
}
WITH_A_CREDENTIAL = (400, 401, 403, 503)
LEDGER_BROKEN = (
    "The ledger does not verify (an event missing, a break in the chain of the events no checkpoint "
    "has signed yet, or a history other than the signed checkpoint's), so nothing is proved or "
    "signed; `GET /v1/audit/ledger/verify` names the first bad event."
)


def refusals(*statuses: int, why: Mapping[int, str] | None = None) -> dict[int, ResponseSpec]:
    """400, 401, 403 and 503 (`WITH_A_CREDENTIAL`), `statuses`, and the statuses in `why` with the
    words given there. A route that takes a body names 413, and answers 415 too (`gateway.body`):
    declared with it."""
    said = {**MEANING, **(why or {})}
    with_body = (415,) if 413 in statuses else ()
    return {
        status: ResponseSpec(ErrorRead, description=said[status], generate_examples=False)
        for status in sorted({*WITH_A_CREDENTIAL, *statuses, *with_body, *(why or {})})
    }
