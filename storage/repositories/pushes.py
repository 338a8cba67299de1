"""Push records: the decision log and each push's lifecycle.

`outcome` is the answer given at submission and never changes (idempotent replays return
it); `status` moves on as the push is delivered. Content is sealed under the subject's key,
and only when there is a subject to seal it for.
"""

from __future__ import annotations

import secrets
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

import msgspec

from storage.connections import Connection, in_chunks
from storage.crypto import KeyedHash, field_aad
from storage.directory import SubjectKey

__all__ = [
    "ACCEPTED",
    "WAITING",
    "PushContent",
    "PushIds",
    "PushRow",
    "StatusChange",
    "all_for_subject",
    "content_aad",
    "find_idempotent_many",
    "get",
    "get_many",
    "idempotency_ref",
    "insert_many",
    "list_for_subject",
    "mark_opted_out",
    "new_push_id",
    "set_statuses",
]

ACCEPTED = ("queued", "deferred", "sending", "delivered")
WAITING = ("queued", "deferred")  # accepted, not yet sent: dispatch decides them again


class PushIds:
    """`psh_` + 24 hex digits: milliseconds since the epoch (11), then 52 bits (13) that start
    random in each millisecond (below 2**51, so a million steps cannot carry into the time) and
    grow by a random step (1 to 2**24) within it: RFC 9562's "monotonic random" (section 6.2,
    method 2).

    Time first, then growing, so that each id lands at the right edge of the primary key, outbox
    and delivery indexes. Random within the millisecond, a batch's 10,000 ids (one `now`) went in
    each index in random order: its pages split half full, and a delivery round, which goes in
    queue order, dirtied a page of the delivery key for every push or two. The time is the push's
    creation time, which `GET /v1/pushes/{id}` shows anyway; an id made while a later one's
    millisecond is the last seen (a request that read the clock before another) takes that
    millisecond. The steps leave the next id 24 bits to guess; reading a push needs its key."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def new(self, now: datetime) -> str:
        millis = int(now.timestamp() * 1000)
        with self._lock:
            if millis > self._last >> 52:
                self._last = (millis << 52) | secrets.randbits(51)
            else:
                self._last += 1 + secrets.randbits(24)
            value = self._last
        return f"psh_{value:024x}"


new_push_id = PushIds().new  # one sequence per process


def idempotency_ref(keyed: KeyedHash, idempotency_key: str) -> str:
    """What is stored of a service's idempotency key: the first 128 bits of its HMAC, in hex (a
    truncation RFC 2104 allows, section 5). A service may put anything in the key, even an
    e-mail, so it is never stored itself. Half the full digest's 64 digits: the unique index over
    (key_id, ref) takes a batch's entries at random places, one page for every seven pushes of a
    campaign's commit at 64 (docs/performance-history.md, "Shorter idempotency refs"), and 128
    bits still make a collision between one service's keys unthinkable."""
    return keyed.digest(idempotency_key.encode())[:16].hex()


# gc=False: made for every push and never part of a cycle (see gateway/gc_tuning.py).
class PushContent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    title: str
    body: str
    data: dict[str, str]
    personalized: bool = False
    near_geohash: str | None = None
    # What let the push through, as the user's notifications show it. Sealed here, not kept in
    # the row: it names the subject's quiet hours and time zone, caps and whereabouts.
    why: tuple[str, ...] = ()


# Positional as well as by keyword: a row read back is made from its columns in order (`_row`),
# 0.14 µs where building a dict of them to pass by name cost 3.2 (a delivered push reads one).
class PushRow(msgspec.Struct, frozen=True, gc=False):
    push_id: str
    key_id: str
    idempotency_key: str
    fingerprint: bytes
    subject_id: str | None
    topic: str
    campaign_id: str | None
    variant: str | None
    outcome: str
    status: str
    reasons: str
    allowed_by: str
    planned_at: str | None
    deliver_after: str | None
    expires_at: str
    created_at: str
    updated_at: str
    policy_version: int
    content: bytes | None
    attempts: int = 0
    final_reasons: str | None = None
    final_policy_version: int | None = None  # the policy version `final_reasons` were given under
    sent_at: str | None = None  # when a transactional push sent late was sent (migration 0026)
    content_key: bytes | None = None  # what its content passed rule 2 under (migration 0027)

    @property
    def shown_at(self) -> str:
        """Its time in the user's notifications and export: when it was sent, if late (a
        marketing push's `planned_at` has moved there), else when it was planned."""
        return self.sent_at or self.planned_at or self.created_at

    def why(self, content: PushContent | None) -> list[str]:
        """What let the push through: sealed in its content since migration 0018, in
        `allowed_by` before (that migration took the subject's settings out of it)."""
        if content is not None and content.why:
            return list(content.why)
        return msgspec.json.decode(self.allowed_by, type=list[str])

    def open_content(self, key: SubjectKey) -> PushContent | None:
        if self.content is None:
            return None
        return msgspec.json.decode(
            key.cipher.open(self.content, content_aad(self.push_id, key)), type=PushContent
        )


_FIELDS = PushRow.__struct_fields__  # the table's columns, in the struct's order
_COLUMNS = ", ".join(_FIELDS)
_INSERT = f"INSERT INTO pushes ({_COLUMNS}) VALUES ({','.join('?' * len(_FIELDS))})"  # noqa: S608


def content_aad(push_id: str, key: SubjectKey) -> bytes:
    return field_aad("pushes", "content", push_id, key.subject_id)


def _row(values: Sequence[object]) -> PushRow:
    return PushRow(*values)  # type: ignore[arg-type]


