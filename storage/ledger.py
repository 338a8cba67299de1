"""The consent ledger: append-only, hash-chained, written in the same transaction as the change.

Each event's hash is SHA-256 over its canonical bytes — msgspec JSON with sorted keys, bytes
as base64 — which include the previous event's hash and the event's sealed `body`. Because
the chain covers ciphertexts, destroying a subject's data key (erasure) leaves every hash
recomputable: the ledger stays verifiable while its erased contents become unreadable.

Triggers refuse UPDATE and DELETE; `verify` catches whoever drops them. A chain recomputed by
someone holding the database key, or cut short, is still a chain: `verify` also compares the
ledger with the latest signed checkpoint (`Anchor`), which only the signing key can make.

Whoever drops the triggers can also store a value of another type than the one written: a body
or hash as TEXT, a number for a version. Events are read so that no stored value makes reading
fail (the blob columns cast to BLOB; text that does not decode read as bytes and decoded with
replacement), and such a row is reported, never raised: it is not sound (`first_break`), so
`verify` names it as the first invalid event even where its bytes still hash as they did. So is a
ledger table dropped, or rebuilt without a column `verify` reads: `ledger_missing`, not an error
(nor, as reading an absent table as empty would make it, a clean ledger of no events).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

import msgspec

from storage.connections import Connection
from storage.crypto import field_aad
from storage.directory import SubjectKey
from storage.merkle import Frontier, frontier_append, frontier_root, leaf_hash

__all__ = [
    "GENESIS",
    "HASH_BLOB",
    "HASH_SIZE",
    "WITNESS_BYTES",
    "Anchor",
    "CheckpointProblem",
    "LedgerEvent",
    "VerifyResult",
    "append",
    "body_aad",
    "consent_events_of_subject",
    "erasure_recorded",
    "events",
    "events_between",
    "events_of_subject",
    "events_where",
    "first_break",
    "has_columns",
    "head",
    "next_seq",
    "verify",
]

GENESIS = bytes(32)
HASH_SIZE = len(GENESIS)
WITNESS_BYTES = 16
"""How much of the previous event's hash a consent receipt carries (`ledger_prev_hash`): 128
bits, as hex. A history rewritten after a receipt was given must hash to them again, a second
preimage of 128 bits; whoever writes the event before a receipt's, meaning to swap it later,
needs two events that collide in 128 bits, about 2^64 hashes. The whole hash took 86 bytes more
of each receipt, which the ledger keeps (bench run BD: a subject's ledger rows no longer fit
four to a page)."""
_COLUMNS = "seq, at, subject_id, kind, purpose, notice_version, actor, source, body, prev_hash, hash"
_TEXT_COLUMNS = ("at", "subject_id", "kind", "purpose", "notice_version", "actor", "source")
_NULLABLE = frozenset({"purpose", "notice_version"})
_LEDGER_COLUMNS = frozenset(name.strip() for name in _COLUMNS.split(","))
# The blob columns are cast, so a value stored as TEXT or a number reads as its bytes instead of
# failing (`bytes(str)`, or text that is not UTF-8), and a NULL hash (in a table rebuilt without
# NOT NULL) as no bytes; the last column says whether they were blobs.
HASH_BLOB = "IFNULL(CAST(hash AS BLOB), x'')"
_BLOBS = (
    f"CAST(body AS BLOB), IFNULL(CAST(prev_hash AS BLOB), x''), {HASH_BLOB}, "
    "typeof(body) IN ('blob', 'null') AND typeof(prev_hash) = 'blob' AND typeof(hash) = 'blob'"
)
_SELECT = f"seq, {', '.join(_TEXT_COLUMNS)}, {_BLOBS}"
# Read from a row on whose text SQLite's decoding failed: every text column as bytes, and its type.
_SELECT_RAW = (
    f"seq, {', '.join(f'CAST({c} AS BLOB)' for c in _TEXT_COLUMNS)}, {_BLOBS}, "
    f"{', '.join(f'typeof({c})' for c in _TEXT_COLUMNS)}"
)


class LedgerEvent(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    at: str
    subject_id: str
    kind: str
    purpose: str | None
    notice_version: str | None
    actor: str
    source: str
    body: bytes | None
    prev_hash: bytes
    hash: bytes

    def open_body(self, subject: SubjectKey) -> bytes | None:
        """The plaintext content; raises DecryptionError once the subject's key is destroyed."""
        if self.body is None:
            return None
        return subject.cipher.open(self.body, body_aad(self.seq, self.subject_id))

    def canonical(self) -> bytes:
        return canonical_bytes(
            self.seq,
            self.at,
            self.subject_id,
            self.kind,
            self.purpose,
            self.notice_version,
            self.actor,
            self.source,
            self.body,
            self.prev_hash,
        )


