"""Domain errors and their one mapping to HTTP.

    GatewayError                 base; carries the field it is about (or None)
    ├── InvalidInput     400     a value is well-formed JSON but not acceptable
    ├── NotAuthenticated 401     no or bad credentials
    ├── Forbidden        403     authenticated, but not allowed
    ├── NotFound         404     no such thing for this caller
    ├── Conflict         409     the request clashes with current state
    ├── PreconditionFailed 412   an `If-Match` names a version that is no longer current
    ├── UnsupportedMediaType 415 a body declared as anything but JSON (`gateway.body`)
    ├── RequestTimeout   408     a body that stopped arriving (`gateway.body_timeout`)
    ├── Unprocessable    422     e.g. an idempotency key reused with another body
    └── RetryLater               refused for now, not for what the request holds (Retry-After)
        ├── TooManyRequests  429 a user's changes over their allowance
        └── BatchesBusy      503 as many batches as a process takes at once

    StorageFailedError   503     an fsync failed; no write is accepted until a restart
    ├── StorageFullError 503     the disk is full (or refused the write); not kept, retry later
    └── StorageBusyError 503     another process held the write lock too long; retry (Retry-After)

    anything else        500     a defect: logged by type and route (`handle_unexpected`)

Every 4xx and 503 the gateway sends has Litestar's shape `{"status_code", "detail", "extra"?}`;
`extra` is a list of `{"key", "message"}` naming the field, as Litestar's own validation
errors do, so clients parse one shape.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.exceptions.responses import create_exception_response
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Scope

from gateway.annotations import choices
from gateway.logs import Streaks
from gateway.metrics import UnavailableCause
from gateway.request_log import request_id_of
from storage.failures import StorageBusyError, StorageFailedError, StorageFullError
from storage.pseudonyms import SUBJECT_REF_PATTERN

__all__ = [
    "STORAGE_FAILED",
    "STORAGE_FULL",
    "BatchesBusy",
    "Conflict",
    "Forbidden",
    "GatewayError",
    "InvalidInput",
    "NotAuthenticated",
    "NotFound",
    "PreconditionFailed",
    "RequestTimeout",
    "RetryLater",
    "TooManyRequests",
    "Unprocessable",
    "UnsupportedMediaType",
    "client_text",
    "handle_framework_validation",
    "handle_gateway_error",
    "handle_storage_failure",
    "handle_unexpected",
    "refusal",
    "storage_refusal",
    "storage_refusal_messages",
]


class GatewayError(Exception):
    status_code: ClassVar[int] = 400

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class InvalidInput(GatewayError):
    status_code = 400


class NotAuthenticated(GatewayError):
    status_code = 401


class Forbidden(GatewayError):
    """The credential is known but may not do this: what is at fault is the `Authorization` it
    came with, named as a 400 names its field (a client told only the detail had no key to read)."""

    status_code = 403

    def __init__(self, detail: str) -> None:
        super().__init__(detail, "Authorization")


class NotFound(GatewayError):
    status_code = 404


class Conflict(GatewayError):
    status_code = 409


class PreconditionFailed(GatewayError):
    status_code = 412


class Unprocessable(GatewayError):
    status_code = 422


class UnsupportedMediaType(GatewayError):
    status_code = 415


class RequestTimeout(GatewayError):
    status_code = 408


class RetryLater(GatewayError):
    """Refused for now, not for what the request holds: the answer says when to ask again."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class TooManyRequests(RetryLater):
    status_code = 429


class BatchesBusy(RetryLater):
    status_code = 503


def refusal(status_code: int, detail: str, extra: Sequence[tuple[str, str]] = ()) -> dict[str, object]:
    """The body of every refusal, 4xx, 503 or 500 (`gateway.schemas.errors.ErrorRead`): `extra`
    lists the fields or parameters at fault with what was wrong with each."""
    body: dict[str, object] = {"status_code": status_code, "detail": detail}
    if extra:
        body["extra"] = [{"key": key, "message": message} for key, message in extra]
    return body


def handle_gateway_error(request: Request[Any, Any, Any], exc: GatewayError) -> Response[dict[str, object]]:
    body = refusal(exc.status_code, exc.detail, [(exc.field, exc.detail)] if exc.field else ())
    headers: dict[str, str] | None = None
    if exc.status_code == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="consent-gateway"'}
    elif isinstance(exc, RetryLater):
        headers = {"Retry-After": str(exc.retry_after)}
        if isinstance(exc, BatchesBusy):
            _count_unavailable(request.scope, "batches_busy")
    elif isinstance(exc, RequestTimeout):
        headers = {"Connection": "close"}  # the rest of the body is never read
    return Response(body, status_code=exc.status_code, headers=headers)


