"""Pseudonyms: the wallet's user_id becomes a `subject_ref` at the edge and is never stored.

`subject_ref = "sub_" + lowercase base32 (unpadded) of HMAC-SHA256(pseudonym key, user_id)`.
The pseudonymization key is its own key in the key store, never an encryption key, so the
mapping can be kept stable while encryption keys rotate.
"""

from __future__ import annotations

import base64
import hmac
import re

__all__ = ["SUBJECT_REF_PATTERN", "Pseudonymizer", "is_subject_ref"]

SUBJECT_REF_PATTERN = r"^sub_[a-z2-7]{52}$"
_SUBJECT_REF = re.compile(SUBJECT_REF_PATTERN)


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
        return "sub_" + base64.b32encode(digest).decode("ascii").lower().rstrip("=")
