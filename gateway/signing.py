"""Compact JWS (EdDSA) over our JSON documents, verifiable with `/.well-known/jwks.json`."""

from __future__ import annotations

import jwt
import msgspec

from storage.keys import SigningKey

__all__ = ["Signer"]


class Signer:
    def __init__(self, key: SigningKey) -> None:
        self._key = key
        self._jws = jwt.PyJWS(algorithms=["EdDSA"])

    @property
    def kid(self) -> str:
        return self._key.kid

    def sign(self, document: object) -> str:
        payload = msgspec.json.encode(document)
        return self._jws.encode(payload, self._key.private, algorithm="EdDSA", headers={"kid": self._key.kid})

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [self._key.jwk()]}
