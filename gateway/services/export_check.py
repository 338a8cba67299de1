"""An export checked offline, with nothing but the gateway's public keys: its signatures, the hash
chain of its events, the signed tree they are the leaves of, and, given what an auditor or a user
kept, that its history extends a checkpoint saved earlier and holds each receipt's event. What
`consent-gateway audit verify --export` runs; the gateway's own side of the ledger (checkpoints,
proofs, the export itself) is `gateway.services.audit_ledger`."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from msgspec import UnsetType

from gateway.clock import stored_time
from gateway.schemas.audit import (
    CheckpointRead,
    ExportBundle,
    ExportEvent,
)
from gateway.schemas.me import ConsentReceipt
from gateway.services.audit_ledger import CheckpointClaims, signed_payload
from storage import ledger
from storage.merkle import (
    Frontier,
    frontier_append,
    frontier_root,
    leaf_hash,
    verify_consistency,
)

__all__ = ["ExportCheck", "verify_export"]


class ExportCheck(msgspec.Struct, kw_only=True):
    ok: bool
    events: int = 0
    checked: list[str] = []
    problem: str | None = None


def _signed_by(token: str, keys: Mapping[str, Ed25519PublicKey]) -> bytes:
    """The payload of a compact JWS signed (EdDSA) by whichever of `keys` its header's `kid` names."""
    kid = jwt.get_unverified_header(token).get("kid")
    if not isinstance(kid, str) or kid not in keys:
        raise jwt.InvalidSignatureError(f"signed by a key that is not ours (kid {kid!r})")
    return signed_payload(token, keys[kid], kid)


