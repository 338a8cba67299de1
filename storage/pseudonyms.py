"""Pseudonyms: the wallet's user_id becomes a `subject_ref` at the edge and is never stored.

`subject_ref = "sub_" + lowercase base32 (unpadded) of HMAC-SHA256(pseudonym key, user_id)`.
The pseudonymization key is its own key in the key store, never an encryption key, so the
mapping can be kept stable while encryption keys rotate.
"""

from __future__ import annotations

from storage.crypto import KeyedHash

__all__ = ["SUBJECT_REF_PATTERN", "Pseudonymizer"]

SUBJECT_REF_PATTERN = r"^sub_[a-z2-7]{52}$(?!\n)"

# Python 3.11's `base64.b32encode` is written in Python and cost more than the HMAC itself (4.9
# against 2.0 µs; 10% of a dry-run decision in docs/performance-history.md, run I). Spreading the digest's
# 5-bit groups one per byte with six mask steps on one integer, then one `bytes.translate`, costs
# ~1.3 µs and touches no table: a 32,768-entry table of digit triples (2.1 µs alone) missed the
# CPU caches inside a batch and cost 6 µs there (docs/performance-history.md, "Allocations per decision").
_LETTERS = bytes.maketrans(bytes(range(32)), b"abcdefghijklmnopqrstuvwxyz234567")


def _spread_steps() -> tuple[tuple[int, int, int], ...]:
    """Each step halves every chunk of bits, moving the high half up to the middle of its slot:
    one chunk of 320 bits in 512 becomes 64 chunks of 5 bits, one per byte. A step is
    (mask of the high halves, how far they move, mask of the low halves)."""
    steps = []
    for width, stride in ((160, 256), (80, 128), (40, 64), (20, 32), (10, 16), (5, 8)):
        low = sum(((1 << width) - 1) << (slot * 2 * stride) for slot in range(256 // stride))
        steps.append((low << width, stride - width, low))
    return tuple(steps)


_STEPS = _spread_steps()


def _base32(digest: bytes) -> str:
    """RFC 4648 base32 of a 32-byte digest, lower case, unpadded: 52 digits. The digest is padded
    with 64 zero bits to 64 groups of 5; the 52 digits cover its 256 bits and the 4 zero bits
    base32 itself pads with."""
    n = int.from_bytes(digest, "big") << 64
    for high, shift, low in _STEPS:
        n = ((n & high) << shift) | (n & low)
    return n.to_bytes(64, "big")[:52].translate(_LETTERS).decode()


class Pseudonymizer:
    __slots__ = ("_hash",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("pseudonymization key must be at least 32 bytes")
        self._hash = KeyedHash(key)

    def subject_ref(self, user_id: str) -> str:
        return "sub_" + _base32(self._hash.digest(user_id.encode("utf-8")))
