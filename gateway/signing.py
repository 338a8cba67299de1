"""Compact JWS (EdDSA) over our JSON documents, verifiable with `/.well-known/jwks.json`."""

from __future__ import annotations

import base64

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from storage.keys import SigningKey

__all__ = ["SignedParts", "Signer"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class SignedParts(msgspec.Struct, frozen=True, kw_only=True):
    """A compact JWS kept in its parts, for storage: the exact JSON bytes that were signed —
    embedded as JSON, not base64url — its protected header segment and its signature segment.

    Why: a stored receipt used to be kept twice, as JSON and again base64url inside its JWS
    (a third bigger). Kept this way the document is stored once, and `compact()` rebuilds the
    very token that was handed out, so it still verifies against `/.well-known/jwks.json`.

    `document` is the signed bytes themselves (`msgspec.Raw` is written and read back
    verbatim), never re-encoded from a struct: the signature covers those bytes, so a later
    change to the struct, or to how msgspec encodes it, cannot break old signatures. Read it
    with `msgspec.json.decode(parts.document, type=...)`.

    Not RFC 7515's flattened JSON serialization, whose `payload` is base64url.
    """

    protected: str
    document: msgspec.Raw
    signature: str

    def compact(self) -> str:
        """The compact JWS: `protected.base64url(document).signature`."""
        return f"{self.protected}.{_b64url(bytes(self.document))}.{self.signature}"


class Signer:
    def __init__(self, key: SigningKey) -> None:
        self._key = key
        self._jws = jwt.PyJWS(algorithms=["EdDSA"])

    @property
    def kid(self) -> str:
        return self._key.kid

    def sign(self, document: object) -> str:
        return self._sign(msgspec.json.encode(document))

    def sign_parts(self, document: object) -> SignedParts:
        """`sign`, kept in parts for storage; `.compact()` is the token `sign` would give."""
        payload = msgspec.json.encode(document)
        token = self._sign(payload)
        protected, encoded, signature = token.split(".")
        if encoded != _b64url(payload):  # the token must be rebuildable from the stored bytes
            raise RuntimeError("the JWS payload segment is not the base64url of the signed document")
        return SignedParts(protected=protected, document=msgspec.Raw(payload), signature=signature)

    def _sign(self, payload: bytes) -> str:
        return self._jws.encode(payload, self._key.private, algorithm="EdDSA", headers={"kid": self._key.kid})

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """The public keys our signatures are checked with, by `kid`: the current one and the
        retired ones, whose old checkpoints, exports and receipts must keep verifying."""
        return {key.kid: key.public for key in (self._key, *self._key.retired)}

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The current key first, then the retired ones (verify only: nothing new is signed)."""
        return {"keys": [key.jwk() for key in (self._key, *self._key.retired)]}
