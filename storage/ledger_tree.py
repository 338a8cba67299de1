"""The consent ledger seen as an RFC 6962 Merkle tree.

Leaf i (0-based) is the ledger event with seq i + 1, and its leaf *data* is that event's 32-byte
`hash` (SHA-256 of its canonical bytes, which already cover every field, the sealed body and the
previous hash). So the tree's leaf hash is SHA-256(0x00 || event hash): the tree commits to the
whole chain, and anyone holding exported events can recompute it without a key.

The leaves are read from the table, one range query per slice, never held in memory: a proof over
a tree of n events reads at most n hashes. What is kept in memory is a checkpoint `Frontier`, so a
new checkpoint hashes only the events appended since the last one.

Whenever the tree is hashed again from stored events (after a restart, or because the ledger no
longer ends its known prefix with the same event), its first `tree_size` leaves are checked against
the latest signed checkpoint (`ledger.Anchor`): a ledger rewritten, re-chained or truncated and
regrown since is refused with `LedgerForkError`, so no checkpoint ever signs a forged history.
Nor one whose chain does not hold: the events a checkpoint would sign for the first time (those
past the latest signed one) are checked link by link, as `ledger.verify` does, and a break
among them is refused with `LedgerChainError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

from storage import ledger
from storage.connections import Connection
from storage.merkle import Frontier, compact_range, frontier_append, frontier_root, leaf_hash

__all__ = ["LedgerChainError", "LedgerForkError", "LedgerGapError", "LedgerLeaves", "TreeHead", "advance"]


class LedgerGapError(Exception):
    """A seq inside the tree has no row: events were deleted behind the ledger's triggers."""


class LedgerForkError(Exception):
    """The ledger's first events no longer hash to the root of a checkpoint the gateway signed."""


class LedgerChainError(Exception):
    """An event not yet under a signed checkpoint breaks the hash chain (`seq` is the first)."""

    def __init__(self, seq: int) -> None:
        super().__init__(f"the ledger's hash chain does not hold at seq {seq}")
        self.seq = seq


class LedgerLeaves:
    """`storage.merkle.LeafHashes` over the first `size` events of the ledger table."""

    def __init__(self, conn: Connection, size: int) -> None:
        self._conn = conn
        self._size = size

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._size)
            if step != 1:
                raise ValueError("ledger leaves are read in contiguous ranges only")
            return self._range(start, stop)
        position = index + self._size if index < 0 else index
        if not 0 <= position < self._size:
            raise IndexError(f"leaf {index} is not in a tree of size {self._size}")
        return self._range(position, position + 1)[0]

    def _range(self, start: int, stop: int) -> list[bytes]:
        if start >= stop:
            return []
        rows = self._conn.execute(
            f"SELECT {ledger.HASH_BLOB} FROM ledger WHERE seq BETWEEN ? AND ? ORDER BY seq",  # noqa: S608
            (start + 1, stop),
        ).fetchall()
        if len(rows) != stop - start:  # seq is the primary key: a short count means a hole
            raise LedgerGapError(f"ledger events between seq {start + 1} and {stop} are missing")
        return [leaf_hash(row[0]) for row in rows]


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A frontier and the hash of the event it ends with, to notice a ledger rewritten under us."""

    frontier: Frontier = Frontier()  # noqa: RUF009 - immutable, safe to share
    last_hash: bytes = ledger.GENESIS


def advance(known: TreeHead, conn: Connection, anchor: ledger.Anchor | None = None) -> TreeHead:
    """The tree of the whole ledger now, extended from `known` by the events appended since.

    `known` is used only if the ledger still ends its prefix with the same event; a ledger that
    was truncated or restored from a backup is hashed again from the first event. Whenever the
    leaves up to `anchor.tree_size` are hashed here rather than taken from `known`, their root must
    be the anchor's (raises `LedgerForkError`): that is what keeps a rebuilt tree from extending
    a history other than the signed one. A ledger shorter than the anchor is not checked here;
    nothing is signed for it, and `ledger.verify` reports it.

    The events past both `known` and the anchor, the ones no checkpoint has signed yet, must hold
    as a chain (raises `LedgerChainError`): the signed prefix was checked when it was signed, and
    a body changed in it since is `ledger.verify`'s to find, against the hashes signed then.
    """
    size, last_hash = ledger.head(conn)
    leaves = LedgerLeaves(conn, size)
    base = known.frontier
    if base.size > size or (base.size and _hash_at(conn, base.size) != known.last_hash):
        base = Frontier()
    if anchor is not None and base.size < anchor.tree_size <= size:
        base = _extend(base, leaves, anchor.tree_size)
        if frontier_root(base) != anchor.root_hash:
            raise LedgerForkError(
                f"the ledger's first {anchor.tree_size} events do not hash to the root of the signed "
                f"checkpoint of that size"
            )
    signed = max(base.size, 0 if anchor is None else anchor.tree_size)
    if signed < size:
        prev = ledger.GENESIS if signed == 0 else _hash_at(conn, signed)
        if prev is None:
            raise LedgerGapError(f"the ledger has no event of seq {signed}")
        broken = ledger.first_break(conn, signed, prev, size)
        if broken is not None:
            raise LedgerChainError(broken)
    return TreeHead(_extend(base, leaves, size), last_hash)


def _extend(base: Frontier, leaves: LedgerLeaves, size: int) -> Frontier:
    if base.size == 0:
        return compact_range(leaves, size)
    frontier = base
    for leaf in leaves[base.size : size]:
        frontier = frontier_append(frontier, leaf)
    return frontier


def _hash_at(conn: Connection, seq: int) -> bytes | None:
    row = conn.execute(f"SELECT {ledger.HASH_BLOB} FROM ledger WHERE seq = ?", (seq,)).fetchone()  # noqa: S608
    return None if row is None else bytes(row[0])