def verify_export(
    token: str,
    keys: Mapping[str, Ed25519PublicKey],
    since: str | None = None,
    receipts: Sequence[str] = (),
) -> ExportCheck:
    """Checks an export offline: both signatures, each with the key of `keys` its JWS header's
    `kid` names (an export signed after a key rotation embeds a checkpoint signed before it),
    the hash chain of its events, and that its events are the leaves of the signed checkpoint's
    tree at their seqs: the tree before the first (`prefix`) and the events give the root at the
    last, which `consistency_proof` ties to the signed root.

    With `since`, a checkpoint the auditor saved earlier (its compact JWS), also that this
    export's history extends it: the root of its first `tree_size` events, worked out from the
    prefix and the events, is the saved root. That is the external witness a ledger needs against
    whoever holds the database key and can rewrite it, checkpoint rows included (SECURITY.md).

    With `receipts`, consent receipts (their compact JWS) users were given, also that each one's
    event is in this export as signed, after the history the receipt holds the hash of: every
    user's receipt is such a witness, kept outside the gateway by its user (`_receipt_problem`)."""
    checked: list[str] = []
    saved: CheckpointClaims | None = None
    if since is not None:
        try:
            saved = msgspec.json.decode(_signed_by(since, keys), type=CheckpointClaims)
        except (jwt.PyJWTError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            return ExportCheck(
                ok=False, checked=checked, problem=f"the saved checkpoint is not a signed one: {exc}"
            )
    try:
        bundle = msgspec.json.decode(_signed_by(token, keys), type=ExportBundle)
        checked.append("signature")
        cp = bundle.checkpoint
        claims = msgspec.json.decode(_signed_by(cp.jws, keys), type=CheckpointClaims)
        if (claims.tree_size, claims.root_hash, claims.at) != (cp.tree_size, cp.root_hash, cp.at):
            return ExportCheck(ok=False, checked=checked, problem="checkpoint differs from its signed claims")
        checked.append("checkpoint signature")
    except (jwt.PyJWTError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        return ExportCheck(ok=False, checked=checked, problem=f"not a valid signed export: {exc}")
    events = bundle.events
    # Anchored at genesis when the export starts at seq 1; otherwise at its first event's own link.
    prev = b"" if not events else ledger.GENESIS if events[0].seq == 1 else events[0].prev_hash
    for offset, e in enumerate(events):
        record = ledger.canonical_bytes(
            e.seq,
            e.at,
            e.subject_id,
            e.kind,
            e.purpose,
            e.notice_version,
            e.actor,
            e.source,
            e.body,
            e.prev_hash,
        )
        if (
            e.seq != events[0].seq + offset
            or e.prev_hash != prev
            or hashlib.sha256(record).digest() != e.hash
        ):
            return ExportCheck(
                ok=False, events=len(events), checked=checked, problem=f"hash chain breaks at seq {e.seq}"
            )
        prev = e.hash
    if events:  # a window with none checks no chain: said so by its absence, not listed checked
        checked.append("hash chain")
    roots: dict[int, bytes] = {}  # the tree's roots the export gives, by size, as `since` needs them
    if events:
        try:
            tree = Frontier(events[0].seq - 1, tuple(bytes.fromhex(h) for h in bundle.prefix))
            proof = [bytes.fromhex(h) for h in bundle.consistency_proof]
            signed_root = bytes.fromhex(cp.root_hash)
        except ValueError:
            return ExportCheck(
                ok=False,
                events=len(events),
                checked=checked,
                problem="the tree before the first event (prefix) or a proof is malformed or missing",
            )
        if saved is not None and tree.size == saved.tree_size:
            roots[tree.size] = frontier_root(tree)
        for e in events:
            tree = frontier_append(tree, leaf_hash(e.hash))
            if saved is not None and tree.size == saved.tree_size:
                roots[tree.size] = frontier_root(tree)
        if not verify_consistency(events[-1].seq, cp.tree_size, frontier_root(tree), signed_root, proof):
            return ExportCheck(
                ok=False,
                events=len(events),
                checked=checked,
                problem="events do not match the checkpoint's root",
            )
        checked.append("checkpoint root")
    if saved is not None:
        roots[cp.tree_size] = bytes.fromhex(cp.root_hash)
        if (problem := _extends(saved, roots, events, cp)) is not None:
            return ExportCheck(ok=False, events=len(events), checked=checked, problem=problem)
        checked.append("extends the saved checkpoint")
    if receipts:
        by_seq = {e.seq: e for e in events}
        for number, receipt in enumerate(receipts, 1):
            if (problem := _receipt_problem(receipt, keys, by_seq)) is not None:
                problem = f"receipt {number}: {problem}"
                return ExportCheck(ok=False, events=len(events), checked=checked, problem=problem)
        checked.append("receipts")
    return ExportCheck(ok=True, events=len(events), checked=checked)


def _receipt_problem(
    token: str, keys: Mapping[str, Ed25519PublicKey], events: Mapping[int, ExportEvent]
) -> str | None:
    """Why a receipt is not borne out by the export's events, or None. Its event (at its
    `ledger_seq`) must record this consent, and the event before it hash to its
    `ledger_prev_hash`: a history rewritten before the event, even re-chained and signed
    anew, does not. That holds of the history only where the export's chain starts at the
    ledger's: a window's chain starts at its first event's own link, which nothing ties to the
    events before it (an event changed there, unchained, would go unseen), so a window cannot
    tell. A receipt signed before receipts held that hash is checked by its event alone. The
    subject is compared only while the export can name it (not after erasure)."""
    try:
        receipt = msgspec.json.decode(_signed_by(token, keys), type=ConsentReceipt)
    except (jwt.PyJWTError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        return f"not a consent receipt signed by the gateway: {exc}"
    seq = receipt.ledger_seq
    event = events.get(seq)
    if event is None:
        window = f"seq {min(events)} to {max(events)}" if events else "no events"
        return (
            f"cannot tell: its event (seq {seq}) is not in this export ({window}); export a window holding it"
        )
    witnessed = receipt.ledger_prev_hash
    if not isinstance(witnessed, UnsetType):
        if min(events) != 1:
            return (
                f"cannot tell: it witnesses the history before its event (seq {seq}), and this export "
                f"starts at seq {min(events)}; export the ledger from its start"
            )
        # 128 bits (`ledger.WITNESS_BYTES`); receipts made before that carried all 256.
        if len(witnessed) not in (2 * ledger.WITNESS_BYTES, 2 * ledger.HASH_SIZE) or not (
            event.prev_hash.hex().startswith(witnessed)
        ):
            return f"the history before its event (seq {seq}) is not the one it was signed after: rewritten"
    # As moments where both read as one, else as written: two unreadable times are not one.
    recorded = (event.kind, event.purpose, event.notice_version, stored_time(event.at) or event.at)
    given = (
        f"consent.{receipt.state}",
        receipt.purpose.id,
        receipt.notice_version,
        stored_time(receipt.timestamp) or receipt.timestamp,
    )
    if recorded != given or event.subject_ref not in (None, receipt.subject_ref):
        return f"the ledger's event at seq {seq} is not this consent"
    return None


def _extends(
    saved: CheckpointClaims, roots: Mapping[int, bytes], events: list[ExportEvent], signed: CheckpointRead
) -> str | None:
    """Why the export does not show its history extending `saved`, or None. `roots` are the
    export's tree roots it could work out, by size: before its first event, after each of its
    events, and the signed checkpoint's (`signed`)."""
    if saved.tree_size > signed.tree_size:
        saved_at, signed_at = stored_time(saved.at), stored_time(signed.at)
        if saved_at is not None and signed_at is not None and saved_at > signed_at:
            # The files given the wrong way round, not a ledger that lost events: said as such.
            return (
                f"cannot tell: the saved checkpoint (signed {saved.at}) is newer than this export's "
                f"({signed.at}); pass an export made after it"
            )
        return (
            f"the saved checkpoint signed {saved.tree_size} events, more than this export's "
            f"checkpoint ({signed.tree_size}): the ledger has lost events since"
        )
    root = roots.get(saved.tree_size)
    if root is None:
        window = f"seq {events[0].seq} to {events[-1].seq}" if events else "no events"
        return (
            f"cannot tell: the saved checkpoint's tree of {saved.tree_size} events does not end "
            f"inside this export ({window}); export a window holding seq {saved.tree_size}"
        )
    if root.hex() != saved.root_hash:
        return (
            f"the ledger's first {saved.tree_size} events do not hash to the saved checkpoint's "
            "root: the history was rewritten since it was saved"
        )
    return None
