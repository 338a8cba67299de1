"""Audit API: `/v1/audit/...`, read-only, for API keys with scope `audit:read` and nobody else.

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

Times (`from`, `to`, `at`) are RFC 3339 with an offset; `from` is inclusive, `to` exclusive.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar, get_args
from urllib.parse import parse_qsl

from litestar import Controller, Litestar, Request
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.middleware import ASGIMiddleware
from litestar.openapi.spec import OpenAPIFormat
from litestar.params import FromQuery, PathParameter, QueryParameter
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from litestar.utils import normalize_path

from gateway.auth import Principal, bearer_credential, is_api_key
from gateway.clock import parse_rfc3339
from gateway.deps import RuntimeDep
from gateway.errors import InvalidInput, NotAuthenticated, described, storage_refusal_messages
from gateway.request_log import method_label
from gateway.routes.access import AUDIT_READ, NOT_ADMIN
from gateway.routes.handlers import get
from gateway.routes.refusals import LEDGER_BROKEN, refusals
from gateway.schemas.audit import (
    AccessLogPage,
    AdminLogPage,
    CheckpointRead,
    ComplaintPage,
    ConsistencyProofRead,
    DecisionPage,
    EventPage,
    ExportRead,
    InclusionProofRead,
    PolicyVersionRead,
    SubjectRead,
)
from gateway.schemas.complaints import ComplaintReason, ComplaintStatus
from gateway.services.audit import read_cursor
from policies.catalog import Purpose
from policies.pii import find_pii
from policies.reasons import ReasonCode
from storage.failures import StorageFailedError
from storage.ledger import VerifyResult
from storage.pseudonyms import SUBJECT_REF_PATTERN

__all__ = ["AccessLogMiddleware", "AuditController", "log_unrouted_audit_calls"]

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
# Times are taken as text of RFC 3339's shape and read here (`_moment`): typed as datetime,
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
_NUMBER = _LOGGED_NUMBER + r"(?!\n)"
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

AuditRequest = Request[Principal, Any, Any]
T = TypeVar("T")
SubjectRef = Annotated[str | None, QueryParameter(pattern=SUBJECT_REF_PATTERN)]
# Digits only, as the access log keeps them: typed as int, Litestar took `1e3`, `1_0`, `+5` or `050`
# as numbers and answered them, while the log recorded them as not valid values. The OpenAPI
# document still gives the integer it is.
Limit = Annotated[
    str,
    QueryParameter(
        pattern=r"^([1-9][0-9]{0,2}|1000)$(?!\n)",
        description="page size, 1 to 1000 in decimal digits",
        schema_extra={"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    ),
]
Cursor = Annotated[str | None, QueryParameter(max_length=200, description="next_cursor of the last page")]
From = Annotated[
    str | None,
    QueryParameter(
        name="from", pattern=RFC3339, format=OpenAPIFormat.DATE_TIME, description="RFC 3339, inclusive"
    ),
]
To = Annotated[
    str | None,
    QueryParameter(
        name="to", pattern=RFC3339, format=OpenAPIFormat.DATE_TIME, description="RFC 3339, exclusive"
    ),
]
At = Annotated[
    str | None,
    QueryParameter(
        pattern=RFC3339, format=OpenAPIFormat.DATE_TIME, description="RFC 3339: state at this moment"
    ),
]
Code = Annotated[str | None, QueryParameter(max_length=64)]
# Tree positions are plain decimal digits (`_NUMBER`): typed as int,
# Litestar also took `1e0` or `1_0`, answered them, and logged them as not valid values.
Seq = Annotated[str, QueryParameter(pattern=_NUMBER, description="event seq, decimal digits")]
Size = Annotated[str, QueryParameter(pattern=_NUMBER, description="tree size, decimal digits")]
FromSize = Annotated[str, QueryParameter(name="from", pattern=_NUMBER, description="tree size, digits")]
ToSize = Annotated[str, QueryParameter(name="to", pattern=_NUMBER, description="tree size, digits")]
Version = Annotated[str, PathParameter(pattern=_NUMBER, description="policy version, decimal digits")]


def _counted(request: AuditRequest, answer: T, count: int) -> T:
    """Hands the result count to the access log, then the answer to Litestar."""
    request.state[RESULT_COUNT] = count
    return answer


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


class AuditController(Controller):
    path = "/v1/audit"
    # Operators cannot read audit routes with an admin key (SECURITY.md), even one that also holds
    # `audit:read`: such keys are refused at creation now, but may exist from before.
    guards = [AUDIT_READ.guard, NOT_ADMIN.guard]  # noqa: RUF012
    middleware = [AccessLogMiddleware()]  # noqa: RUF012
    tags = ["audit"]  # noqa: RUF012

    @get(
        "/consent-events",
        summary="Consent events from the ledger, by subject, purpose or time",
        operation_id="auditConsentEvents",
        responses=refusals(400),
    )
    async def consent_events(
        self, request: AuditRequest, runtime: RuntimeDep, subject_ref: SubjectRef = None,
        user_id: Annotated[str | None, QueryParameter(min_length=1, max_length=128)] = None,
        purpose: FromQuery[Purpose | None] = None, start: From = None, end: To = None,
        cursor: Cursor = None, limit: Limit = "100",
    ) -> EventPage:  # fmt: skip
        page = runtime.audit.consent_events(
            subject_ref=subject_ref, user_id=user_id, purpose=purpose, start=_moment(start, "from"),
            end=_moment(end, "to"), cursor=cursor, limit=int(limit),
        )  # fmt: skip
        return _counted(request, page, len(page.events))

    @get(
        "/subjects/{subject_ref:str}",
        summary="One subject's consent history, by subject_ref",
        operation_id="auditSubject",
        responses=refusals(400, why={404: "No subject, live or erased, has this subject_ref."}),
    )  # fmt: skip
    async def subject(
        self, request: AuditRequest, runtime: RuntimeDep,
        subject_ref: Annotated[str, PathParameter(pattern=SUBJECT_REF_PATTERN)],
        at: At = None,
    ) -> SubjectRead:  # fmt: skip
        answer = runtime.audit.subject(subject_ref, _moment(at, "at"))
        return _counted(request, answer, len(answer.history))

    @get(
        "/decisions",
        summary="Push decisions with their reasons and policy version",
        operation_id="auditDecisions",
        responses=refusals(400),
    )
    async def decisions(
        self, request: AuditRequest, runtime: RuntimeDep, push_id: Code = None, campaign_id: Code = None,
        subject_ref: SubjectRef = None,
        outcome: FromQuery[Outcome | None] = None,
        reason: FromQuery[ReasonCode | None] = None,
        start: From = None, end: To = None, cursor: Cursor = None, limit: Limit = "100",
    ) -> DecisionPage:  # fmt: skip
        page = runtime.audit.decisions(
            push_id=push_id, campaign_id=campaign_id, subject_ref=subject_ref, outcome=outcome, reason=reason,
            start=_moment(start, "from"), end=_moment(end, "to"), cursor=cursor, limit=int(limit),
        )  # fmt: skip
        return _counted(request, page, len(page.decisions))

    @get(
        "/complaints",
        summary="Complaints and how they were handled (no text)",
        operation_id="auditComplaints",
        responses=refusals(400),
    )
    async def complaints(
        self, request: AuditRequest, runtime: RuntimeDep, status: FromQuery[ComplaintStatus | None] = None,
        reason: FromQuery[ComplaintReason | None] = None, campaign_id: Code = None, start: From = None,
        end: To = None, cursor: Cursor = None, limit: Limit = "100",
    ) -> ComplaintPage:  # fmt: skip
        page = runtime.audit.complaints(
            status=status, reason=reason, campaign_id=campaign_id, start=_moment(start, "from"),
            end=_moment(end, "to"), cursor=cursor, limit=int(limit),
        )  # fmt: skip
        return _counted(request, page, len(page.complaints))

    @get(
        "/ledger/verify",
        summary="Verify the whole ledger: its chain and its checkpoints",
        operation_id="verifyLedger",
        responses=refusals(),
    )
    async def verify(self, request: AuditRequest, runtime: RuntimeDep) -> VerifyResult:
        result = await runtime.audit.ledger.verify()
        return _counted(request, result, result.events)

    @get(
        "/ledger/checkpoint",
        summary="The latest signed checkpoint of the ledger's Merkle tree",
        operation_id="getLedgerCheckpoint",
        responses=refusals(why={409: LEDGER_BROKEN}),
    )
    async def checkpoint(self, request: AuditRequest, runtime: RuntimeDep) -> CheckpointRead:
        return _counted(request, await runtime.audit.ledger.checkpoint(), 1)

    @get(
        "/ledger/proof/inclusion",
        summary="An inclusion proof of one ledger event (RFC 6962)",
        operation_id="getInclusionProof",
        responses=refusals(400, why={409: LEDGER_BROKEN}),
    )  # fmt: skip
    async def inclusion(
        self, request: AuditRequest, runtime: RuntimeDep, seq: Seq, size: Size
    ) -> InclusionProofRead:
        return _counted(request, await runtime.audit.ledger.inclusion(int(seq), int(size)), 1)

    @get(
        "/ledger/proof/consistency",
        summary="A consistency proof between two tree sizes (RFC 6962)",
        operation_id="getConsistencyProof",
        responses=refusals(400, why={409: LEDGER_BROKEN}),
    )  # fmt: skip
    async def consistency(
        self, request: AuditRequest, runtime: RuntimeDep,
        first: FromSize, second: ToSize,
    ) -> ConsistencyProofRead:  # fmt: skip
        return _counted(request, await runtime.audit.ledger.consistency(int(first), int(second)), 1)

    @get(
        "/policy/versions/{version:str}",
        summary="One policy version as it was in force",
        operation_id="auditPolicyVersion",
        responses=refusals(400, why={404: "No policy version has this number."}),
    )  # fmt: skip
    async def policy_version(
        self, request: AuditRequest, runtime: RuntimeDep, version: Version
    ) -> PolicyVersionRead:
        """The settings of any policy version, superseded ones too: decisions record the version
        they were judged by (`policy_version`, `final_policy_version`)."""
        return _counted(request, runtime.policy.read_version(int(version)), 1)

    @get(
        "/access-log",
        summary="Who read what through the Audit API",
        operation_id="auditAccessLog",
        responses=refusals(400),
    )
    async def access_log(
        self, request: AuditRequest, runtime: RuntimeDep, cursor: Cursor = None, limit: Limit = "100"
    ) -> AccessLogPage:
        page = runtime.audit.access_log(cursor, int(limit))
        return _counted(request, page, len(page.entries))

    @get(
        "/admin-log",
        summary="Who changed keys, policy or campaigns",
        operation_id="auditAdminLog",
        responses=refusals(400),
    )
    async def admin_log(
        self, request: AuditRequest, runtime: RuntimeDep, cursor: Cursor = None, limit: Limit = "100"
    ) -> AdminLogPage:
        """Who created or revoked API keys, rotated the encryption key, changed the policy, or
        paused and resumed campaigns, oldest first."""
        page = runtime.audit.admin_log(cursor, int(limit))
        return _counted(request, page, len(page.entries))

    @get(
        "/export",
        summary="A signed bundle of events in a time range",
        operation_id="exportAudit",
        responses=refusals(400, why={409: LEDGER_BROKEN}),
    )
    async def export(
        self, request: AuditRequest, runtime: RuntimeDep, start: From = None, end: To = None
    ) -> ExportRead:
        answer, count = await runtime.audit.export(_moment(start, "from"), _moment(end, "to"))
        return _counted(request, answer, count)


def _moment(value: str | None, name: str) -> datetime | None:
    """A time of RFC 3339's shape that is also a real one (not 2026-02-30T10:00Z)."""
    if value is None:
        return None
    try:
        return parse_rfc3339(value)  # one without an offset is refused by `aware`, as before
    except ValueError:
        raise InvalidInput(
            f"{name}: not a real time in RFC 3339, such as 2026-11-23T10:00:00Z", name
        ) from None
