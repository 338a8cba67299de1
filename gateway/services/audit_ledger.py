"""The ledger's integrity for auditors: hash-chain verification, signed checkpoints of its
Merkle tree (see `storage.ledger_tree` for what a leaf is), proofs, and signed exports that
are checked offline with nothing but the gateway's public key (`gateway.services.export_check`).

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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Literal

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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
    frontier_root,
    inclusion_proof,
    root_hash,
)
from storage.repositories import audit, consents
from storage.repositories.audit import CheckpointRow, Filter
from storage.store import Store

__all__ = [
    "EXPORT_MAX",
    "AuditLedger",
    "CheckpointClaims",
    "KeySource",
    "signed_payload",
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
        claims = msgspec.json.decode(signed_payload(row.jws, keys[kid], kid), type=CheckpointClaims)
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


def signed_payload(token: str, public: Ed25519PublicKey, kid: str) -> bytes:
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
