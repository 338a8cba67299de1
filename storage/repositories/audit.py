"""SQL of the Audit API: the access log, checkpoints, and filtered pages of the ledger,
the decision log (`pushes`) and complaints.

Pages are keyset pages on a key that only grows — ledger seq, access-log id, the rowid of
pushes and complaints (insertion order; nothing here runs VACUUM) — so rows appended while an
auditor pages land after the cursor and never shift a page already read. Time bounds compare
the stored `isoformat()` UTC text, which sorts as time does: `start` inclusive, `end` exclusive.
Column names in the filters come from this module's callers, values always go in parameters.

The latest checkpoint is read as the ledger's events are (`storage.ledger`): whoever drops the
triggers can store a value of another type than the one written, and reading it must not fail,
since verification reports such a checkpoint (`CheckpointRow.sound`) rather than raising.
"""

from __future__ import annotations

from typing import Any

import msgspec

from storage import ledger
from storage.connections import Connection

__all__ = [
    "AccessRow",
    "CheckpointRow",
    "ComplaintRow",
    "DecisionRow",
    "Filter",
    "access_page",
    "checkpoints_readable",
    "complaint_page",
    "decision_page",
    "insert_access",
    "insert_checkpoint",
    "latest_checkpoint",
    "ledger_page",
    "seq_span",
]


class Filter(msgspec.Struct, frozen=True, kw_only=True):
    """Equality filters (column → value, None meaning no filter) and a time window."""

    equal: dict[str, str | None] = {}
    start: str | None = None
    end: str | None = None


class DecisionRow(msgspec.Struct, frozen=True):
    cursor: int
    push_id: str
    subject_id: str | None
    topic: str
    campaign_id: str | None
    variant: str | None
    outcome: str
    status: str
    reasons: str
    final_reasons: str | None
    final_policy_version: int | None
    policy_version: int
    created_at: str


class ComplaintRow(msgspec.Struct, frozen=True):
    cursor: int
    complaint_id: str
    subject_id: str
    push_id: str | None
    topic: str | None
    campaign_id: str | None
    variant: str | None
    reason: str
    has_comment: bool
    status: str
    flagged: bool
    actions: str
    created_at: str
    acknowledged_at: str | None
    resolved_at: str | None
    has_resolution: bool


class AccessRow(msgspec.Struct, frozen=True):
    id: int
    at: str
    key_id: str
    route: str
    filters: str
    result_count: int


class CheckpointRow(msgspec.Struct, frozen=True):
    """A signed checkpoint as stored. `sound` is whether every column holds what was written
    (the size an integer, the root a 32-byte blob, the time and JWS UTF-8 text): a row that does
    not is read as near to what is stored as it goes, and is not a checkpoint we signed."""

    tree_size: int
    root_hash: bytes
    at: str
    jws: str
    sound: bool = True


_CHECKPOINT_COLUMNS = frozenset({"tree_size", "root_hash", "at", "jws"})
# Every column cast, so that no stored type fails the read (`bytes(str)`, text that is not
# UTF-8); the last column says whether each holds the type it was written with.
_CHECKPOINT_SELECT = (
    "CAST(tree_size AS INTEGER), CAST(root_hash AS BLOB), CAST(at AS BLOB), CAST(jws AS BLOB), "
    "typeof(tree_size) = 'integer' AND typeof(root_hash) = 'blob' AND typeof(at) = 'text' "
    "AND typeof(jws) = 'text'"
)
_DECISION_COLUMNS = (
    "rowid, push_id, subject_id, topic, campaign_id, variant, outcome, status, reasons, final_reasons, "
    "final_policy_version, policy_version, created_at"
)
# A decision holds the reasons of its submission (`reasons`) and, once dispatch ended it, those
# of dispatch (`final_reasons`, NULL until then): a `reason` filter matches a code in either. The
# same one pass over the rows as before; the NULL test spares the second json_each on every row
# dispatch has not ended.
_HAS_REASON = (
    "(EXISTS (SELECT 1 FROM json_each(pushes.reasons) WHERE json_extract(value, '$.code') = ?) "
    "OR (pushes.final_reasons IS NOT NULL AND "
    "EXISTS (SELECT 1 FROM json_each(pushes.final_reasons) WHERE json_extract(value, '$.code') = ?)))"
)
_COMPLAINT_COLUMNS = (
    "rowid, complaint_id, subject_id, push_id, topic, campaign_id, variant, reason, comment IS NOT NULL, "
    "status, flagged, actions, created_at, acknowledged_at, resolved_at, resolution IS NOT NULL"
)


def _where(
    filters: Filter,
    *,
    time_column: str,
    key_column: str,
    after: int,
    extra: dict[str, tuple[object, ...]] | None = None,
) -> tuple[str, list[object]]:
    """A WHERE clause and its parameters; `extra` maps further clauses to their parameters."""
    clauses = [f"{key_column} > ?", *(extra or {})]
    params: list[object] = [after, *(p for values in (extra or {}).values() for p in values)]
    for column, value in filters.equal.items():
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    for op, bound in ((">=", filters.start), ("<", filters.end)):
        if bound is not None:
            clauses.append(f"{time_column} {op} ?")
            params.append(bound)
    return "WHERE " + " AND ".join(clauses), params


