"""The ledger's integrity for auditors: hash-chain verification, signed checkpoints of its
Merkle tree (see `storage.ledger_tree` for what a leaf is), proofs, and signed exports that
are checked offline with nothing but the gateway's public key.

Checkpoints are made at `GET /v1/audit/ledger/checkpoint`, at every export, and by `serve`
every `CGW_CHECKPOINT_SECONDS` (`gateway.checkpoints`), and only when the ledger has grown since
the latest one, so each tree size is signed once.
An auditor keeps the checkpoints they were given: a consistency proof from one of them to a
newer tree shows the ledger was only appended to, and no rewrite, truncation or restored
backup can produce such a proof.

The gateway holds itself to its own checkpoints too: verification compares the ledger with the
latest signed checkpoint (`verify_ledger`), and a new checkpoint is signed only for a tree whose
prefix is the previous signed one, never for a silently rebuilt history, and whose events past
it hold as a chain, never for events that verification would call invalid (409 either way).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Literal

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from msgspec import UnsetType

from gateway.clock import Clock, rfc3339, rfc3339_text
from gateway.errors import Conflict, InvalidInput
from gateway.schemas.audit import (
    CheckpointRead,
    ConsistencyProofRead,
    ExportBundle,
    ExportEvent,
    ExportRead,
    InclusionProofRead,
)
from gateway.schemas.me import ConsentReceipt
from gateway.signing import Signer
from storage import ledger
from storage.connections import Connection
from storage.keys import KeyStore, KeyStoreError
from storage.ledger_tree import (
    LedgerChainError,
    LedgerForkError,
    LedgerGapError,
    LedgerLeaves,
    TreeHead,
    advance,
)
from storage.merkle import (
    Frontier,
    compact_range,
    consistency_proof,
    frontier_append,
    frontier_root,
    inclusion_proof,
    leaf_hash,
    root_hash,
    verify_consistency,
)
from storage.repositories import audit, consents
from storage.repositories.audit import CheckpointRow, Filter
from storage.store import Store

__all__ = [
    "EXPORT_MAX",
    "AuditLedger",
    "CheckpointClaims",
    "ExportCheck",
    "KeySource",
    "verify_export",
    "verify_ledger",
]

EXPORT_MAX = 100_000

KeySource = Callable[[], Mapping[str, Ed25519PublicKey]]


class CheckpointClaims(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The signed payload of a checkpoint; `type` keeps it from passing for any other signed
    document. Required, not defaulted: with a default, a payload naming no type was taken for a
    checkpoint. Every checkpoint this gateway signed names it."""

    type: Literal["consent-gateway/ledger-checkpoint"]
    tree_size: int
    root_hash: str
    at: str


@contextmanager
def _contiguous() -> Iterator[None]:
    try:
        yield
    except LedgerGapError as exc:
        raise Conflict(f"{exc}; GET /v1/audit/ledger/verify names the first bad event") from None
    except LedgerForkError as exc:
        raise Conflict(
            f"checkpoint: {exc}; refusing to sign a history that is not the signed one "
            "(GET /v1/audit/ledger/verify)",
            "checkpoint",
        ) from None
    except LedgerChainError as exc:
        raise Conflict(
            f"checkpoint: {exc}; refusing to sign events that do not verify (GET /v1/audit/ledger/verify)",
            "checkpoint",
        ) from None


def _anchor(row: CheckpointRow | None) -> ledger.Anchor | None:
    return None if row is None else ledger.Anchor(row.tree_size, row.root_hash)


def verify_ledger(
    conn: Connection, keys: Mapping[str, Ed25519PublicKey], reread: KeySource | None = None
) -> ledger.VerifyResult:
    """`verify_history`, and the consent state pushes are decided on held to the ledger's latest
    consent events (`consents.unbacked`): `UPDATE consents SET granted = 1` let marketing through
    to a user whose ledger said withdrawn, and the chain, which does not read that table, held."""
    result = _verify_history(conn, keys, reread)
    if result.checkpoint_problem == "ledger_missing":  # nothing to hold them to: not checked
        return msgspec.structs.replace(result, consents_unbacked=None)
    unbacked = consents.unbacked(conn)
    if unbacked == 0:
        return result
    return msgspec.structs.replace(result, ok=False, consents_unbacked=unbacked)


