"""The subject directory: subject_ref → random subject id and wrapped data key.

It is its own SQLCipher file, apart from the data database, because erasure is the
destruction of what it holds: once a subject's row is gone, every field sealed with that
subject's data key is unreadable — in the data file and in any copy of it — and nothing left
in the data file (which only knows the random subject id) links back to the user_id, even for
someone holding the pseudonymization key. A tombstone keeps the erased subject_ref and when it
was last erased, so later pushes answer `subject_erased`; it stays when the user comes back (a
new subject, new id and key), so an auditor asking about a moment before that erasure is told
"unknown", not "had not agreed".

The erasure's other half, deleting the subject's rows in the data file and recording the erasure
in the ledger, is another file's transaction, so it cannot commit with the key's destruction. The
key goes first (crypto-shredding never waits on the rest), and until the caller reports that other
half durable (`erasure_done`) the tombstone keeps what it needs, the subject id and who asked: a
crash in between leaves a `PendingErasure` that a retried erasure or the next start finishes. The
subject id links the ref to the data file's rows, so it is dropped as soon as the cleanup is done.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

from storage.connections import Connection, in_chunks
from storage.crypto import DecryptionError, FieldCipher, Keyring, new_data_key
from storage.db import Database

__all__ = [
    "MAX_AGE_SECONDS",
    "PendingErasure",
    "SubjectDirectory",
    "SubjectKey",
    "SubjectStatus",
    "erasure_day",
    "opens",
]

SubjectStatus = Literal["active", "erased", "unknown"]
_CACHE_SIZE = 50_000
# How long a cached entry is trusted with nothing read: the longest an erasure made by another
# process (a second `serve` on the same data dir) goes unseen here. The check adds ~0.1 µs to a
# ~4 µs hit. Past it, a lookup reads the count of erasures (one row, once per lookup, however many
# refs it asks about), and the entries' rows only if an erasure was made since they were read. A
# lookup with misses reads it too: each entry it makes keeps the count its row was read under.
MAX_AGE_SECONDS = 1.0
_ERASURES_MADE = "SELECT total FROM erasures_made"


def erasure_day(at: datetime) -> str:
    """What a finished erasure's tombstone says of when it was: the UTC midnight after it. Its
    moment is also the `subject.erased` ledger event's, which names the subject's internal id, so
    a tombstone keeping it links the subject_ref to the subject's whole ledger history (an auditor
    reads both). After, not before, so that "no consent held from then on" stays true."""
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (day if day == at else day + timedelta(days=1)).isoformat()


class SubjectKey:
    """A live subject: its random internal id and its data key, ready to seal and open."""

    __slots__ = ("cipher", "subject_id", "subject_ref")

    def __init__(self, subject_ref: str, subject_id: str, cipher: FieldCipher) -> None:
        self.subject_ref = subject_ref
        self.subject_id = subject_id
        self.cipher = cipher

    @classmethod
    def shredded(cls, subject_ref: str, subject_id: str) -> SubjectKey:
        """An erased subject, to record its erasure in the ledger once its key is gone. The cipher
        is under a random key kept nowhere: nothing of the subject's opens with it, and nothing
        is to be sealed with it (the erasure event has no content)."""
        return cls(subject_ref, subject_id, FieldCipher(new_data_key()))


class _Entry(NamedTuple):
    """What the cache keeps of a subject: the raw data key, not a cipher (see `SubjectDirectory`),
    when it was last found good (monotonic, taken before the read that did) and the count of
    erasures read no later than the row it came from."""

    subject_id: str
    data_key: bytes
    read_at: float
    erasures: int


class PendingErasure(NamedTuple):
    """An erasure whose key is destroyed and whose data-side cleanup is not yet known durable."""

    subject_ref: str
    subject_id: str
    erased_at: datetime
    actor: str


def _live(subject_ref: str, entry: _Entry) -> SubjectKey:
    return SubjectKey(subject_ref, entry.subject_id, FieldCipher(entry.data_key))


def _pending(row: tuple[Any, ...]) -> PendingErasure:
    ref, subject_id, erased_at, actor = row
    return PendingErasure(str(ref), str(subject_id), datetime.fromisoformat(erased_at), str(actor))


def _wrap_aad(subject_id: str) -> bytes:
    return f"cgw1|subjects|wrapped_key|{subject_id}".encode()


def opens(keyring: Keyring, subject_id: str, wrapped: bytes) -> bool:
    """Whether `keyring` opens this subject's wrapped data key. A key store can hold a key by the
    right id and still be the wrong key (one character of it changed)."""
    try:
        keyring.unwrap(wrapped, _wrap_aad(subject_id))
    except DecryptionError:
        return False
    return True


class SubjectDirectory:
    """Subjects by ref and by id. The unwrapped data keys of up to 50,000 recently seen refs are
    cached, sparing a read and an unwrap per request.

    An erasure drops its subject's entry at once in the process that makes it. Another process on
    the same files (a second `serve`) is not told, so each entry is trusted with nothing read for
    at most `max_age` seconds of monotonic time after it was last found good. Past that, the next
    lookup of the ref reads the count of erasures, which each erasure of a live subject raises in
    its own transaction: unchanged since the entry's row was read, no subject was erased anywhere
    since, and the entry is good for another `max_age`. Changed, the ref's row is read again, in
    the IN query made for the misses anyway: a row still holding the entry's id keeps the cached
    key (same subject, same key: no unwrap); a row gone drops the entry (the tombstone then answers
    `subject_erased`); a row with another id, a subject erased and come back, is read like a miss.
    So an erasure made elsewhere is honoured here within `max_age`, for one read of a row per
    lookup past `max_age` while nobody is erased, where reading every ref's row again each second
    cost a dry-run batch over subjects seen before ~7% of its CPU.

    Watching the tombstones instead of a count would not do: an erasure followed by a return only
    rewrites the ref's tombstone, so it could go unseen and the old key keep serving the new
    subject. A return needs no count of its own: the erasure before it raised the count.
    """

    def __init__(self, db: Database, keyring: Keyring, max_age: float = MAX_AGE_SECONDS) -> None:
        self._db = db
        self._keyring = keyring
        self._max_age = max_age
        # The cache keeps ids and raw data keys, not ciphers: a cipher that has sealed or opened
        # holds an OpenSSL context of ~2.5 KB, which would make a full cache ~145 MiB
        # (docs/performance-history.md, "Memory"). What a hit saves is the read and the unwrap.
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        # ref → when this process last erased it (monotonic; infinite while the erasure runs): a
        # row read before that moment is not cached, whichever subject it held.
        self._erased: dict[str, float] = {}
        self._lock = threading.Lock()

    def resolve(self, subject_ref: str) -> SubjectKey | None:
        """The live subject for a ref, or None (unknown or erased)."""
        return self.resolve_many((subject_ref,)).get(subject_ref)

    def resolve_many(self, subject_refs: Iterable[str]) -> dict[str, SubjectKey]:
        """The live subjects among `subject_refs`: misses, and entries past `max_age` when a
        subject was erased since their rows were read, read in a few IN queries."""
        read_at = time.monotonic()
        trusted_after = read_at - self._max_age
        found: dict[str, SubjectKey] = {}
        to_read: dict[str, _Entry | None] = {}
        with self._lock:
            for ref in dict.fromkeys(subject_refs):
                hit = self._cache.get(ref)
                if hit is not None:
                    self._cache.move_to_end(ref)
                if hit is not None and hit.read_at > trusted_after:
                    found[ref] = _live(ref, hit)
                else:
                    to_read[ref] = hit
        if not to_read:
            return found
        erasures = self._erasures_made()
        past = {ref: hit for ref, hit in to_read.items() if hit is not None and hit.erasures == erasures}
        if past:
            found.update(self._vouched(past, read_at))
        found.update(
            self._read({ref: hit for ref, hit in to_read.items() if ref not in past}, read_at, erasures)
        )
        return found

    def _erasures_made(self) -> int:
        return int(self._db.reader().execute(_ERASURES_MADE).fetchone()[0])

    def _vouched(self, entries: dict[str, _Entry], read_at: float) -> dict[str, SubjectKey]:
        """Entries past `max_age` that the count of erasures, read after `read_at`, vouches for:
        those still cached, and not replaced meanwhile by a newer read, are trusted for another
        `max_age` from `read_at`, unless this process began erasing their ref since. An erasure
        racing the count is answered as one racing the read of a row was: as if it came after."""
        with self._lock:
            for ref, entry in entries.items():
                if self._cache.get(ref) is entry and read_at > self._erased.get(ref, -math.inf):
                    # built, not `_replace`d: a third of the cost, for a batch's thousands
                    self._cache[ref] = _Entry(entry.subject_id, entry.data_key, read_at, entry.erasures)
        return {ref: _live(ref, entry) for ref, entry in entries.items()}

    def _read(self, refs: dict[str, _Entry | None], read_at: float, erasures: int) -> dict[str, SubjectKey]:
        """The live subjects among `refs`, from their rows, read in a few IN queries after
        `read_at` and after the count of `erasures`. Each ref maps to its entry past `max_age`,
        if it has one: the entry is trusted again if the row holds its id, and dropped if the row
        is gone."""
        found: dict[str, SubjectKey] = {}
        reader = self._db.reader()
        for marks, chunk in in_chunks(list(refs)):
            rows = reader.execute(
                f"SELECT subject_ref, subject_id, wrapped_key FROM subjects WHERE subject_ref IN ({marks})",  # noqa: S608
                chunk,
            ).fetchall()
            found.update(self._remember(rows, read_at, erasures, refs))
        gone = [ref for ref, hit in refs.items() if hit is not None and ref not in found]
        if gone:
            with self._lock:
                for ref in gone:
                    self._cache.pop(ref, None)
        return found

    def by_subject_id(self, subject_id: str) -> SubjectKey | None:
        """The live subject behind an internal id (workers and auditors hold ids, not refs)."""
        return self.by_subject_ids([subject_id]).get(subject_id)

    def by_subject_ids(self, subject_ids: Iterable[str]) -> dict[str, SubjectKey]:
        """subject id → live subject, for the live ones among `subject_ids` (erased ones are absent).

        The rows are read by id each time, since only the database knows which ref an id belongs
        to now, and a cached entry serves only if it holds that same id (see `_fresh`). What this
        path unwraps is not cached: it is the delivery worker's path, and a worker running as its
        own process never hears of erasures, so it must not keep data keys between rounds
        (SECURITY.md, "What is not protected"). With the row read anyway, caching would only
        spare an unwrap.
        """
        rows = self._rows_by_id(subject_ids, "subject_ref, subject_id, wrapped_key")
        with self._lock:
            hits = {sid: self._fresh(ref, sid) for ref, sid, _ in rows}
        found: dict[str, SubjectKey] = {}
        for ref, sid, wrapped in rows:
            hit = hits[sid]
            data_key = self._keyring.unwrap(wrapped, _wrap_aad(sid)) if hit is None else hit.data_key
            found[sid] = SubjectKey(ref, sid, FieldCipher(data_key))
        return found

    def holds(self, subject_id: str) -> bool:
        """Whether the subject is live now, read past the cache. Asked inside a data-file write's
        transaction (`Store.write_as`): an erasure deletes the subject's row here before its
        cleanup takes the data file's write lock, so either this read sees it gone or the cleanup
        runs after the write and deletes what it wrote. A delivery round's sends ask `holding`,
        a wave of them at a time (`gateway.services.send_checks`)."""
        row = self._db.reader().execute("SELECT 1 FROM subjects WHERE subject_id = ?", (subject_id,))
        return row.fetchone() is not None

    def holding(self, subject_ids: Iterable[str]) -> set[str]:
        """The live subjects among `subject_ids`, read past the cache: `holds` for many, in a
        few IN queries."""
        return {row[0] for row in self._rows_by_id(subject_ids, "subject_id")}

    def forget(self, subject_ref: str) -> None:
        """Drop the ref's cached entry: its subject was found gone (`holds`)."""
        with self._lock:
            self._cache.pop(subject_ref, None)

    def status(self, subject_ref: str) -> SubjectStatus:
        if self.resolve(subject_ref) is not None:
            return "active"
        return "erased" if self.erased_among([subject_ref]) else "unknown"

    def erased_at(self, subject_ref: str) -> datetime | None:
        """When this ref was last erased, if it ever was: for a live subject, the erasure before
        it came back."""
        row = (
            self._db.reader()
            .execute("SELECT erased_at FROM tombstones WHERE subject_ref = ?", (subject_ref,))
            .fetchone()
        )
        return None if row is None else datetime.fromisoformat(row[0])

    def erased_among(self, subject_refs: Sequence[str]) -> set[str]:
        """The refs among these that were ever erased (tombstoned), in a few IN queries: ask it
        about refs `resolve` found no live subject for."""
        erased: set[str] = set()
        reader = self._db.reader()
        for marks, chunk in in_chunks(subject_refs):
            erased.update(
                str(r[0])
                for r in reader.execute(
                    f"SELECT subject_ref FROM tombstones WHERE subject_ref IN ({marks})",  # noqa: S608
                    chunk,
                )
            )
        return erased

    def ensure(self, subject_ref: str, now: datetime) -> SubjectKey:
        """The live subject for a ref, created fresh (new id, new key) if there is none.

        A subject that was erased and comes back starts anew; its tombstone stays, with when it
        was erased (and, if its cleanup is still pending, what `erasure_done` needs).
        """
        found = self.resolve(subject_ref)
        if found is not None:
            return found
        subject_id = "s_" + secrets.token_hex(16)
        data_key = new_data_key()
        read_at = time.monotonic()  # before the insert: an erasure after it keeps this uncached

        def insert(conn: Connection) -> tuple[str, bytes, int]:
            # Wrapped in the transaction, under the key active then: wrapped before it, the key
            # could miss a rotation whose pass went by while the insert waited for the write lock
            # (`rewrap_all` starts only once the transactions begun before its new key are done).
            wrapped = self._keyring.wrap(data_key, _wrap_aad(subject_id))
            conn.execute(
                "INSERT OR IGNORE INTO subjects (subject_ref, subject_id, wrapped_key, created_at) "
                "VALUES (?, ?, ?, ?)",
                (subject_ref, subject_id, wrapped, now.isoformat()),
            )
            row = conn.execute(
                "SELECT subject_id, wrapped_key FROM subjects WHERE subject_ref = ?", (subject_ref,)
            ).fetchone()
            return row[0], row[1], conn.execute(_ERASURES_MADE).fetchone()[0]

        winner_id, winner_key, erasures = self._db.writer.run_sync(insert)
        return self._remember([(subject_ref, winner_id, winner_key)], read_at, erasures, {})[subject_ref]

    async def ensure_from_loop(self, subject_ref: str, now: datetime) -> SubjectKey:
        """`ensure` for code on the event loop: a subject in the cache is answered at once, and a
        new one is made on a thread, since its commit waits for an fsync (and first for the write
        lock, which another process may hold for seconds) and its key's wrap reads the key store."""
        while (found := self.resolve(subject_ref)) is None:
            # Looked up again once back on the loop: the user's own erasure may have run whole
            # while the thread made the subject, and a write under it would outlive the erasure.
            # Then the user comes back as a new subject, as they would had it run just before.
            await asyncio.to_thread(self.ensure, subject_ref, now)
        return found

    def erase(self, subject_ref: str, now: datetime, actor: str = "user") -> str | None:
        """Destroy the mapping and the data key, leave a tombstone; returns the old subject id.

        The tombstone holds that id and `actor` until `erasure_done`. It holds one, so a caller
        finishes a cleanup still pending for the ref (`pending_erasure`) before erasing the subject
        who came back meanwhile. An erasure of a ref with no live subject keeps the tombstone it
        finds as it is, pending cleanup included.

        The WAL is checkpointed and truncated afterwards so the deleted key bytes do not
        linger in it (secure_delete already zeroes them in the main file).
        """

        def delete(conn: Connection) -> str | None:
            row = conn.execute(
                "SELECT subject_id FROM subjects WHERE subject_ref = ?", (subject_ref,)
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT OR IGNORE INTO tombstones (subject_ref, erased_at) VALUES (?, ?)",
                    (subject_ref, erasure_day(now)),
                )
                return None
            conn.execute("DELETE FROM subjects WHERE subject_ref = ?", (subject_ref,))
            conn.execute("UPDATE erasures_made SET total = total + 1")
            conn.execute(
                "INSERT OR REPLACE INTO tombstones "
                "(subject_ref, erased_at, pending_subject_id, pending_actor) VALUES (?, ?, ?, ?)",
                (subject_ref, now.isoformat(), row[0], actor),
            )
            return str(row[0])

        with self._lock:
            self._erased[subject_ref] = math.inf
        try:
            subject_id = self._db.writer.run_sync(delete)
        finally:
            with self._lock:
                self._cache.pop(subject_ref, None)
                self._erased[subject_ref] = time.monotonic()
        self._db.checkpoint()
        return subject_id

    def pending_erasure(self, subject_ref: str) -> PendingErasure | None:
        """The erasure of this ref whose data-side cleanup is still pending, if any."""
        row = (
            self._db.reader()
            .execute(
                "SELECT subject_ref, pending_subject_id, erased_at, pending_actor FROM tombstones "
                "WHERE subject_ref = ? AND pending_subject_id IS NOT NULL",
                (subject_ref,),
            )
            .fetchone()
        )
        return None if row is None else _pending(row)

    def pending_erasures(self) -> list[PendingErasure]:
        """Every erasure whose cleanup is pending: one read of a partial index, empty but for a crash."""
        rows = self._db.reader().execute(
            "SELECT subject_ref, pending_subject_id, erased_at, pending_actor FROM tombstones "
            "WHERE pending_subject_id IS NOT NULL"
        )
        return [_pending(row) for row in rows]

    def erasure_done(self, erasure: PendingErasure) -> None:
        """Forget the subject id once the erasure's data-side cleanup is durable, and the moment
        of the erasure, which the cleanup's ledger event bears: the tombstone keeps only its day
        (`erasure_day`). Checkpointed like `erase`, so both leave the WAL and the main file's old
        page too."""

        def clear(conn: Connection) -> None:
            conn.execute(
                "UPDATE tombstones SET pending_subject_id = NULL, pending_actor = NULL, erased_at = ? "
                "WHERE subject_ref = ? AND pending_subject_id = ?",
                (erasure_day(erasure.erased_at), erasure.subject_ref, erasure.subject_id),
            )

        self._db.writer.run_sync(clear)
        self._db.checkpoint()

    def refs_for(self, subject_ids: Iterable[str]) -> dict[str, str]:
        """subject id → subject_ref for the live subjects among `subject_ids` (erased ones are absent)."""
        rows = self._rows_by_id(subject_ids, "subject_ref, subject_id")
        with self._lock:
            for ref, sid in rows:
                self._fresh(ref, sid)  # drops an entry this read shows is stale
        return {sid: ref for ref, sid in rows}

    def _rows_by_id(self, subject_ids: Iterable[str], columns: str) -> list[tuple[Any, ...]]:
        """The `subjects` rows of these ids (`columns` is a constant of this module), in a few IN queries."""
        rows: list[tuple[Any, ...]] = []
        reader = self._db.reader()
        for marks, chunk in in_chunks(list(dict.fromkeys(subject_ids))):
            rows.extend(
                reader.execute(f"SELECT {columns} FROM subjects WHERE subject_id IN ({marks})", chunk)  # noqa: S608
            )
        return rows

    def _fresh(self, subject_ref: str, subject_id: str) -> _Entry | None:
        """The cached entry of a ref the database has just shown to hold `subject_id`, if it holds
        that id too, however old (the read vouches for it); one holding another id is stale — the
        ref was erased and came back, maybe in another process — and is dropped. Call with the
        lock held."""
        hit = self._cache.get(subject_ref)
        if hit is None:
            return None
        if hit[0] != subject_id:
            del self._cache[subject_ref]
            return None
        self._cache.move_to_end(subject_ref)
        return hit

    def rewrap_all(self, batch: int = 500) -> int:
        """Re-wrap every data key under the keyring's active key, in batches, while serving. Call
        it after the new key is active: an empty write transaction first waits out any begun
        before (in any process), whose new subjects' keys were wrapped under the old key; those
        begun after wrap under the new one (`ensure`)."""
        self._db.writer.run_sync(lambda conn: None)
        active = self._keyring.active
        done, last = 0, ""
        while True:
            rows = (
                self._db.reader()
                .execute(
                    "SELECT subject_ref, subject_id, wrapped_key FROM subjects "
                    "WHERE subject_ref > ? ORDER BY subject_ref LIMIT ?",
                    (last, batch),
                )
                .fetchall()
            )
            if not rows:
                return done
            last = rows[-1][0]
            updates = [
                (self._keyring.wrap(self._keyring.unwrap(w, _wrap_aad(sid)), _wrap_aad(sid)), ref, w)
                for ref, sid, w in rows
                if self._keyring.key_id_of(w) != active
            ]

            def write(conn: Connection, updates: list[tuple[bytes, str, bytes]] = updates) -> int:
                # The old wrap in the WHERE clause makes a concurrent erase or re-wrap win.
                cur = conn.executemany(
                    "UPDATE subjects SET wrapped_key = ? WHERE subject_ref = ? AND wrapped_key = ?", updates
                )
                return cur.rowcount

            if updates:
                done += self._db.writer.run_sync(write)

    def _remember(
        self,
        rows: Sequence[tuple[str, str, bytes]],
        read_at: float,
        erasures: int,
        past: Mapping[str, _Entry | None],
    ) -> dict[str, SubjectKey]:
        """Cache the subjects of (ref, id, wrapped key) rows read after `read_at`, and no earlier
        than the count of `erasures`, under one hold of the lock for them all (a batch's 500 a chunk). `past`
        holds a ref's entry from before this read, if any: holding the same id, it is the same
        subject, whose key never changes, so its key serves again without an unwrap."""
        entries: dict[str, _Entry] = {}
        for ref, subject_id, wrapped in rows:
            hit = past.get(ref)
            if hit is not None and hit.subject_id == subject_id:
                data_key = hit.data_key
            else:
                data_key = self._keyring.unwrap(wrapped, _wrap_aad(subject_id))
            entries[ref] = _Entry(subject_id, data_key, read_at, erasures)
        with self._lock:
            for ref, entry in entries.items():
                if read_at > self._erased.get(ref, -math.inf):  # not a read an erasure raced
                    self._cache[ref] = entry
                    self._cache.move_to_end(ref)
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return {ref: _live(ref, entry) for ref, entry in entries.items()}