CheckpointProblem = Literal[
    "ledger_shorter", "root_differs", "bad_signature", "unknown_key", "ledger_missing", "checkpoints_missing"
]


class Anchor(msgspec.Struct, frozen=True):
    """What a signed checkpoint claims: the first `tree_size` events hash to `root_hash`."""

    tree_size: int
    root_hash: bytes


class VerifyResult(msgspec.Struct, frozen=True):
    """`ok` only if the chain holds and the ledger still matches the latest signed checkpoint.

    The first four fields are the chain's own verdict: `events` the ledger's events, all of them
    counted whether or not the chain holds; `head_hash` the hash of the last event the chain
    holds to (the last of all when it holds); `first_invalid_seq` where it breaks. `checkpoint_tree_size`
    names the checkpoint compared with (None when there is none yet); `checkpoint_problem` says
    why the ledger does not match it: fewer events than it signed, a different Merkle root of its
    first `tree_size` events, a checkpoint whose signature does not hold, or one signed by a key
    that neither the process nor its key store lists (current or retired): nothing to check it
    with, which after a rotation is a missing retired key rather than tampering. Two values say
    there is nothing to compare: `ledger_missing` (no ledger table, or one without a column the
    chain is read from; `events` 0) and `checkpoints_missing` (the same of the checkpoints table;
    `checkpoint_tree_size` None). Every gateway has both tables from its first start, so either
    is tampering, and `ok` is false.

    `consents_unbacked` counts the rows of the consent state pushes are decided on that the
    ledger's latest consent event does not back (`consents.unbacked`; None: not checked, the
    consents table or the ledger being unreadable): the chain cannot see that state changed
    behind its back, and `ok` is false too.
    """

    ok: bool
    events: int
    head_hash: str
    first_invalid_seq: int | None
    checkpoint_tree_size: int | None = None
    checkpoint_problem: CheckpointProblem | None = None
    consents_unbacked: int | None = 0


def canonical_bytes(
    seq: int,
    at: str,
    subject_id: str,
    kind: str,
    purpose: str | None,
    notice_version: str | None,
    actor: str,
    source: str,
    body: bytes | None,
    prev_hash: bytes,
) -> bytes:
    record = {
        "seq": seq,
        "at": at,
        "subject_id": subject_id,
        "kind": kind,
        "purpose": purpose,
        "notice_version": notice_version,
        "actor": actor,
        "source": source,
        "body": body,
        "prev_hash": prev_hash,
    }
    return msgspec.json.encode(record, order="sorted")


def has_columns(conn: Connection, table: str, columns: frozenset[str]) -> bool:
    """Whether `table` exists with every one of `columns`: read before a table that tampering
    may have dropped or rebuilt, so that its absence is a verdict rather than an error."""
    found = {str(row[0]) for row in conn.execute("SELECT name FROM pragma_table_info(?)", (table,))}
    return columns <= found


def head(conn: Connection) -> tuple[int, bytes]:
    """The last event's seq and hash. A seq stored as anything but an integer (a table rebuilt
    without its INTEGER PRIMARY KEY) is passed over: verification reports it, and appends,
    checkpoints and proofs go on from the events that are whole (or refuse their gap)."""
    row = conn.execute(
        f"SELECT seq, {HASH_BLOB} FROM ledger WHERE typeof(seq) = 'integer' ORDER BY seq DESC LIMIT 1"  # noqa: S608
    ).fetchone()
    return (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))


def body_aad(seq: int, subject_id: str) -> bytes:
    return field_aad("ledger", "body", str(seq), subject_id)


def next_seq(conn: Connection) -> int:
    return head(conn)[0] + 1


