"""Audit API: `/v1/audit/...`, read-only, for API keys with scope `audit:read` and nobody else.

Every call made with an API key is logged, refused ones included (`gateway.audit_access_log`).

Times (`from`, `to`, `at`) are RFC 3339 with an offset; `from` is inclusive, `to` exclusive.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

from litestar import Controller, Request
from litestar.openapi.spec import OpenAPIFormat
from litestar.params import FromQuery, PathParameter, QueryParameter

from gateway.audit_access_log import NUMBER, RESULT_COUNT, RFC3339, AccessLogMiddleware, Outcome
from gateway.auth import Principal
from gateway.clock import parse_rfc3339
from gateway.deps import RuntimeDep
from gateway.errors import InvalidInput
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
from policies.catalog import Purpose
from policies.reasons import ReasonCode
from storage.ledger import VerifyResult
from storage.pseudonyms import SUBJECT_REF_PATTERN

__all__ = ["AuditController"]

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
# Tree positions are plain decimal digits (`NUMBER`): typed as int,
# Litestar also took `1e0` or `1_0`, answered them, and logged them as not valid values.
Seq = Annotated[str, QueryParameter(pattern=NUMBER, description="event seq, decimal digits")]
Size = Annotated[str, QueryParameter(pattern=NUMBER, description="tree size, decimal digits")]
FromSize = Annotated[str, QueryParameter(name="from", pattern=NUMBER, description="tree size, digits")]
ToSize = Annotated[str, QueryParameter(name="to", pattern=NUMBER, description="tree size, digits")]
Version = Annotated[str, PathParameter(pattern=NUMBER, description="policy version, decimal digits")]


def _counted(request: AuditRequest, answer: T, count: int) -> T:
    """Hands the result count to the access log, then the answer to Litestar."""
    request.state[RESULT_COUNT] = count
    return answer


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
        page = await runtime.audit.consent_events(
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
        answer = await runtime.audit.subject(subject_ref, _moment(at, "at"))
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
        page = await runtime.audit.decisions(
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
        page = await runtime.audit.complaints(
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