def _verify_history(
    conn: Connection, keys: Mapping[str, Ed25519PublicKey], reread: KeySource | None = None
) -> ledger.VerifyResult:
    """The hash chain, and the ledger against the latest stored signed checkpoint: its signature
    (one of `keys`, by `kid`) and claims, then that the ledger still has its `tree_size` events
    and that they hash to its root. Without this a truncated ledger, or one rewritten and
    re-chained by whoever holds the database key, verified.

    A checkpoint whose `kid` is not in `keys` may be signed by a key rotated in after these were
    read (a process restarted earlier signed it): `reread` gives the keys as they are now.

    Nothing stored makes this raise: a checkpoint whose columns hold other types than were
    written is `bad_signature`, and a dropped checkpoints table `checkpoints_missing` (after
    `ledger_missing`, the graver of the two), so that the CLI and the API report tampering."""
    if not audit.checkpoints_readable(conn):
        result = ledger.verify(conn)
        return msgspec.structs.replace(
            result, ok=False, checkpoint_problem=result.checkpoint_problem or "checkpoints_missing"
        )
    row = audit.latest_checkpoint(conn)
    result = ledger.verify(conn, _anchor(row))
    if row is None or result.checkpoint_problem == "ledger_missing":
        return result
    problem = _checkpoint_problem(row, keys, reread)
    if problem is None:
        return result
    return msgspec.structs.replace(result, ok=False, checkpoint_problem=problem)


def _checkpoint_problem(
    row: CheckpointRow, keys: Mapping[str, Ed25519PublicKey], reread: KeySource | None
) -> ledger.CheckpointProblem | None:
    """Why the stored checkpoint is not one we signed over its own row, or None. A key neither
    we nor the key store know is `unknown_key`: a rotation not rolled out here yet, or a retired
    key left out of the store, which is not the same alarm as a signature that does not hold.
    A row whose columns do not hold what was written is not one we signed, whatever its JWS says."""
    if not row.sound:
        return "bad_signature"
    try:
        kid = jwt.get_unverified_header(row.jws).get("kid")
    except jwt.PyJWTError:
        return "bad_signature"
    if not isinstance(kid, str):
        return "bad_signature"
    if kid not in keys and reread is not None:
        keys = reread()
    if kid not in keys:
        return "unknown_key"
    try:
        claims = msgspec.json.decode(_signed(row.jws, keys[kid], kid), type=CheckpointClaims)
    except (jwt.PyJWTError, msgspec.DecodeError, msgspec.ValidationError):
        return "bad_signature"
    if (claims.tree_size, claims.root_hash, claims.at) != (row.tree_size, row.root_hash.hex(), row.at):
        return "bad_signature"
    return None


def _signing_keys_in(path: Path) -> dict[str, Ed25519PublicKey]:
    """The public signing keys the key store at `path` lists now, current and retired, by `kid`;
    none when it cannot be read (then a `kid` we do not know stays unknown)."""
    try:
        return Signer(KeyStore.load(path).signing).public_keys()
    except KeyStoreError:
        return {}


def _read(row: CheckpointRow) -> CheckpointRead:
    return CheckpointRead(tree_size=row.tree_size, root_hash=row.root_hash.hex(), at=row.at, jws=row.jws)