def append(
    conn: Connection,
    *,
    at: datetime,
    subject: SubjectKey,
    kind: str,
    actor: str,
    source: str,
    purpose: str | None = None,
    notice_version: str | None = None,
    content: bytes | None = None,
) -> LedgerEvent:
    """Append one event, its `content` sealed under the subject's key and bound to its seq.

    Must run inside the writer's transaction that makes the change it records.
    """
    last_seq, prev = head(conn)
    seq = last_seq + 1
    subject_id = subject.subject_id
    body = None if content is None else subject.cipher.seal(content, body_aad(seq, subject_id))
    stamp = at.isoformat()
    digest = hashlib.sha256(
        canonical_bytes(seq, stamp, subject_id, kind, purpose, notice_version, actor, source, body, prev)
    ).digest()
    conn.execute(
        f"INSERT INTO ledger ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
        (seq, stamp, subject_id, kind, purpose, notice_version, actor, source, body, prev, digest),
    )
    return LedgerEvent(
        seq=seq,
        at=stamp,
        subject_id=subject_id,
        kind=kind,
        purpose=purpose,
        notice_version=notice_version,
        actor=actor,
        source=source,
        body=body,
        prev_hash=prev,
        hash=digest,
    )


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _read(row: tuple[Any, ...]) -> tuple[LedgerEvent, bool]:
    """The event, and whether every column holds the type it was written with (text as text, the
    hashes as 32-byte blobs, the body as a blob or NULL). A row that does not is still read, its
    values as near to what is stored as they go, for listings; the chain treats it as broken."""
    seq, at, subject_id, kind, purpose, notice_version, actor, source, body, prev_hash, digest, blobs = row
    sound = bool(blobs) and len(prev_hash) == HASH_SIZE and len(digest) == HASH_SIZE
    if not (
        type(at) is str
        and type(subject_id) is str
        and type(kind) is str
        and type(actor) is str
        and type(source) is str
        and (purpose is None or type(purpose) is str)
        and (notice_version is None or type(notice_version) is str)
    ):
        sound = False
        at, subject_id, kind, actor, source = (_text(v) for v in (at, subject_id, kind, actor, source))
        purpose = None if purpose is None else _text(purpose)
        notice_version = None if notice_version is None else _text(notice_version)
    event = LedgerEvent(
        seq=seq,
        at=at,
        subject_id=subject_id,
        kind=kind,
        purpose=purpose,
        notice_version=notice_version,
        actor=actor,
        source=source,
        body=body,
        prev_hash=prev_hash,
        hash=digest,
    )
    return event, sound


def _read_raw(row: tuple[Any, ...]) -> tuple[LedgerEvent, bool]:
    """`_read` of a `_SELECT_RAW` row: text that is text and decodes as UTF-8 becomes a str, any
    other value stays bytes (which `_read` finds not sound)."""
    width = 1 + len(_TEXT_COLUMNS)
    texts: list[object] = []
    for name, value, kind in zip(_TEXT_COLUMNS, row[1:width], row[width + 4 :], strict=True):
        if kind == "null" and name in _NULLABLE:
            texts.append(None)
            continue
        try:
            texts.append(value.decode() if kind == "text" else value)
        except UnicodeDecodeError:
            texts.append(value)
    return _read((row[0], *texts, *row[width : width + 4]))


def _is_undecodable(exc: Exception) -> bool:
    return "decode" in str(exc).lower()


def _events(
    conn: Connection, where: str = "", params: tuple[object, ...] = (), limit: int | None = None
) -> Iterator[tuple[LedgerEvent, bool]]:
    """`events`, each with `_read`'s verdict. Should a row's text not decode, the rest are read
    again from it on by `_SELECT_RAW` (slower, and only ever on a ledger tampered with)."""
    sql = f"SELECT {_SELECT} FROM ledger {where} ORDER BY seq"  # noqa: S608
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    last, count = 0, 0
    try:
        for row in conn.execute(sql, params):
            read = _read(row)
            last, count = read[0].seq, count + 1
            yield read
        return
    except Exception as exc:  # the driver's OperationalError: sqlite3's or sqlcipher3's
        if not _is_undecodable(exc):
            raise
    condition = where.strip().removeprefix("WHERE").strip()
    rest = f"WHERE seq > ? AND ({condition})" if condition else "WHERE seq > ?"
    sql = f"SELECT {_SELECT_RAW} FROM ledger {rest} ORDER BY seq"  # noqa: S608
    if limit is not None:
        sql += f" LIMIT {max(int(limit) - count, 0)}"
    for row in conn.execute(sql, (last, *params)):
        yield _read_raw(row)