def handle_framework_validation(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[dict[str, object]]:
    """Litestar's own refusals (path and query parameters, a missing body) in our shape: `extra`
    items `{key, message}` and a `detail` saying what is wrong. Litestar names parameters after
    the handler's arguments, which clients cannot know about (a missing body is `data`, `?from=`
    is argument `start`), names a missing parameter only in its text, and says "Validation
    failed for GET <path and query>", which echoed the raw query (a `user_id`, say) back."""
    aliases = _aliases(request)
    extra: list[tuple[str, str]] = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(item, dict):
            continue
        key, message = str(item.get("key", "")), str(item.get("message", ""))
        if key == "data" and item.get("source") == "body":
            key, message = "body", "a JSON body is required"
        message = client_text(message)
        if message.startswith("Invalid enum value"):
            message += _one_of_parameter(request, key)
        extra.append((aliases.get(key, key), message))
    if not extra and (missing := _MISSING.match(exc.detail)):
        extra.append((missing["name"], f"a required {missing['where']} parameter"))
    if extra:
        detail = f"{extra[0][0]}: {extra[0][1]}"
    else:
        detail = "the request is not valid" if " for " in exc.detail else exc.detail
    return Response(refusal(exc.status_code, detail, extra), status_code=exc.status_code)


# The one message form msgspec and Litestar put a refused value in, quoted as Python's repr
# quotes it: in double quotes when it holds an apostrophe (`o'brien@example.com`).
_ENUM_VALUE = re.compile(r"""Invalid enum value (?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


def client_text(message: str) -> str:
    """A validator's message as a client is told it. Without the value it refused ("Invalid enum
    value 'x'"): a query or a body may hold a user id or an e-mail address. Other messages name
    types, fields and patterns, which the client needs, and our own never repeat a value. A
    pattern with a meaning (`described`) is said by it: an auditor who typed a date was shown a
    regular expression of forty characters. And without the `(?!\\n)` our patterns end with,
    which only keeps a trailing newline out and left a client reading `$(?!\\n)` as part of what
    to send."""
    for quoted, meaning in _MEANINGS.items():
        message = message.replace(quoted, meaning)
    return _ENUM_VALUE.sub("Invalid enum value given", message).replace(_NO_NEWLINE, "")


_MEANINGS: dict[str, str] = {}  # a pattern as msgspec quotes it in a refusal, to what it means


def described(pattern: str, meaning: str) -> str:
    """`pattern`, whose refusals say `meaning` ("an RFC 3339 time, ...") in place of the regex."""
    _MEANINGS["`str` matching regex '" + pattern.replace("\\", "\\\\") + "'"] = meaning
    return pattern


described(SUBJECT_REF_PATTERN, "a subject_ref: `sub_` and 52 of a-z and 2-7")


_NO_NEWLINE = r"(?!\\n)"  # a pattern's `(?!\n)` as msgspec quotes it in its message


def _one_of_parameter(request: Request[Any, Any, Any], argument: str) -> str:
    """What a query or path parameter takes, when a value out of its `Literal` was refused."""
    try:
        parameter = request.route_handler.parsed_fn_signature.parameters[argument]
    except KeyError:
        return ""
    values = choices(parameter.annotation)
    return f"; one of: {', '.join(values)}" if values else ""


_MISSING = re.compile(r"Missing required (?P<where>\w+) parameter '(?P<name>[^']+)'")


def _aliases(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The handler's arguments that clients know by another name, to that name."""
    try:
        parameters = request.route_handler.parsed_fn_signature.parameters
    except KeyError:  # no handler resolved (refused before routing): nothing to rename
        return {}
    return {
        argument: alias
        for argument, parameter in parameters.items()
        if isinstance(alias := getattr(parameter.kwarg_definition, "name", None), str) and alias != argument
    }


STORAGE_FAILED = (
    "storage is unavailable: a disk sync failed and this request may not have been kept; retry later"
)
STORAGE_FULL = (
    "storage is unavailable: the disk is full or refused the write, and this request was not kept; "
    "retry later"
)
STORAGE_BUSY = (
    "storage is busy: another process held the database's write lock and this request was not kept; "
    "retry shortly"
)
BUSY_RETRY_AFTER_SECONDS = 1


def handle_storage_failure(
    request: Request[Any, Any, Any], exc: StorageFailedError
) -> Response[dict[str, object]]:
    """A disk sync failed, so nothing can be made durable any more, the disk is full, or another
    process held the write lock too long, and this write was undone (see `storage.writer`): say
    which, and that it is not the client's fault, rather than a bare 500."""
    body, headers = storage_refusal(exc, request.scope)
    return Response(body, status_code=503, headers=headers or None)


def storage_refusal(exc: StorageFailedError, scope: Scope) -> tuple[dict[str, object], dict[str, str]]:
    """The 503's body and headers for a storage failure, the failure logged: for the handler
    above, and for a middleware that meets one once the app has answered, past Litestar's
    handlers (`gateway.durability`, the audit access log). Retry-After only for the lock, which
    passes: when space or a restart comes is not ours to know. Logged once per ten seconds of a
    streak (`Streaks`), with how many refusals went unlogged: each request's own line is its
    request line, 503."""
    if isinstance(exc, StorageBusyError):  # passing: the lock is free again once the other is done
        _count_unavailable(scope, "storage_busy")
        _said(logging.WARNING, "storage busy", exc, scope)
        return refusal(503, STORAGE_BUSY), {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)}
    full = isinstance(exc, StorageFullError)
    _count_unavailable(scope, "storage_full" if full else "storage_failed")
    _said(logging.ERROR, "storage full" if full else "storage failed", exc, scope)
    return refusal(503, STORAGE_FULL if full else STORAGE_FAILED), {}


def _count_unavailable(scope: Scope, cause: UnavailableCause) -> None:
    """Every 503 a request gets, but `/readyz`'s and `/healthz`'s verdicts, is counted here by its
    cause (`cgw_unavailable_answers_total`): a full disk or a failed sync pages someone, a busy
    lock or batch slot asks a client to retry, and the request count's `status` label alone
    cannot tell them apart. Once a request: an audit read whose handler was refused is refused
    again when its access cannot be logged (`gateway.audit_access_log`)."""
    state = scope.setdefault("state", {})
    if state.get(_UNAVAILABLE_COUNTED):
        return
    state[_UNAVAILABLE_COUNTED] = True
    runtime = scope["litestar_app"].state.get("runtime")
    if runtime is not None:  # none before the lifespan made it
        runtime.metrics.unavailable.labels(cause).inc()


_UNAVAILABLE_COUNTED = "cgw_unavailable_counted"


def _said(level: int, event: str, exc: StorageFailedError, scope: Scope) -> None:
    streaks: Streaks | None = getattr(scope["litestar_app"].state, "storage_refusals", None)
    unsaid = 0 if streaks is None else streaks.unsaid(event)
    if unsaid is None:
        return
    extra: dict[str, object] = {"error": str(exc), "request_id": request_id_of(scope)}
    if unsaid:
        extra["unlogged_since"] = unsaid
    logging.getLogger("gateway.storage").log(level, event, extra=extra)


def storage_refusal_messages(
    exc: StorageFailedError, scope: Scope
) -> tuple[HTTPResponseStartEvent, HTTPResponseBodyEvent]:
    """`storage_refusal` as the ASGI messages of an answer, for a middleware or hook that meets
    the failure before the app's answer has started, and sends these instead."""
    body, headers = storage_refusal(exc, scope)
    encoded = msgspec.json.encode(body)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(encoded)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    return (
        {"type": "http.response.start", "status": 503, "headers": raw},
        {"type": "http.response.body", "body": encoded, "more_body": False},
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """An exception nothing else maps is a defect: answered 500 as Litestar would, but logged, by
    type and route template only (its text or traceback may hold a token or a push's content),
    so that a run of 500s says what raised, and what it leaves to mend is mended
    (`Store.after_failure`). Litestar's own HTTP refusals (404, 405) that
    come this way keep their answers; a body too large says how large a body may be."""
    if isinstance(exc, RequestEntityTooLarge):
        limit = request.route_handler.resolve_request_max_body_size()
        detail = f"the request body is larger than this route takes ({limit} bytes)"
        return Response(refusal(413, detail, [("body", detail)]), status_code=413)
    if isinstance(exc, HTTPException):
        return create_exception_response(request, exc)
    route = str(request.scope.get("path_template") or "unmatched")
    logging.getLogger("gateway.http").error(
        "unhandled exception",
        extra={"exc_type": type(exc).__name__, "route": route, "request_id": request_id_of(request.scope)},
    )
    if (runtime := request.app.state.get("runtime")) is not None:
        runtime.store.after_failure(exc)
    return Response(refusal(500, "Internal Server Error"), status_code=500)
