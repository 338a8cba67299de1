"""RFC 6962 Merkle tree hashing, proofs and proof verification for the consent ledger.

The ledger publishes signed checkpoints (tree size and root) so that an auditor can hold the gateway to
one history: an inclusion proof shows an event is in a checkpointed tree, a consistency proof shows a
later tree only appended to an earlier one. Everything here is pure: the storage layer hands in leaf
hashes through `LeafHashes` (a table can back it with one range query per slice) and keeps a
`Frontier` so a new checkpoint costs the appended leaves, not a rehash of the whole ledger.

Provers raise `ValueError` for requests that have no answer. Verifiers return ``False`` for anything
that does not prove the claim, including malformed input, because their input comes from outside.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, overload

__all__ = [
    "Frontier",
    "LeafHashes",
    "compact_range",
    "consistency_proof",
    "frontier_append",
    "frontier_root",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

_HASH_SIZE = 32
_EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class LeafHashes(Protocol):
    """Leaf hashes in ledger order; slices let a table answer a whole subtree with one query."""

    def __len__(self) -> int: ...

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...


def leaf_hash(data: bytes) -> bytes:
    """Domain-separated from `node_hash` so a leaf can never be passed off as an interior node."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


@dataclass(frozen=True, slots=True)
class Frontier:
    """The roots of the perfect subtrees that tile a tree of `size` leaves, largest (leftmost) first.

    One hash per set bit of `size`: enough to extend the tree and to compute its root, so the storage
    layer can persist it next to each checkpoint. ``Frontier()`` is the empty tree.
    """

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        # A frontier is reloaded from storage; a wrong shape would silently yield wrong roots forever.
        if self.size < 0:
            raise ValueError(f"a frontier cannot have size {self.size}")
        if len(self.hashes) != self.size.bit_count():
            raise ValueError(f"a frontier of size {self.size} has {self.size.bit_count()} hashes")
        for h in self.hashes:
            _require_hash(h)


def frontier_append(frontier: Frontier, leaf: bytes) -> Frontier:
    """Amortised O(1) hashing per appended leaf, which is what makes frequent checkpoints cheap."""
    stack = list(frontier.hashes)
    _push(stack, frontier.size, leaf)
    return Frontier(frontier.size + 1, tuple(stack))


def frontier_root(frontier: Frontier) -> bytes:
    return _fold_right(frontier.hashes)


def compact_range(leaves: LeafHashes, size: int) -> Frontier:
    """Rebuilds the frontier from stored leaves, for the first checkpoint or after losing the saved one."""
    _require_size(leaves, size)
    stack: list[bytes] = []
    for count, h in enumerate(leaves[0:size]):
        _push(stack, count, h)
    return Frontier(size, tuple(stack))


def root_hash(leaves: LeafHashes) -> bytes:
    """MTH over leaf hashes (not leaf data), so the ledger hashes each event once, when it is stored."""
    return _range_root(leaves, 0, len(leaves))


def inclusion_proof(leaves: LeafHashes, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 6962 §2.1.1, lowest sibling first.

    Walks down from the root and reads each sibling subtree once, so the leaves read add up to at most
    `size`.
    """
    _require_size(leaves, size)
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    siblings: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            siblings.append(_range_root(leaves, mid, end))
            end = mid
        else:
            siblings.append(_range_root(leaves, start, mid))
            start = mid
    siblings.reverse()
    return siblings


def consistency_proof(leaves: LeafHashes, size1: int, size2: int) -> list[bytes]:
    """PROOF(size1, D[0:size2]) of RFC 6962 §2.1.2 (SUBPROOF), lowest node first.

    Equal sizes give an empty proof. Proving from the empty tree is refused, as RFC 9162 leaves it
    undefined and `verify_consistency` would reject any answer.
    """
    _require_size(leaves, size2)
    if not 0 <= size1 <= size2:
        raise ValueError(f"cannot prove tree size {size1} is a prefix of tree size {size2}")
    if size1 == size2:
        return []
    if size1 == 0:
        raise ValueError("a consistency proof from the empty tree is not defined")
    nodes: list[bytes] = []
    start, end = 0, size2
    old_root_is_a_node = True
    while size1 != end:
        mid = start + _split(end - start)
        if size1 <= mid:
            nodes.append(_range_root(leaves, mid, end))
            end = mid
        else:
            nodes.append(_range_root(leaves, start, mid))
            start = mid
            old_root_is_a_node = False
    if not old_root_is_a_node:
        # The old tree is not one subtree of the new one, so the verifier cannot start from its root.
        nodes.append(_range_root(leaves, start, end))
    nodes.reverse()
    return nodes


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2. The proof must have exactly the length the index and size imply."""
    if not _positions(index, size) or not _proof(proof) or not 0 <= index < size:
        return False
    if not _well_formed(leaf, *proof):
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2, plus the cases it leaves to the caller.

    Equal sizes need an empty proof and equal roots, and size 0 has exactly one root, the empty-tree
    hash. Growing from size 0 proves nothing and is rejected. Roots are not length-checked: one of the
    wrong length can never equal a computed root.
    """
    if not _positions(size1, size2) or not _proof(proof) or not 0 <= size1 <= size2:
        return False
    if not _well_formed(*proof):
        return False
    if size1 == size2:
        return not proof and root1 == root2 and (size1 > 0 or root1 == _EMPTY_ROOT)
    if size1 == 0 or not proof:
        return False
    path = [root1, *proof] if size1 & (size1 - 1) == 0 else list(proof)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == root1 and sr == root2


def _split(n: int) -> int:
    """The largest power of two below `n` (n > 1): where RFC 6962 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def _push(stack: list[bytes], size: int, leaf: bytes) -> None:
    """Appends a leaf to the frontier `stack` of a tree of `size` leaves; each trailing 1 bit of
    `size` is a perfect subtree that the new leaf completes."""
    _require_hash(leaf)
    h = leaf
    while size & 1:
        h = node_hash(stack.pop(), h)
        size >>= 1
    stack.append(h)


def _fold_right(hashes: Sequence[bytes]) -> bytes:
    """MTH of a tree from its frontier: each subtree is the left child of everything to its right."""
    if not hashes:
        return _EMPTY_ROOT
    r = hashes[-1]
    for h in reversed(hashes[:-1]):
        r = node_hash(h, r)
    return r


def _range_root(leaves: LeafHashes, start: int, end: int) -> bytes:
    stack: list[bytes] = []
    for count, h in enumerate(leaves[start:end]):
        _push(stack, count, h)
    return _fold_right(stack)


def _require_size(leaves: LeafHashes, size: int) -> None:
    if not 0 <= size <= len(leaves):
        raise ValueError(f"tree size {size} is not within the {len(leaves)} stored leaves")


def _require_hash(h: bytes) -> None:
    if len(h) != _HASH_SIZE:
        raise ValueError(f"a hash is {_HASH_SIZE} bytes, got {len(h)}")


def _well_formed(*hashes: bytes) -> bool:
    """Only hashes that get hashed again are checked; a 0- or 9-byte node is garbage, not a shorter
    tree."""
    return all(isinstance(h, bytes) and len(h) == _HASH_SIZE for h in hashes)


def _positions(*numbers: object) -> bool:
    """Indices and sizes as whole numbers: a float `0.0` proved a leaf, "0" raised TypeError."""
    return all(isinstance(n, int) and not isinstance(n, bool) for n in numbers)


def _proof(proof: object) -> bool:
    """A proof as a sequence of hashes: None raised TypeError, and a str is a sequence too."""
    return isinstance(proof, list | tuple)
