"""The audit API's access log: who read what, written before the answer leaves.

Every call made with an API key is logged, refused ones included (a bad range, a limit over
1000, and a key without `audit:read` turned away with 403, which is how probing shows up):
`AccessLogMiddleware` wraps the whole handler, guard, parameter parsing and error mapping too,
and writes the row before the answer's first byte leaves — if the row cannot be written, the
caller gets an error instead of unrecorded data. Handlers tell it how many results they return
through the connection state. Calls without credentials (401) name nobody and are not logged;
nor are user tokens (403), which the log has no key id for and must not name by user.

Calls Litestar's router refuses never reach the controller or its middleware: a method the
route does not take (405) or a path under `/v1/audit` that is no route (404). Probing that way
is logged too, by `log_unrouted_audit_calls`, an app-level `before_send` hook that names the
key (verified as the authentication middleware would, which never ran for them) and logs
`<METHOD> <route template>`, or `<METHOD> /v1/audit/* (no such route)`: never the raw path,
which may hold anything, and the query string filtered as for every other entry.
"""

from __future__ import annotations

import re
from typing import Literal, get_args
from urllib.parse import parse_qsl

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from litestar.utils import normalize_path

from gateway.auth import Principal, bearer_credential, is_api_key
from gateway.errors import NotAuthenticated, described, storage_refusal_messages
from gateway.request_log import method_label
from gateway.schemas.complaints import ComplaintReason, ComplaintStatus
from gateway.services.audit import read_cursor
from policies.catalog import Purpose
from policies.pii import find_pii
from policies.reasons import ReasonCode
from storage.failures import StorageFailedError
from storage.pseudonyms import SUBJECT_REF_PATTERN

__all__ = [
    "AUDIT_PATH", "NOT_LOGGED", "NUMBER", "RESULT_COUNT", "RFC3339", "AccessLogMiddleware", "Outcome",
    "log_unrouted_audit_calls",
]  # fmt: skip

AUDIT_PATH = "/v1/audit"
RESULT_COUNT = "audit_result_count"
LOGGED = "audit_access_logged"  # set in the connection state once the call is in the access log
_REFUSED_BODY = "audit_refused_body"  # an unrouted call's answer, refused for not being logged
UNROUTED = f"{AUDIT_PATH}/* (no such route)"
# Only parameters the routes read are logged (a stray `?email=` must not land in the log), and
# each value only if it has the shape that parameter takes: the log is append-only, and an
# auditor who pastes a user id or an e-mail into `subject_ref` must not leave it there for good.
# Codes are logged only as one of their values, cursors only as one the gateway gave out: a user
# id fits `[a-z_]` or a cursor's characters well enough. (`user_id` is logged as its subject_ref,
# by the service.)
# Times are taken as text of RFC 3339's shape and read by the routes (`_moment`): typed as datetime,
# Litestar also read a bare number as Unix seconds (`at=20261123`, an answer about 1970).
RFC3339 = described(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})?$(?!\n)",
    "an RFC 3339 time, such as 2026-11-23T10:00:00Z",
)
# A number is logged as the gateway writes one: no leading zero, under a billion (no ledger
# position, policy version or page size comes near). A national phone number (`01065529988`,
# `4155550143`) is longer or starts with 0, and `find_pii` knows only mobiles and international
# numbers.
_LOGGED_NUMBER = r"^(0|[1-9][0-9]{0,8})$"
# A tree position or policy version is taken only as the log keeps it: `seq=003` was answered
# and logged as "not a valid value", so the access log could not say what had been read.
NUMBER = _LOGGED_NUMBER + r"(?!\n)"
_TIME = f"{RFC3339}|{_LOGGED_NUMBER}"  # a time, or the proof routes' tree sizes
_CODE = r"^[a-z_]{1,64}$"
LOGGED_SHAPES = {
    "subject_ref": SUBJECT_REF_PATTERN, "user_id": r"^.+$", "purpose": _CODE, "from": _TIME,
    "to": _TIME, "at": _TIME, "cursor": r"^[A-Za-z0-9_-]{1,200}$", "limit": _LOGGED_NUMBER,
    "push_id": r"^psh_[0-9a-f]{24}$", "campaign_id": r"^cmp_[0-9a-f]{16}$", "outcome": _CODE,
    "reason": _CODE, "status": _CODE, "seq": _LOGGED_NUMBER, "size": _LOGGED_NUMBER,
    "version": _LOGGED_NUMBER,
}  # fmt: skip
Outcome = Literal["queued", "deferred", "rejected"]
_CODES = {
    "purpose": frozenset(get_args(Purpose)), "outcome": frozenset(get_args(Outcome)),
    "reason": frozenset(get_args(ReasonCode)) | frozenset(get_args(ComplaintReason)),
    "status": frozenset(get_args(ComplaintStatus)),
}  # fmt: skip
_SHAPES = {name: re.compile(pattern) for name, pattern in LOGGED_SHAPES.items()}
_DIGITS = frozenset(name for name, pattern in LOGGED_SHAPES.items() if pattern in (_TIME, _LOGGED_NUMBER))
NOT_LOGGED = "(not logged: not a valid value)"


class AccessLogMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        principal = scope.get("user")
        if not isinstance(principal, Principal) or not principal.key_id:
            await next_app(scope, receive, send)  # no API key: nobody the log can name
            return
        key_id = principal.key_id
        audit = scope["litestar_app"].state.runtime.audit

        refused = False

        async def send_after_logging(message: Message) -> None:
            nonlocal refused
            if refused:  # the handler's answer, replaced by the 503 below
                return
            if message["type"] == "http.response.start":
                status = message["status"]
                state = scope.setdefault("state", {})
                count = state.get(RESULT_COUNT, 0) if status < 400 else 0
                state[LOGGED] = True  # logged here, or refused for not being logged: not again
                try:
                    await audit.log_access(key_id, scope["path_template"], _filters(scope), count)
                except StorageFailedError as exc:
                    # A read the log cannot keep is not answered: the 503 a write gets (a full
                    # disk), not the handler's answer. Raised here, past Litestar's handlers,
                    # it was the server's plain-text 500.
                    refused = True
                    for answer in storage_refusal_messages(exc, scope):
                        await send(answer)
                    return
            await send(message)

        await next_app(scope, receive, send_after_logging)


async def log_unrouted_audit_calls(message: Message, scope: Scope) -> None:
    """`before_send`: an API key's call to an audit path that no audit handler answered (the
    router's 404 or 405, or an OPTIONS Litestar answers itself) goes in the access log too, with
    result count 0. A key that does not verify names nobody, as with a 401, and is not logged."""
    if message["type"] == "http.response.body" and _REFUSED_BODY in scope.get("state", {}):
        message["body"], message["more_body"] = scope["state"].pop(_REFUSED_BODY), False
        return
    if message["type"] != "http.response.start" or "/audit" not in scope["path"]:
        return  # every answer passes here: the push path pays a substring test, no more
    path = normalize_path(scope["path"])
    if (path != AUDIT_PATH and not path.startswith(AUDIT_PATH + "/")) or scope.get("state", {}).get(LOGGED):
        return
    presented = _bearer_api_key(scope)
    if presented is None:
        return
    app = scope["litestar_app"]
    key = app.state.runtime.api_keys.verify(presented)
    if key is None:
        return
    try:
        await app.state.runtime.audit.log_access(key.key_id, _unrouted(app, scope, path), _filters(scope), 0)
    except StorageFailedError as exc:  # as in `AccessLogMiddleware`: the refusal instead
        start, body = storage_refusal_messages(exc, scope)
        message["status"], message["headers"] = start["status"], start["headers"]
        scope.setdefault("state", {})[_REFUSED_BODY] = body["body"]  # for the answer's body, next


def _bearer_api_key(scope: Scope) -> str | None:
    """The API key the call presents, read as the authentication middleware reads it."""
    headers = [value.decode("latin-1") for name, value in scope["headers"] if name == b"authorization"]
    try:
        credential = bearer_credential(headers)
    except NotAuthenticated:
        return None
    return credential if is_api_key(credential) else None


def _unrouted(app: Litestar, scope: Scope, path: str) -> str:
    """`<METHOD> <template>`: the template of the audit route at `path` (every one takes GET), or
    `UNROUTED`; a method that is not a standard one as OTHER, since the client spells it."""
    method = str(scope.get("method", ""))
    template = scope.get("path_template")
    if not template:
        try:
            template = app.asgi_router.handle_routing(path=path, method="GET")[4]
        except HTTPException:
            template = UNROUTED
    return f"{method_label(method)} {template}"


def _filters(scope: Scope) -> dict[str, str]:
    query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    given = {**dict(query), **scope.get("path_params", {})}
    return {name: _loggable(name, str(value)) for name, value in given.items() if name in _SHAPES}


def _loggable(name: str, value: str) -> str:
    """The value itself if it has its parameter's shape and, for digits-only shapes, nothing in it
    looks personal (a tree size can look like a phone number), else a marker that a value was
    given. Ids are trusted to their patterns: the card check finds Luhn-valid runs in hex ids."""
    if name == "user_id":
        return value
    if not _SHAPES[name].fullmatch(value) or (name in _DIGITS and find_pii(value)):
        return NOT_LOGGED
    if (name in _CODES and value not in _CODES[name]) or (name == "cursor" and not _our_cursor(value)):
        return NOT_LOGGED
    return value


def _our_cursor(value: str) -> bool:
    """One the gateway gave out, whose position (digits, like a tree size) looks like no phone."""
    read = read_cursor(value)
    return read is not None and not find_pii(str(read[1]))