def insert_many(conn: Connection, rows: Sequence[PushRow]) -> None:
    conn.executemany(_INSERT, [msgspec.structs.astuple(row) for row in rows])


def find_idempotent_many(
    conn: Connection, key_id: str, idempotency_keys: Sequence[str]
) -> dict[str, PushRow]:
    """idempotency key → the push already recorded under it for this API key."""
    found: dict[str, PushRow] = {}
    for marks, chunk in in_chunks(list(dict.fromkeys(idempotency_keys))):
        for values in conn.execute(
            f"SELECT {_COLUMNS} FROM pushes WHERE key_id = ? AND idempotency_key IN ({marks})",  # noqa: S608
            (key_id, *chunk),
        ):
            row = _row(values)
            found[row.idempotency_key] = row
    return found


def get(conn: Connection, push_id: str) -> PushRow | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM pushes WHERE push_id = ?", (push_id,)).fetchone()  # noqa: S608
    return None if row is None else _row(row)


def get_many(conn: Connection, push_ids: Sequence[str]) -> tuple[dict[str, PushRow], dict[str, int]]:
    """push id → row, for the pushes among `push_ids` that exist, and push id → its rowid:
    pushes are stored in the order they are decided (a campaign's pause stops those decided
    before it). Both in one read, which a dispatch round made twice."""
    found: dict[str, PushRow] = {}
    order: dict[str, int] = {}
    for marks, chunk in in_chunks(push_ids):
        for rowid, *values in conn.execute(
            f"SELECT rowid, {_COLUMNS} FROM pushes WHERE push_id IN ({marks})",  # noqa: S608
            chunk,
        ):
            row = _row(values)
            found[row.push_id] = row
            order[row.push_id] = rowid
    return found, order


def list_for_subject(conn: Connection, subject_id: str, statuses: Iterable[str]) -> list[PushRow]:
    wanted = tuple(statuses)
    marks = ",".join("?" * len(wanted))
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM pushes WHERE subject_id = ? AND status IN ({marks}) "  # noqa: S608
        "ORDER BY created_at DESC LIMIT 500",
        (subject_id, *wanted),
    )
    return [_row(r) for r in rows]


def all_for_subject(conn: Connection, subject_id: str) -> list[PushRow]:
    """Every push recorded for the subject, whatever its status, oldest first and unbounded:
    the export must be complete, where `list_for_subject` keeps the newest 500 for a screen."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM pushes WHERE subject_id = ? ORDER BY created_at, push_id",  # noqa: S608
        (subject_id,),
    )
    return [_row(r) for r in rows]


def mark_opted_out(conn: Connection, subject_id: str) -> None:
    """The subject's campaign pushes that have reached them count, for good, as opted out after
    receipt: the withdrawal is being written. (A push still sending with one device reached is
    marked too; the campaign counts it once it ends delivered, which it does.) Kept on the push,
    not read from the consents later: an erasure deletes those and a new grant overwrites them,
    and a campaign's opt-outs must not fall after the fact."""
    conn.execute(
        "UPDATE pushes SET opted_out = 1 WHERE subject_id = ? AND campaign_id IS NOT NULL AND opted_out = 0 "
        "AND (status = 'delivered' OR (status = 'sending' AND EXISTS ("
        "SELECT 1 FROM deliveries d WHERE d.push_id = pushes.push_id AND d.status = 'delivered')))",
        (subject_id,),
    )


class StatusChange(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A push's new status and the columns that change with it; a column left None keeps its value.

    Final `reasons` come with the `policy_version` they were given under, written together, so
    an auditor always knows which rules produced them."""

    push_id: str
    status: str
    reasons: str | None = None
    policy_version: int | None = None
    attempts: int | None = None
    planned_at: datetime | None = None
    deliver_after: datetime | None = None
    sent_at: datetime | None = None
    clear_final_reasons: bool = False
    """Set `final_reasons` and their version back to NULL: a deferral at dispatch wrote them,
    and a push sent since has no verdict of dispatch's (yet)."""

    def __post_init__(self) -> None:
        if (self.reasons is None) != (self.policy_version is None):
            raise ValueError("final reasons and their policy version are written together")


def set_statuses(conn: Connection, changes: Iterable[StatusChange], now: datetime) -> None:
    """One statement for each set of columns assigned, whatever the number of pushes.

    Only the columns given are assigned: SQLite rewrites the index entries of every column an
    UPDATE assigns, even to its old value, and `planned_at` is in the subject index."""
    stamp = now.isoformat()
    groups: defaultdict[tuple[str, ...], list[tuple[object, ...]]] = defaultdict(list)
    for change in changes:
        assigned: dict[str, object] = {"status": change.status, "updated_at": stamp}
        if change.reasons is not None or change.clear_final_reasons:
            assigned["final_reasons"] = change.reasons
            assigned["final_policy_version"] = change.policy_version
        if change.attempts is not None:
            assigned["attempts"] = change.attempts
        if change.planned_at is not None:
            assigned["planned_at"] = change.planned_at.isoformat()
        if change.deliver_after is not None:
            assigned["deliver_after"] = change.deliver_after.isoformat()
        if change.sent_at is not None:
            assigned["sent_at"] = change.sent_at.isoformat()
        groups[tuple(assigned)].append((*assigned.values(), change.push_id))
    for names, rows in groups.items():
        columns = ", ".join(f"{name} = ?" for name in names)
        conn.executemany(f"UPDATE pushes SET {columns} WHERE push_id = ?", rows)  # noqa: S608