def events(conn: Connection) -> Iterator[LedgerEvent]:
    """Every event, in seq order."""
    for event, _ in _events(conn):
        yield event


def events_of_subject(conn: Connection, subject_id: str) -> Iterator[LedgerEvent]:
    """The subject's events, every kind, in seq order."""
    return events_where(conn, "WHERE subject_id = ?", (subject_id,))


def consent_events_of_subject(conn: Connection, subject_id: str) -> Iterator[LedgerEvent]:
    """The subject's `consent.*` events, in seq order."""
    return events_where(conn, "WHERE subject_id = ? AND kind LIKE 'consent.%'", (subject_id,))


def events_between(conn: Connection, first: int, last: int) -> Iterator[LedgerEvent]:
    """The events from seq `first` to seq `last`, both included, in seq order."""
    return events_where(conn, "WHERE seq BETWEEN ? AND ?", (first, last))


def events_where(
    conn: Connection, where: str = "", params: tuple[object, ...] = (), limit: int | None = None
) -> Iterator[LedgerEvent]:
    """Events in seq order; `where` is a fixed SQL fragment built in storage/ (the audit
    repository's filters), never outside it: values go in params. Callers elsewhere use the
    named reads above."""
    for event, _ in _events(conn, where, params, limit):
        yield event


def erasure_recorded(conn: Connection, subject_id: str) -> bool:
    """Whether the ledger holds a `subject.erased` event for the subject id already."""
    return (
        conn.execute(
            "SELECT 1 FROM ledger WHERE subject_id = ? AND kind = 'subject.erased' LIMIT 1", (subject_id,)
        ).fetchone()
        is not None
    )


def _breaks(event: LedgerEvent, sound: bool, seq: int, prev: bytes) -> int | None:
    """The seq at which `event`, expected as `seq` after the hash `prev`, breaks the chain (a
    missing `seq` itself), or None if it holds."""
    if event.seq != seq:  # a seq missing, or a row planted below the expected one (seq 0)
        return min(event.seq, seq) if type(event.seq) is int else seq
    if not sound or event.prev_hash != prev or hashlib.sha256(event.canonical()).digest() != event.hash:
        return event.seq
    return None


def first_break(conn: Connection, after: int, prev: bytes, upto: int) -> int | None:
    """The first seq in `after + 1 .. upto` at which the chain from `prev` (the hash of seq
    `after`) does not hold, or None: the chain check of `verify` over a range only."""
    seq = after + 1
    for event, sound in _events(conn, "WHERE seq > ? AND seq <= ?", (after, upto)):
        if (broken := _breaks(event, sound, seq, prev)) is not None:
            return broken
        seq, prev = seq + 1, event.hash
    return None if seq > upto else seq


def verify(conn: Connection, anchor: Anchor | None = None) -> VerifyResult:
    """Recompute the chain from the first event and name the first seq that does not hold; in the
    same pass, hash the first `anchor.tree_size` events into a Merkle root and compare it with the
    signed one. The chain alone cannot see a ledger truncated or rewritten and re-chained."""
    if not has_columns(conn, "ledger", _LEDGER_COLUMNS):
        size = None if anchor is None else anchor.tree_size
        return VerifyResult(False, 0, GENESIS.hex(), None, size, "ledger_missing")
    expected_seq, prev, count = 1, GENESIS, 0
    bad: int | None = None
    wanted = 0 if anchor is None else anchor.tree_size
    tree = Frontier()
    # Read to the end after a break too: `events` is the ledger's count, not how far the chain
    # held (a break at seq 3 of 12 said `events: 3`, read as a ledger of three events).
    for event, sound in _events(conn):
        count += 1
        if tree.size < wanted:
            tree = frontier_append(tree, leaf_hash(event.hash))
        if bad is None and (bad := _breaks(event, sound, expected_seq, prev)) is None:
            prev = event.hash
            expected_seq += 1
    result = VerifyResult(bad is None, count, prev.hex(), bad)
    if anchor is None:
        return result
    problem: CheckpointProblem | None = None
    if tree.size < anchor.tree_size:
        problem = "ledger_shorter"
    elif frontier_root(tree) != anchor.root_hash:
        problem = "root_differs"
    return msgspec.structs.replace(
        result,
        ok=result.ok and problem is None,
        checkpoint_tree_size=anchor.tree_size,
        checkpoint_problem=problem,
    )
