"""Pseudonyms: the wallet's user_id becomes a `subject_ref` at the edge and is never stored.

`subject_ref = "sub_" + lowercase base32 (unpadded) of HMAC-SHA256(pseudonym key, user_id)`.
The pseudonymization key is its own key in the key store, never an encryption key, so the
mapping can be kept stable while encryption keys rotate.
"""

from __future__ import annotations

import hmac
import re

__all__ = ["SUBJECT_REF_PATTERN", "Pseudonymizer", "is_subject_ref"]

SUBJECT_REF_PATTERN = r"^sub_[a-z2-7]{52}$"
_SUBJECT_REF = re.compile(SUBJECT_REF_PATTERN)

# Python 3.11's `base64.b32encode` is written in Python and cost more than the HMAC itself (4.9
# against 2.0 µs; 10% of a dry-run decision in docs/performance.md, run I). Three digits per
# lookup in a 32,768-entry table (about 2 MB) give the same string in 2.1 µs.
_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_TRIPLES = tuple(a + b + c for a in _ALPHABET for b in _ALPHABET for c in _ALPHABET)
_SHIFTS = tuple(range(255, -1, -15))


def _base32(digest: bytes) -> str:
    """RFC 4648 base32 of a 32-byte digest, lower case, unpadded: 52 digits. The digest is padded
    with 14 zero bits to 18 groups of 15; the 52 digits cover its 256 bits and the 4 zero bits
    base32 itself pads with."""
    n = int.from_bytes(digest, "big") << 14
    return "".join([_TRIPLES[(n >> shift) & 0x7FFF] for shift in _SHIFTS])[:52]


def is_subject_ref(value: str) -> bool:
    return _SUBJECT_REF.fullmatch(value) is not None


class Pseudonymizer:
    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("pseudonymization key must be at least 32 bytes")
        self._key = key

    def subject_ref(self, user_id: str) -> str:
        digest = hmac.digest(self._key, user_id.encode("utf-8"), "sha256")
        return "sub_" + _base32(digest)