class AuditLedger:
    def __init__(self, store: Store, clock: Clock, signer: Signer) -> None:
        self._store = store
        self._clock = clock
        self._signer = signer
        self._tree = TreeHead()  # the tree at the last checkpoint made by this process

    async def verify(self) -> ledger.VerifyResult:
        """`verify_ledger` in a worker thread: it reads and hashes the whole ledger, seconds on a
        big one, and on the event loop it held up every other request meanwhile. The thread
        reads through its own connection (`Database.reader` keeps one per thread)."""
        return await asyncio.to_thread(self._verify)

    def _verify(self) -> ledger.VerifyResult:
        reread = partial(_signing_keys_in, self._store.keys.path)
        return verify_ledger(self._store.data.reader(), self._signer.public_keys(), reread)

    async def checkpoint(self) -> CheckpointRead:
        """The latest checkpoint, after signing a new one if the ledger has grown since it."""

        def unit(conn: Connection) -> tuple[CheckpointRow, TreeHead]:
            # In the unit: a time read before it could precede events appended meanwhile, by
            # another process, that the checkpoint covers.
            now = self._clock()
            latest = audit.latest_checkpoint(conn)
            # only what was appended since the catch-up below, and never a history but the signed one
            tree = advance(self._tree, conn, _anchor(latest))
            if latest is not None and latest.tree_size >= tree.frontier.size:
                return latest, tree
            root = frontier_root(tree.frontier)
            claims = CheckpointClaims(
                type="consent-gateway/ledger-checkpoint",
                tree_size=tree.frontier.size,
                root_hash=root.hex(),
                at=rfc3339(now),
            )
            row = CheckpointRow(claims.tree_size, root, claims.at, self._signer.sign(claims))
            audit.insert_checkpoint(conn, row)
            return row, tree

        with _contiguous():
            # Catch up outside the writer first: after a restart that hashes the whole ledger,
            # which must not hold up everyone else's writes.
            self._tree = await asyncio.to_thread(self._catch_up)
            row, self._tree = await self._store.data.writer.run(unit)
        return _read(row)

    async def checkpoint_if_grown(self) -> CheckpointRead | None:
        """`checkpoint`, if the ledger holds events its latest checkpoint does not cover: what
        `serve` signs every `CGW_CHECKPOINT_SECONDS` (`gateway.checkpoints`). A ledger holding
        fewer is refused as `checkpoint` refuses a history that is not the signed one: `checkpoint`
        signs nothing for it, and answers the latest checkpoint as if all were well."""
        conn = self._store.data.reader()
        latest = audit.latest_checkpoint(conn)
        events, signed = ledger.head(conn)[0], 0 if latest is None else latest.tree_size
        if events < signed:
            raise Conflict(
                f"checkpoint: the ledger holds {events} events, fewer than the {signed} its latest "
                "checkpoint signed (GET /v1/audit/ledger/verify)",
                "checkpoint",
            )
        return None if events == signed else await self.checkpoint()

    def _catch_up(self) -> TreeHead:
        conn = self._store.data.reader()
        return advance(self._tree, conn, _anchor(audit.latest_checkpoint(conn)))

    async def inclusion(self, seq: int, size: int) -> InclusionProofRead:
        """Off the event loop, like `verify`: a proof hashes up to the whole ledger."""
        return await asyncio.to_thread(self._inclusion, seq, size)

    async def consistency(self, first: int, second: int) -> ConsistencyProofRead:
        return await asyncio.to_thread(self._consistency, first, second)

    def _inclusion(self, seq: int, size: int) -> InclusionProofRead:
        conn = self._store.data.reader()
        if not 1 <= seq <= size:
            raise InvalidInput("seq: must be between 1 and `size`", "seq")
        if size > (events := ledger.head(conn)[0]):
            raise InvalidInput(f"size: the ledger has {events} events", "size")
        leaves = LedgerLeaves(conn, size)
        with _contiguous():
            return InclusionProofRead(
                seq=seq,
                leaf_index=seq - 1,
                tree_size=size,
                leaf_hash=leaves[seq - 1].hex(),
                root_hash=root_hash(leaves).hex(),
                audit_path=[h.hex() for h in inclusion_proof(leaves, seq - 1, size)],
            )

    def _consistency(self, first: int, second: int) -> ConsistencyProofRead:
        conn = self._store.data.reader()
        if first < 1:
            raise InvalidInput("from: a consistency proof starts from a tree of at least one event", "from")
        if first > second:
            raise InvalidInput("from: must not exceed `to`", "from")
        if second > (events := ledger.head(conn)[0]):
            raise InvalidInput(f"to: the ledger has {events} events", "to")
        leaves = LedgerLeaves(conn, second)
        with _contiguous():
            return ConsistencyProofRead(
                first=first,
                second=second,
                first_root=root_hash(LedgerLeaves(conn, first)).hex(),
                second_root=root_hash(leaves).hex(),
                proof=[h.hex() for h in consistency_proof(leaves, first, second)],
            )

    async def export(self, start: str | None, end: str | None) -> tuple[ExportRead, int]:
        """Events of a time window (stored-form bounds) plus the latest checkpoint, as one compact JWS.

        The window is widened to a contiguous seq range — from the first event at or after
        `start` to the last one before `end` — so the exported chain can be checked link by link.
        Read, proved and signed in a worker thread, as `verify` is: up to `EXPORT_MAX` events,
        counted before the checkpoint is signed, so that a refused export writes nothing.
        """
        await asyncio.to_thread(self._span, start, end, None)
        checkpoint = await self.checkpoint()
        return await asyncio.to_thread(self._export, checkpoint, start, end)

    def _span(self, start: str | None, end: str | None, upto: int | None) -> tuple[int, int]:
        """The window's seq range among the first `upto` events (all of them if None), refused
        past `EXPORT_MAX` events."""
        conn = self._store.data.reader()
        size = ledger.next_seq(conn) - 1 if upto is None else upto
        first, last = audit.seq_span(conn, Filter(start=start, end=end), size) or (1, 0)
        if last - first + 1 > EXPORT_MAX:
            raise InvalidInput(f"to: the range holds more than {EXPORT_MAX} events; narrow it", "to")
        return first, last

    def _export(
        self, checkpoint: CheckpointRead, start: str | None, end: str | None
    ) -> tuple[ExportRead, int]:
        conn = self._store.data.reader()
        first, last = self._span(start, end, checkpoint.tree_size)
        events = list(ledger.events_between(conn, first, last))
        refs = self._store.directory.refs_for(e.subject_id for e in events)
        with _contiguous():
            leaves = LedgerLeaves(conn, checkpoint.tree_size)
            proof = consistency_proof(leaves, last, checkpoint.tree_size) if last else []
            prefix = compact_range(leaves, first - 1) if last else Frontier()
        bundle = ExportBundle(
            type="consent-gateway/audit-export",
            exported_at=rfc3339(self._clock()),
            start=start and rfc3339_text(start),
            end=end and rfc3339_text(end),
            events=[
                ExportEvent(subject_ref=refs.get(e.subject_id), **msgspec.structs.asdict(e)) for e in events
            ],
            checkpoint=checkpoint,
            consistency_proof=[h.hex() for h in proof],
            prefix=[h.hex() for h in prefix.hashes],
        )
        return ExportRead(self._signer.sign(bundle)), len(events)


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
    return _signed(token, keys[kid], kid)


