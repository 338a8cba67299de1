"""Unpadded base64url (RFC 4648 section 5, written as RFC 7515 writes it in a JWS, without `=`):
the key store's keys, JWS segments, the audit listings' cursors. Decoding takes it padded or not.
One place, so that each use does not work out the padding again."""

from __future__ import annotations

import base64

__all__ = ["decode", "encode"]


def encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode(text: str) -> bytes:
    """ValueError (`binascii.Error`) for what is not base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
