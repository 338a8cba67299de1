"""`Signer.sign_parts`: a compact JWS kept in parts for storage — the signed document once, as
JSON — rebuilds the exact token `sign` gives, which verifies with an independent library."""

from __future__ import annotations

import json

import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.signing import SignedParts, Signer
from storage.keys import SigningKey

RECEIPT = {
    "receipt_id": "7d4c2a8e-5b1f-4c3a-9e2d-0f6b8a1c3e5d",
    "subject_ref": "sub_" + "a" * 52,
    "purpose": {"id": "marketing", "description": "promotional pushes: offers, sales, tips, surveys"},
    "state": "given",
    "ledger_seq": 42,
}


class Reordered(msgspec.Struct):
    """The same fields as RECEIPT in another order, as a later version of a struct might have."""

    state: str
    ledger_seq: int
    receipt_id: str
    subject_ref: str
    purpose: dict[str, str]


@pytest.fixture
def key() -> SigningKey:
    return SigningKey(Ed25519PrivateKey.generate())


def test_parts_rebuild_the_token_sign_gives_and_it_verifies(key: SigningKey) -> None:
    signer = Signer(key)

    parts = signer.sign_parts(RECEIPT)
    token = parts.compact()

    assert token == signer.sign(RECEIPT)  # Ed25519 is deterministic: same key, bytes, header
    _, _, signature = token.split(".")
    assert (parts.protected, parts.kid, parts.signature) == (None, key.kid, signature)
    decoded = jwt.PyJWS().decode_complete(token, key.public, algorithms=["EdDSA"])
    assert decoded["header"] == {"alg": "EdDSA", "kid": key.kid}  # receipts are no JWTs: no "typ"
    assert decoded["payload"] == bytes(parts.document) == msgspec.json.encode(RECEIPT)


def test_stored_parts_hold_the_document_once_and_round_trip(key: SigningKey) -> None:
    parts = Signer(key).sign_parts(RECEIPT)
    payload = parts.compact().split(".")[1]

    stored = msgspec.json.encode(parts)

    assert json.loads(stored) == {"kid": key.kid, "document": RECEIPT, "signature": parts.signature}
    assert payload.encode() not in stored
    assert stored.count(b'"receipt_id"') == 1
    assert len(stored) < len(msgspec.json.encode(RECEIPT)) + 180
    back = msgspec.json.decode(stored, type=SignedParts)
    assert back == parts
    assert back.compact() == parts.compact()
    assert jwt.PyJWS().decode(back.compact(), key.public, algorithms=["EdDSA"]) == bytes(parts.document)


def test_rebuilding_never_re_encodes_the_document(key: SigningKey) -> None:
    parts = Signer(key).sign_parts(RECEIPT)
    stored = msgspec.json.encode(parts)

    back = msgspec.json.decode(stored, type=SignedParts)
    # Decoded into a struct whose encoding differs, the document's bytes would no longer match ...
    assert msgspec.json.encode(msgspec.json.decode(back.document, type=Reordered)) != bytes(back.document)
    # ... but the token is rebuilt from the stored bytes themselves, so the signature still holds.
    assert jwt.PyJWS().decode(back.compact(), key.public, algorithms=["EdDSA"]) == bytes(parts.document)


def test_a_changed_document_no_longer_verifies(key: SigningKey) -> None:
    parts = Signer(key).sign_parts(RECEIPT)
    forged = msgspec.structs.replace(
        parts, document=msgspec.Raw(msgspec.json.encode(RECEIPT | {"state": "x"}))
    )

    with pytest.raises(jwt.InvalidSignatureError):
        jwt.PyJWS().decode(forged.compact(), key.public, algorithms=["EdDSA"])


def test_parts_kept_with_their_whole_header_before_still_rebuild_their_token(key: SigningKey) -> None:
    """Receipts signed before the header was kept as its kid carry `"typ": "JWT"` in it, and
    are stored with the header segment whole: read back, they rebuild the very token given."""
    token = jwt.PyJWS().encode(
        msgspec.json.encode(RECEIPT), key.private, algorithm="EdDSA", headers={"kid": key.kid}
    )
    header, _, signature = token.split(".")
    stored = msgspec.json.encode({"protected": header, "document": RECEIPT, "signature": signature})
    back = msgspec.json.decode(stored, type=SignedParts)
    assert (back.kid, back.compact()) == (None, token)
    assert jwt.get_unverified_header(token)["typ"] == "JWT"


@pytest.mark.parametrize(
    "stored",
    [
        {"document": RECEIPT, "signature": "x"},
        {"protected": "x", "kid": "y", "document": RECEIPT, "signature": "x"},
    ],
    ids=["neither", "both"],
)
def test_parts_keep_either_a_header_or_a_kid(stored: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError, match="either its protected header or its kid"):
        msgspec.json.decode(msgspec.json.encode(stored), type=SignedParts)