def ledger_page(conn: Connection, filters: Filter, after: int, limit: int) -> list[ledger.LedgerEvent]:
    """Events after seq `after`, in seq order."""
    where, params = _where(filters, time_column="at", key_column="seq", after=after)
    return list(ledger.events_where(conn, where, tuple(params), limit))


def seq_span(conn: Connection, filters: Filter, upto: int) -> tuple[int, int] | None:
    """The first and last seq of the events in the time window among the first `upto`."""
    where, params = _where(filters, time_column="at", key_column="seq", after=0, extra={"seq <= ?": (upto,)})
    row = conn.execute(f"SELECT min(seq), max(seq) FROM ledger {where}", params).fetchone()  # noqa: S608
    return None if row is None or row[0] is None else (int(row[0]), int(row[1]))


def decision_page(
    conn: Connection, filters: Filter, reason: str | None, after: int, limit: int
) -> list[DecisionRow]:
    """Decisions after rowid `after`; `reason` matches any reason code the decision gave, at
    submission or at dispatch."""
    extra: dict[str, tuple[object, ...]] = {_HAS_REASON: (reason, reason)} if reason else {}
    where, params = _where(filters, time_column="created_at", key_column="rowid", after=after, extra=extra)
    sql = f"SELECT {_DECISION_COLUMNS} FROM pushes {where} ORDER BY rowid LIMIT ?"  # noqa: S608
    return [DecisionRow(*row) for row in conn.execute(sql, (*params, limit))]


def complaint_page(conn: Connection, filters: Filter, after: int, limit: int) -> list[ComplaintRow]:
    """Complaints after rowid `after`. The sealed comment and resolution are never selected."""
    where, params = _where(filters, time_column="created_at", key_column="rowid", after=after)
    sql = f"SELECT {_COMPLAINT_COLUMNS} FROM complaints {where} ORDER BY rowid LIMIT ?"  # noqa: S608
    found = []
    for row in conn.execute(sql, (*params, limit)):
        values: dict[str, Any] = dict(zip(ComplaintRow.__struct_fields__, row, strict=True))
        for flag in ("has_comment", "flagged", "has_resolution"):
            values[flag] = bool(values[flag])
        found.append(ComplaintRow(**values))
    return found


def insert_access(
    conn: Connection, *, at: str, key_id: str, route: str, filters: str, result_count: int
) -> None:
    conn.execute(
        "INSERT INTO access_log (at, key_id, route, filters, result_count) VALUES (?, ?, ?, ?, ?)",
        (at, key_id, route, filters, result_count),
    )


def access_page(conn: Connection, after: int, limit: int) -> list[AccessRow]:
    rows = conn.execute(
        "SELECT id, at, key_id, route, filters, result_count FROM access_log "
        "WHERE id > ? ORDER BY id LIMIT ?",
        (after, limit),
    )
    return [AccessRow(*row) for row in rows]


def checkpoints_readable(conn: Connection) -> bool:
    """Whether the checkpoints table is there with its columns: tampering may drop it."""
    return ledger.has_columns(conn, "checkpoints", _CHECKPOINT_COLUMNS)


def latest_checkpoint(conn: Connection) -> CheckpointRow | None:
    """The checkpoint of the largest tree, whatever its columns hold (see `CheckpointRow.sound`)."""
    row = conn.execute(
        f"SELECT {_CHECKPOINT_SELECT} FROM checkpoints ORDER BY tree_size DESC LIMIT 1"  # noqa: S608
    ).fetchone()
    return None if row is None else _checkpoint(row)


def _utf8(value: bytes | None) -> tuple[str, bool]:
    """The text of a column read as a blob, and whether it was UTF-8 (else decoded with replacement)."""
    raw = value or b""
    try:
        return raw.decode(), value is not None
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace"), False


def _checkpoint(row: tuple[Any, ...]) -> CheckpointRow:
    """A `_CHECKPOINT_SELECT` row; a NULL where none was written reads as empty, and is not sound."""
    size, root, at_raw, jws_raw, typed = row
    (at, at_ok), (jws, jws_ok) = _utf8(at_raw), _utf8(jws_raw)
    root_hash = bytes(root or b"")
    sound = bool(typed) and at_ok and jws_ok and size is not None and len(root_hash) == ledger.HASH_SIZE
    return CheckpointRow(int(size or 0), root_hash, at, jws, sound)


def insert_checkpoint(conn: Connection, row: CheckpointRow) -> None:
    conn.execute(
        "INSERT INTO checkpoints (tree_size, root_hash, at, jws) VALUES (?, ?, ?, ?)",
        (row.tree_size, row.root_hash, row.at, row.jws),
    )