def _signed(token: str, public: Ed25519PublicKey, kid: str) -> bytes:
    """The payload of a compact JWS signed (EdDSA) by the key `kid`. Refused with a `=` in it:
    base64url is written unpadded (RFC 7515, section 2), and PyJWT takes the padding, so one
    signature verified as several tokens."""
    if "=" in token:
        raise jwt.DecodeError("base64url padding (=) in a compact JWS (RFC 7515 writes none)")
    decoded = jwt.PyJWS(algorithms=["EdDSA"]).decode_complete(token, public, algorithms=["EdDSA"])
    if decoded["header"].get("kid") != kid:
        raise jwt.InvalidSignatureError("signed by another key")
    payload: bytes = decoded["payload"]
    return payload


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
    recorded = (event.kind, event.purpose, event.notice_version, _moment(event.at))
    given = (
        f"consent.{receipt.state}",
        receipt.purpose.id,
        receipt.notice_version,
        _moment(receipt.timestamp),
    )
    if recorded != given or event.subject_ref not in (None, receipt.subject_ref):
        return f"the ledger's event at seq {seq} is not this consent"
    return None


def _moment(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _extends(
    saved: CheckpointClaims, roots: Mapping[int, bytes], events: list[ExportEvent], signed: CheckpointRead
) -> str | None:
    """Why the export does not show its history extending `saved`, or None. `roots` are the
    export's tree roots it could work out, by size: before its first event, after each of its
    events, and the signed checkpoint's (`signed`)."""
    if saved.tree_size > signed.tree_size:
        saved_at, signed_at = _moment(saved.at), _moment(signed.at)
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
