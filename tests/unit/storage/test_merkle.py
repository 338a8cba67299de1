"""RFC 6962 hashing and proofs, checked against transparency-dev/merkle vectors and by round trips.

The vectors pin us to the reference implementation's behaviour on malformed proofs; the round trips
check every index and size pair up to 64 leaves, where all the odd-shaped trees appear.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import overload

import msgspec
import pytest

from storage.merkle import (
    Frontier,
    LeafHashes,
    compact_range,
    consistency_proof,
    frontier_append,
    frontier_root,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).parents[2] / "data" / "merkle"
MAX_SIZE = 64


class InclusionVector(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    leaf_idx: int
    tree_size: int
    root: bytes
    leaf_hash: bytes
    proof: list[bytes] | None
    desc: str
    want_err: bool


class ConsistencyVector(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    size1: int
    size2: int
    root1: bytes
    root2: bytes
    proof: list[bytes] | None
    desc: str
    want_err: bool


def _files(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json"))


def _id(path: Path) -> str:
    return path.relative_to(VECTORS).as_posix()


INCLUSION_FILES = _files("inclusion")
CONSISTENCY_FILES = _files("consistency")
# The happy paths of the numbered sets are built from these leaves (upstream proof/verify_test.go).
REFERENCE_DATA = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
REFERENCE_LEAVES = [leaf_hash(bytes.fromhex(h)) for h in REFERENCE_DATA]
LEAVES = [leaf_hash(i.to_bytes(2, "big")) for i in range(MAX_SIZE)]
FORGED = leaf_hash(b"forged")


def _mth(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 §2.1 written out literally, as an independent reference for the iterative code."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def _forge(leaves: Sequence[bytes], index: int) -> list[bytes]:
    forged = list(leaves)
    forged[index] = FORGED
    return forged


def _frontiers() -> list[Frontier]:
    frontiers = [Frontier()]
    for h in LEAVES:
        frontiers.append(frontier_append(frontiers[-1], h))
    return frontiers


ROOTS = [_mth(LEAVES[:n]) for n in range(MAX_SIZE + 1)]


class CountingTable:
    """A stand-in for a table of leaf hashes that counts the rows the prover reads."""

    def __init__(self, hashes: list[bytes]) -> None:
        self._hashes = hashes
        self.rows_read = 0

    def __len__(self) -> int:
        return len(self._hashes)

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        if isinstance(index, int):
            self.rows_read += 1
            return self._hashes[index]
        rows = self._hashes[index]
        self.rows_read += len(rows)
        return rows


def test_all_vector_files_are_present() -> None:
    assert (len(INCLUSION_FILES), len(CONSISTENCY_FILES)) == (98, 98)
    assert (VECTORS / "LICENSE").is_file()


@pytest.mark.parametrize("path", INCLUSION_FILES, ids=_id)
def test_inclusion_vector(path: Path) -> None:
    v = msgspec.json.decode(path.read_bytes(), type=InclusionVector, strict=True)
    verified = verify_inclusion(v.leaf_hash, v.leaf_idx, v.tree_size, v.proof or [], v.root)
    assert verified is not v.want_err, v.desc


@pytest.mark.parametrize("path", CONSISTENCY_FILES, ids=_id)
def test_consistency_vector(path: Path) -> None:
    v = msgspec.json.decode(path.read_bytes(), type=ConsistencyVector, strict=True)
    verified = verify_consistency(v.size1, v.size2, v.root1, v.root2, v.proof or [])
    assert verified is not v.want_err, v.desc


@pytest.mark.parametrize("path", sorted(VECTORS.glob("inclusion/[0-9]/happy-path.json")), ids=_id)
def test_prover_reproduces_published_inclusion_proof(path: Path) -> None:
    v = msgspec.json.decode(path.read_bytes(), type=InclusionVector, strict=True)
    assert REFERENCE_LEAVES[v.leaf_idx] == v.leaf_hash
    assert root_hash(REFERENCE_LEAVES[: v.tree_size]) == v.root
    assert inclusion_proof(REFERENCE_LEAVES, v.leaf_idx, v.tree_size) == (v.proof or [])


@pytest.mark.parametrize("path", sorted(VECTORS.glob("consistency/[0-9]/happy-path.json")), ids=_id)
def test_prover_reproduces_published_consistency_proof(path: Path) -> None:
    v = msgspec.json.decode(path.read_bytes(), type=ConsistencyVector, strict=True)
    assert root_hash(REFERENCE_LEAVES[: v.size1]) == v.root1
    assert root_hash(REFERENCE_LEAVES[: v.size2]) == v.root2
    assert consistency_proof(REFERENCE_LEAVES, v.size1, v.size2) == (v.proof or [])


def test_hashes_are_domain_separated() -> None:
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert node_hash(leaf_hash(b""), leaf_hash(b"\x00")).hex() == (
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"
    )
    assert leaf_hash(b"") != hashlib.sha256(b"").digest()


def test_empty_tree_root_is_hash_of_nothing() -> None:
    assert root_hash([]) == frontier_root(Frontier()) == hashlib.sha256(b"").digest()


def test_frontier_tracks_the_root_of_every_size() -> None:
    for size, frontier in enumerate(_frontiers()):
        assert frontier.size == size
        assert frontier_root(frontier) == root_hash(LEAVES[:size]) == ROOTS[size]
        assert compact_range(LEAVES, size) == frontier


@pytest.mark.parametrize("size", range(1, MAX_SIZE + 1))
def test_inclusion_round_trip(size: int) -> None:
    root = ROOTS[size]
    for index in range(size):
        proof = inclusion_proof(LEAVES, index, size)
        assert verify_inclusion(LEAVES[index], index, size, proof, root)
        assert not verify_inclusion(FORGED, index, size, proof, root)
        forged = _forge(LEAVES, index)
        assert not verify_inclusion(FORGED, index, size, inclusion_proof(forged, index, size), root)
        assert not verify_inclusion(LEAVES[index], index, size, [*proof, root], root)
        if proof:
            assert not verify_inclusion(LEAVES[index], index, size, proof[:-1], root)
        if index + 1 < size:
            assert not verify_inclusion(LEAVES[index], index + 1, size, proof, root)


@pytest.mark.parametrize("size2", range(1, MAX_SIZE + 1))
def test_consistency_round_trip(size2: int) -> None:
    root2 = ROOTS[size2]
    for size1 in range(1, size2 + 1):
        root1 = ROOTS[size1]
        proof = consistency_proof(LEAVES, size1, size2)
        assert verify_consistency(size1, size2, root1, root2, proof)
        for rewritten in {0, size1 - 1}:
            forged = _forge(LEAVES, rewritten)
            forged_proof = consistency_proof(forged, size1, size2)
            assert not verify_consistency(size1, size2, root1, _mth(forged[:size2]), forged_proof)
        if size1 < size2:
            assert not verify_consistency(size1, size2, root2, root1, proof)
            assert not verify_consistency(size1, size2, root1, root2, [*proof, root2])
            assert not verify_consistency(size1, size2, root1, root2, proof[:-1])
            assert not verify_consistency(size1 + 1, size2, root1, root2, proof)


def test_size_zero_has_one_root() -> None:
    empty = root_hash([])
    assert consistency_proof(LEAVES, 0, 0) == []
    assert verify_consistency(0, 0, empty, empty, [])
    assert not verify_consistency(0, 0, ROOTS[1], ROOTS[1], [])


def test_prover_reads_each_leaf_at_most_once() -> None:
    table = CountingTable(LEAVES)
    leaves: LeafHashes = table
    assert verify_inclusion(LEAVES[21], 21, 50, inclusion_proof(leaves, 21, 50), ROOTS[50])
    assert table.rows_read <= 50
    table.rows_read = 0
    assert verify_consistency(21, 50, ROOTS[21], ROOTS[50], consistency_proof(leaves, 21, 50))
    assert table.rows_read <= 50


@pytest.mark.parametrize(
    ("index", "size"),
    [(0, 0), (3, 3), (-1, 3), (0, MAX_SIZE + 1)],
    ids=["empty-tree", "index-is-size", "negative-index", "size-beyond-leaves"],
)
def test_inclusion_proof_rejects_impossible_requests(index: int, size: int) -> None:
    with pytest.raises(ValueError, match=r"leaf index|tree size"):
        inclusion_proof(LEAVES, index, size)


@pytest.mark.parametrize(
    ("size1", "size2"),
    [(4, 3), (-1, 3), (0, 3), (1, MAX_SIZE + 1)],
    ids=["size1-beyond-size2", "negative-size1", "from-empty-tree", "size2-beyond-leaves"],
)
def test_consistency_proof_rejects_impossible_requests(size1: int, size2: int) -> None:
    with pytest.raises(ValueError, match=r"tree size|empty tree"):
        consistency_proof(LEAVES, size1, size2)


def test_verifiers_reject_impossible_sizes() -> None:
    assert not verify_inclusion(LEAVES[0], -1, 1, [], LEAVES[0])
    assert not verify_consistency(-1, 1, ROOTS[1], ROOTS[1], [])
    assert not verify_consistency(2, 1, ROOTS[2], ROOTS[1], [])


@pytest.mark.parametrize(
    ("size", "hashes"),
    [(-1, ()), (3, (LEAVES[0],)), (2, (b"short",)), (0, (LEAVES[0],))],
    ids=["negative-size", "too-few-hashes", "short-hash", "too-many-hashes"],
)
def test_frontier_refuses_a_wrong_shape(size: int, hashes: tuple[bytes, ...]) -> None:
    with pytest.raises(ValueError, match=r"frontier|hash"):
        Frontier(size, hashes)


def test_leaf_hashes_must_be_hashes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        frontier_append(Frontier(), b"not a hash")
    with pytest.raises(ValueError, match="32 bytes"):
        root_hash([LEAVES[0], b"raw event data"])


@pytest.mark.parametrize(
    ("index", "size", "proof"),
    [("0", 1, []), (0.0, 1, []), (True, 2, []), (0, 1, None), (0, 1, "ab"), (0, 1.0, [])],
    ids=["str index", "float index", "bool index", "no proof", "str proof", "float size"],
)
def test_verifiers_say_false_to_input_of_the_wrong_type(index: object, size: object, proof: object) -> None:
    """Their input comes from outside (module docstring): "0" and None raised TypeError, and a
    float index 0.0 proved a leaf."""
    leaf = leaf_hash(b"event")
    assert verify_inclusion(leaf, index, size, proof, leaf) is False  # type: ignore[arg-type]
    assert verify_consistency(index, size, leaf, leaf, proof) is False  # type: ignore[arg-type]
