"""Compact JWS (EdDSA) over our JSON documents, verifiable with `/.well-known/jwks.json`."""

from __future__ import annotations

import json

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from storage import b64url
from storage.keys import SigningKey

__all__ = ["SignedParts", "Signer"]


def _header(kid: str) -> str:
    """The protected header segment of our signatures, as PyJWS writes it: `alg` and `kid`,
    sorted, compact. No `typ`: what we sign are receipts, checkpoints and exports, not JWTs."""
    return b64url.encode(
        json.dumps({"alg": "EdDSA", "kid": kid}, separators=(",", ":"), sort_keys=True).encode()
    )


class SignedParts(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A compact JWS kept in its parts, for storage: the exact JSON bytes that were signed —
    embedded as JSON, not base64url — its protected header segment and its signature segment.

    Why: a stored receipt used to be kept twice, as JSON and again base64url inside its JWS
    (a third bigger). Kept this way the document is stored once, and `compact()` rebuilds the
    very token that was handed out, so it still verifies against `/.well-known/jwks.json`.

    `document` is the signed bytes themselves (`msgspec.Raw` is written and read back
    verbatim), never re-encoded from a struct: the signature covers those bytes, so a later
    change to the struct, or to how msgspec encodes it, cannot break old signatures. Read it
    with `msgspec.json.decode(parts.document, type=...)`.

    The header is kept as its `kid` where it is the one `kid` alone makes (`_header`, checked as
    it is signed): the whole segment, a hundred characters of base64url, made a ledger row too
    big for four to a page, and a subject 200 bytes more of database (bench run BD). Headers
    signed before, with `"typ": "JWT"`, are kept whole as `protected`.

    Not RFC 7515's flattened JSON serialization, whose `payload` is base64url.
    """

    protected: str | None = None
    kid: str | None = None
    document: msgspec.Raw
    signature: str

    def __post_init__(self) -> None:
        if (self.protected is None) == (self.kid is None):
            raise ValueError("a signed document keeps either its protected header or its kid")

    def compact(self) -> str:
        """The compact JWS: `protected.base64url(document).signature`."""
        protected = self.protected if self.kid is None else _header(self.kid)
        return f"{protected}.{b64url.encode(bytes(self.document))}.{self.signature}"


class Signer:
    def __init__(self, key: SigningKey) -> None:
        self._key = key
        self._jws = jwt.PyJWS(algorithms=["EdDSA"])

    @property
    def kid(self) -> str:
        return self._key.kid

    def use(self, key: SigningKey) -> None:
        """Sign with `key` from now on, and publish it: a rotation taken up while serving
        (`Runtime.follow_signing_key`)."""
        self._key = key

    def sign(self, document: object) -> str:
        return self._sign(msgspec.json.encode(document), self._key)

    def sign_parts(self, document: object) -> SignedParts:
        """`sign`, kept in parts for storage; `.compact()` is the token `sign` would give."""
        payload = msgspec.json.encode(document)
        key = self._key  # one key for the whole: a rotation may be taken up meanwhile (`use`)
        token = self._sign(payload, key)
        protected, encoded, signature = token.split(".")
        if encoded != b64url.encode(payload):  # the token must be rebuildable from the stored bytes
            raise RuntimeError("the JWS payload segment is not the base64url of the signed document")
        if protected == _header(key.kid):
            return SignedParts(kid=key.kid, document=msgspec.Raw(payload), signature=signature)
        return SignedParts(protected=protected, document=msgspec.Raw(payload), signature=signature)

    def _sign(self, payload: bytes, key: SigningKey) -> str:
        headers = {"kid": key.kid, "typ": None}  # PyJWS adds "typ": "JWT" unless told none
        return self._jws.encode(payload, key.private, algorithm="EdDSA", headers=headers)

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """The public keys our signatures are checked with, by `kid`: the current one and the
        retired ones, whose old checkpoints, exports and receipts must keep verifying."""
        current = self._key
        return {key.kid: key.public for key in (current, *current.retired)}

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The current key first, then the retired ones (verify only: nothing new is signed)."""
        current = self._key
        return {"keys": [key.jwk() for key in (current, *current.retired)]}
