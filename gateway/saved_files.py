"""The files an auditor or a user kept, read for `consent-gateway audit verify --export`: an export
(the file `audit export` writes, or the API's answer), a checkpoint saved earlier, receipts (bare,
the consent route's answer, or a data export) and a published JWK set. Each is read unverified
here and its signatures checked by `gateway.services.export_check`; a file of another kind is a
ValueError saying what it is not."""

from __future__ import annotations

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from storage import b64url
from storage.keys import PublicSigningKey

__all__ = ["export_token", "published_keys", "receipt_tokens", "saved_checkpoint"]


class _SavedDocument(msgspec.Struct):
    type: str
    checkpoint: _SavedCheckpoint | None = None


class _SavedCheckpoint(msgspec.Struct):
    jws: str


def saved_checkpoint(raw: bytes) -> str:
    """The compact JWS of the checkpoint in a file an auditor saved: an earlier export's (the file
    or the API's answer) or the checkpoint route's answer (`{"tree_size", ..., "jws"}`). Read
    unverified here; `verify_export` checks its signature."""
    token = export_token(raw)
    try:
        payload = token.split(".")[1]
        document = msgspec.json.decode(b64url.decode(payload), type=_SavedDocument)
    except (IndexError, ValueError, msgspec.DecodeError):  # binascii.Error is a ValueError
        raise ValueError("not an export or a checkpoint this gateway signed") from None
    if document.type == "consent-gateway/ledger-checkpoint":
        return token
    if document.type == "consent-gateway/audit-export" and document.checkpoint is not None:
        return document.checkpoint.jws
    raise ValueError("not an export or a checkpoint this gateway signed")


class _ExportAnswer(msgspec.Struct):
    jws: str


class _ReceiptFile(msgspec.Struct):
    jws: str | None = None
    receipts: list[_ExportAnswer] | None = None


def receipt_tokens(raw: bytes) -> list[str]:
    """The compact JWS of each receipt in a file a user kept: the bare JWS, the consent route's
    answer (`{"receipt", "jws"}`), or their data export (`GET /v1/me/export`, its `receipts`).
    Read unverified here; `verify_export` checks each signature."""
    text = _text(raw)
    if not text.startswith("{"):
        return [text]
    try:
        kept = msgspec.json.decode(text, type=_ReceiptFile)
    except msgspec.DecodeError as exc:  # ValidationError too
        raise ValueError(f"not a receipt, a consent's answer or a data export: {exc}") from None
    if kept.jws is not None:
        return [kept.jws.strip()]
    if kept.receipts:
        return [answer.jws.strip() for answer in kept.receipts]
    if kept.receipts is not None:
        raise ValueError("a data export that holds no receipt: nothing to check")
    raise ValueError("JSON with neither a receipt's jws nor a data export's receipts")


def _text(raw: bytes) -> str:
    """A file the gateway wrote (a compact JWS, or JSON holding one) as text; a ValueError, said
    with its flag, for any other (its decoding error named a byte's position, and no flag)."""
    try:
        return raw.decode().strip()
    except UnicodeDecodeError:
        raise ValueError("not a text file (the gateway writes these as a compact JWS or JSON)") from None


def export_token(raw: bytes) -> str:
    """The compact JWS of an export file: the file itself, as `audit export` writes it, or the
    `jws` of `GET /v1/audit/export`'s JSON answer, as the auditor dashboard saved it until it
    saved the bare JWS (such files are in auditors' hands)."""
    text = _text(raw)
    if not text.startswith("{"):
        return text
    try:
        return msgspec.json.decode(text, type=_ExportAnswer).jws.strip()
    except msgspec.DecodeError as exc:  # ValidationError too
        raise ValueError(f"JSON without the jws of an export: {exc}") from None


class _Jwk(msgspec.Struct):
    kty: str
    crv: str | None = None
    x: str | None = None


class _Jwks(msgspec.Struct):
    keys: list[_Jwk]


def published_keys(raw: bytes) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 keys of a JWK set by `kid`, each kid computed (RFC 7638), not taken on trust."""
    try:
        jwks = msgspec.json.decode(raw, type=_Jwks)
    except msgspec.DecodeError as exc:
        raise ValueError(str(exc)) from None
    found = [PublicSigningKey.from_x(k.x) for k in jwks.keys if (k.kty, k.crv) == ("OKP", "Ed25519") and k.x]
    if not found:
        raise ValueError("it has none")
    return {key.kid: key.public for key in found}
