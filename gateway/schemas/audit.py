"""Wire models of the Audit API (`/v1/audit/...`). All answers; the API takes no bodies.

Hashes travel as lowercase hex. Nothing here carries push content, complaint text or a user_id:
a subject appears only as its `subject_ref`, and as null once the subject is erased.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from gateway.schemas.pushes import WireReason

__all__ = [
    "AccessLogEntry",
    "AccessLogPage",
    "AuditEvent",
    "CheckpointRead",
    "ComplaintPage",
    "ComplaintRead",
    "ConsistencyProofRead",
    "DecisionPage",
    "DecisionRead",
    "EventPage",
    "ExportBundle",
    "ExportEvent",
    "ExportRead",
    "InclusionProofRead",
    "PolicyVersionRead",
    "PurposeState",
    "SubjectRead",
]


class AuditEvent(msgspec.Struct, kw_only=True):
    seq: int
    at: str
    subject_ref: str | None
    purpose: str | None
    action: str  # "given" / "withdrawn" for consent events, the event kind otherwise
    notice_version: str | None
    actor: str
    source: str
    prev_hash: str
    hash: str


class EventPage(msgspec.Struct):
    events: list[AuditEvent]
    next_cursor: str | None


class PurposeState(msgspec.Struct):
    """One purpose's consent at a moment. `granted` is null when it cannot be known: an erased
    subject's history is unreadable, so what they had agreed to before erasure is not "no"."""

    granted: bool | None
    notice_version: str | None
    since: str | None


class SubjectRead(msgspec.Struct, kw_only=True):
    subject_ref: str
    status: Literal["active", "erased"]
    as_of: str
    consents: dict[str, PurposeState]
    history: list[AuditEvent]
    erased_at: Annotated[
        str | None,
        Meta(
            description="The day of the ref's last erasure, given as the UTC midnight after it "
            "(so it may read as a moment still to come): the exact moment is kept only in the "
            "ledger's `subject.erased` event, which names the subject's internal id, and would "
            "link the two. For an erased subject nothing is held from then on (or from now, if "
            "sooner); a moment before is answered `granted: null` (the old history is "
            "unreadable), for one who came back too."
        ),
    ] = None


class DecisionRead(msgspec.Struct, kw_only=True):
    """One push's decision log entry: the submission's verdict and, once dispatch ended the push
    with its own verdict, that one too, each with the policy version it was made under.

    `reasons` were given under `policy_version`; `final_reasons` under `final_policy_version`,
    which a policy change in between can make newer. `final_policy_version` is null when
    `final_reasons` is empty (a push still in flight, or delivered without dispatch giving
    reasons of its own), and for a push dispatch ended before the gateway recorded it.
    """

    push_id: str
    subject_ref: str | None
    topic: str
    campaign_id: str | None
    variant: str | None
    outcome: str
    status: str
    reasons: list[WireReason]  # the submission's answer, as an idempotent replay returns it
    final_reasons: list[WireReason]  # why dispatch ended the push (rejected, expired, failed); else []
    final_policy_version: int | None  # the version `final_reasons` were given under; else null
    policy_version: int
    created_at: str


class DecisionPage(msgspec.Struct):
    decisions: list[DecisionRead]
    next_cursor: str | None


class ComplaintRead(msgspec.Struct, kw_only=True):
    complaint_id: str
    subject_ref: str | None
    push_id: str | None
    topic: str | None
    campaign_id: str | None
    variant: str | None
    reason: str
    has_comment: bool
    status: str
    flagged: bool
    actions: list[object]
    created_at: str
    acknowledged_at: str | None
    resolved_at: str | None
    has_resolution: bool


class ComplaintPage(msgspec.Struct):
    complaints: list[ComplaintRead]
    next_cursor: str | None


class CheckpointRead(msgspec.Struct, kw_only=True):
    tree_size: int
    root_hash: str
    at: str
    jws: str


class InclusionProofRead(msgspec.Struct, kw_only=True):
    seq: int
    leaf_index: int
    tree_size: int
    leaf_hash: str
    root_hash: str
    audit_path: list[str]


class ConsistencyProofRead(msgspec.Struct, kw_only=True):
    first: int = msgspec.field(name="from")
    second: int = msgspec.field(name="to")
    first_root: str
    second_root: str
    proof: list[str]


class AccessLogEntry(msgspec.Struct, kw_only=True):
    id: int
    at: str
    key_id: str
    route: str
    filters: dict[str, str]
    result_count: int


class AccessLogPage(msgspec.Struct):
    entries: list[AccessLogEntry]
    next_cursor: str | None


class AdminLogEntry(msgspec.Struct, kw_only=True):
    """One change to how the gateway runs, and who made it: `key:<id>`, `cli` for a command run
    on the server, or `gateway` for a key rotation it finished at start or a campaign its
    complaint-rate rule paused. `action` is
    `api_key.created` (`detail.scopes`), `api_key.revoked`, `encryption_key.rotated` (`target`
    the new key's id, `detail.rewrapped`), `policy.changed` (`target` the version),
    `campaign.paused` (by `gateway` when the complaint-rate rule paused it, `detail` the numbers
    that did: `rule`, `complaints`, `deliveries`, `rate`, `threshold`, `min_deliveries`, and `since`
    after a resume) or `campaign.resumed` (`detail.lifted`: `by hand` or the rule whose pause was
    lifted)."""

    id: int
    at: str
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


class AdminLogPage(msgspec.Struct):
    entries: list[AdminLogEntry]
    next_cursor: str | None


class PolicyVersionRead(msgspec.Struct, kw_only=True):
    """One policy version, superseded or in force: what decisions recording `policy_version` (or
    `final_policy_version`) were judged by. `settings` are as stored when the version was put in
    force; version 0 is the defaults, before any admin change, and was changed by nobody."""

    version: int
    settings: dict[str, Any]
    changed_by: str
    changed_at: str | None


class ExportEvent(msgspec.Struct, kw_only=True):
    """A ledger event exactly as stored (bytes as base64), so its hash can be recomputed offline
    with `storage.ledger.canonical_bytes`; the body stays sealed under the subject's key."""

    seq: int
    at: str
    subject_id: str
    subject_ref: str | None
    kind: str
    purpose: str | None
    notice_version: str | None
    actor: str
    source: str
    body: bytes | None
    prev_hash: bytes
    hash: bytes


class ExportBundle(msgspec.Struct, kw_only=True):
    """The signed payload of an export.

    `prefix` is the tree of the events before the first exported one, as the hex hashes of the
    perfect subtrees that tile it, largest first (none when the export starts at seq 1). With the
    exported events it gives the root of the tree at the last one, and `consistency_proof` proves
    that tree a prefix of the checkpoint's: so any window checks against the signed root offline.
    """

    type: Literal["consent-gateway/audit-export"]  # required, as `CheckpointClaims.type` is
    exported_at: str
    start: str | None = msgspec.field(name="from", default=None)
    end: str | None = msgspec.field(name="to", default=None)
    events: list[ExportEvent]
    checkpoint: CheckpointRead
    consistency_proof: list[str]
    prefix: list[str] = []


class ExportRead(msgspec.Struct):
    jws: str
