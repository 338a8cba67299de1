"""The consent ledger: append-only, hash-chained, written in the same transaction as the change.

Each event's hash is SHA-256 over its canonical bytes — msgspec JSON with sorted keys, bytes
as base64 — which include the previous event's hash and the event's sealed `body`. Because
the chain covers ciphertexts, destroying a subject's data key (erasure) leaves every hash
recomputable: the ledger stays verifiable while its erased contents become unreadable.

Triggers refuse UPDATE and DELETE; `verify` catches whoever drops them. A chain recomputed by
someone holding the database key, or cut short, is still a chain: `verify` also compares the
ledger with the latest signed checkpoint (`Anchor`), which only the signing key can make.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from typing import Literal

import msgspec

from storage.crypto import field_aad
from storage.db import Connection
from storage.directory import SubjectKey
from storage.merkle import Frontier, frontier_append, frontier_root, leaf_hash

__all__ = [
    "GENESIS",
    "Anchor",
    "CheckpointProblem",
    "LedgerEvent",
    "VerifyResult",
    "append",
    "body_aad",
    "events",
    "head",
    "next_seq",
    "verify",
]

GENESIS = bytes(32)
_COLUMNS = "seq, at, subject_id, kind, purpose, notice_version, actor, source, body, prev_hash, hash"


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


CheckpointProblem = Literal["ledger_shorter", "root_differs", "bad_signature", "unknown_key"]


class Anchor(msgspec.Struct, frozen=True):
    """What a signed checkpoint claims: the first `tree_size` events hash to `root_hash`."""

    tree_size: int
    root_hash: bytes


class VerifyResult(msgspec.Struct, frozen=True):
    """`ok` only if the chain holds and the ledger still matches the latest signed checkpoint.

    The first four fields are the chain's own verdict, as they always were. `checkpoint_tree_size`
    names the checkpoint compared with (None when there is none yet); `checkpoint_problem` says
    why the ledger does not match it: fewer events than it signed, a different Merkle root of its
    first `tree_size` events, a checkpoint whose signature does not hold, or one signed by a key
    that neither the process nor its key store lists (current or retired): nothing to check it
    with, which after a rotation is a missing retired key rather than tampering.
    """

    ok: bool
    events: int
    head_hash: str
    first_invalid_seq: int | None
    checkpoint_tree_size: int | None = None
    checkpoint_problem: CheckpointProblem | None = None


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


def head(conn: Connection) -> tuple[int, bytes]:
    row = conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
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


def _row(row: tuple[object, ...]) -> LedgerEvent:
    seq, at, subject_id, kind, purpose, notice_version, actor, source, body, prev_hash, digest = row
    return LedgerEvent(
        seq=int(seq),  # type: ignore[call-overload]
        at=str(at),
        subject_id=str(subject_id),
        kind=str(kind),
        purpose=None if purpose is None else str(purpose),
        notice_version=None if notice_version is None else str(notice_version),
        actor=str(actor),
        source=str(source),
        body=None if body is None else bytes(body),  # type: ignore[call-overload]
        prev_hash=bytes(prev_hash),  # type: ignore[call-overload]
        hash=bytes(digest),  # type: ignore[call-overload]
    )


def events(
    conn: Connection, where: str = "", params: tuple[object, ...] = (), limit: int | None = None
) -> Iterator[LedgerEvent]:
    """Events in seq order; `where` is a fixed SQL fragment from our own code, values go in params."""
    sql = f"SELECT {_COLUMNS} FROM ledger {where} ORDER BY seq"  # noqa: S608
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    for row in conn.execute(sql, params):
        yield _row(row)


def verify(conn: Connection, anchor: Anchor | None = None) -> VerifyResult:
    """Recompute the chain from the first event and name the first seq that does not hold; in the
    same pass, hash the first `anchor.tree_size` events into a Merkle root and compare it with the
    signed one. The chain alone cannot see a ledger truncated or rewritten and re-chained."""
    expected_seq, prev, count = 1, GENESIS, 0
    broken: VerifyResult | None = None
    wanted = 0 if anchor is None else anchor.tree_size
    tree = Frontier()
    for event in events(conn):
        count += 1
        if tree.size < wanted:
            tree = frontier_append(tree, leaf_hash(event.hash))
        if broken is not None:
            if tree.size >= wanted:
                break
            continue
        if event.seq != expected_seq:
            broken = VerifyResult(False, count, prev.hex(), expected_seq)
        elif event.prev_hash != prev or hashlib.sha256(event.canonical()).digest() != event.hash:
            broken = VerifyResult(False, count, prev.hex(), event.seq)
        else:
            prev = event.hash
            expected_seq += 1
    result = broken or VerifyResult(True, count, prev.hex(), None)
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
