"""Connections to the SQLCipher databases, and the one writer each database has.

All writes go through `Writer`, which owns the only write connection and runs units of work
(`fn(conn) -> result`) in `BEGIN IMMEDIATE` transactions. Units submitted from the event loop
(`await writer.run(fn)`) are gathered — every unit that arrives within one turn of the loop, or
while the previous commit waits for its fsync — and run in one transaction, each inside its own
SAVEPOINT, committed once: group commit. A unit that raises is rolled back alone; a commit that
fails fails every unit in it, and so does a unit whose error made SQLite roll back the whole
transaction itself (a full disk mostly), since the units before it went with it. A unit that
reads a damaged page (`is_corrupt`) fails alone: the others of its group run again in the next.

A full disk (SQLITE_FULL) reaches callers as `StorageFullError`: that write is not kept, and
writes succeed again once space is freed. So does a write the kernel refused otherwise, which
SQLite reports as SQLITE_IOERR: a disk quota or the file-size limit reached (EDQUOT, EFBIG), an
I/O error. The writer remembers it (`Writer.full`) until a small
commit that needs new pages succeeds (`Writer.has_room`), so readiness can say so.

Durability is ours, not SQLite's. The write connection runs with `synchronous=NORMAL`, so
COMMIT only writes the WAL; a sync thread then `fdatasync`s the WAL file, and only after that
are the units' callers answered, so an answer still means the data is on disk. Doing it this
way keeps the SQL on the event loop thread: with a writer thread, every SQLite call on either
thread handed the GIL to the other (a context switch each on a one-core server), which cost
more than the SQL itself. While one fsync runs the next group commits, so commits pipeline.
Checkpoints run on a thread and connection of their own, off the loop and off the sync
thread, and hold no lock while writes pause between groups (`_Checkpointer`).

Reads use one connection per thread (`Database.reader()`), which in WAL mode never waits for
the writer, and may see a commit before its fsync; `Writer.durable()` lets an answer that
depends on such a read wait for it. The app awaits it before answering any request that wrote
nothing (`wrote_in_context`): one that wrote is answered after its own commit's fsync, which
covers everything it could have read before.

`run_sync` is the same for threads without a loop (CLI, tools, tests): its own transaction,
answered after its own fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import logging
import os
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlcipher3

__all__ = [
    "Connection", "Database", "DatabaseLockedError", "StorageBusyError", "StorageFailedError",
    "StorageFullError", "Writer", "connect", "in_chunks", "is_corrupt", "is_database_error",
    "page_mac_of", "quiet_cipher_log", "raisable", "savepoint", "wrote_in_context",
]  # fmt: skip

log = logging.getLogger("storage.db")
T = TypeVar("T")
Connection = sqlite3.Connection
Unit = Callable[[Connection], Any]

BUSY_TIMEOUT_MS = 5000
# Fold the WAL into the file past this size. Small, because a checkpoint's copy and fsync slow
# the commits' own fsyncs while it runs: at 2 MiB the stalls are short (docs/performance-history.md,
# "Checkpoints without the write lock"); 16 MiB made the p99 at half load.
CHECKPOINT_WAL_BYTES = 2 * 1024 * 1024
PAGE_CACHE_KIB = 64 * 1024  # per connection: decrypted pages stay cached
# For SQLite's memory in the whole process, whatever the number of connections: a reader is
# opened per thread, so the per-connection caches alone put no bound on the total. Past this,
# SQLite recycles cached pages instead of allocating more (a soft limit: it never fails a query).
# Four connections do the hot work (each database's writer and the loop thread's reader).
SQLITE_MEMORY_BUDGET = 4 * PAGE_CACHE_KIB * 1024
_RETRY_SECONDS = 0.002
STARTUP_WAIT_SECONDS = 120.0
_TRUNCATE_WAITS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.1)
# The room probe writes at most this many pages (1 MiB at SQLCipher's 4 KiB): past that many free
# pages in the file, it proves room for a write that size rather than that the file can grow.
ROOM_PROBE_MAX_PAGES = 256
# The MAC over each page, checked on every page read from the file or the WAL and made for every
# page written. SQLCipher 4's default, HMAC-SHA512, is the faster in software; HMAC-SHA256 on a
# processor with SHA extensions (x86's SHA-NI, Arm's SHA2), where it costs ~40% of SHA-512: there
# a page read takes a quarter less CPU, and without them one a quarter more (measured both ways
# on one host, docs/performance-history.md, "Page MACs by the processor"). A new file takes the
# faster one here; a file keeps the MAC it was made with wherever it is opened (`page_mac_of`).
# Both are keyed with the same 256 bits.
SHA256_PAGES = "HMAC_SHA256"
SHA512_PAGES = "HMAC_SHA512"


def faster_page_mac(cpuinfo: str) -> str:
    """The page MAC for new files on the processor `/proc/cpuinfo` describes (empty: unknown)."""
    for line in cpuinfo.splitlines():
        name, _, values = line.partition(":")
        if name.strip() in ("flags", "Features") and {"sha_ni", "sha2"} & set(values.split()):
            return SHA256_PAGES
    return SHA512_PAGES


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: SQLCipher's default
        return ""


PAGE_MAC = faster_page_mac(_cpuinfo())


def _as_is(value: T) -> T:
    return value


# Binding a `bytes` or a None cost the driver ~1.5 µs more than a `str` or an int: for any type
# without an adapter registered it looks for `__adapt__` and `__conform__` by name, two failed
# attribute lookups a value. A registered adapter is found first, in one dict lookup. A push's
# row binds a dozen such values, a sixth of a durable batch's decision (docs/performance-history.md,
# "Bytes and None bound at a string's cost, three trims, and run AP"). The values bound are the
# same either way.
sqlcipher3.register_adapter(bytes, _as_is)
sqlcipher3.register_adapter(type(None), _as_is)

_CIPHER_LOG_LOCK = threading.RLock()  # `quiet_cipher_log`

wrote_in_context: contextvars.ContextVar[bool] = contextvars.ContextVar("wrote_in_context", default=False)


class DatabaseLockedError(Exception):
    """The database could not be opened with the given key (wrong key or not a database)."""


class StorageFailedError(Exception):
    """An fsync failed. What the kernel kept is unknown after that (a failed fsync may drop the
    dirty pages), so the writer refuses all further writes until the process restarts.
    `StorageFullError` and `StorageBusyError` are the kinds that do not end the writer."""


class StorageFullError(StorageFailedError):
    """The disk (or `max_page_count`) is full, or refused the write (`_is_full`): this write was
    rolled back and not kept. Unlike its parent it ends nothing: SQLite undid the write, and the
    next one succeeds once there is space.
    A StorageFailedError so that the HTTP layer answers it the same way, 503 "retry later",
    rather than a bare 500."""


class StorageBusyError(StorageFailedError):
    """Another process held the database's write lock past the busy timeout: this write was not
    kept, and it ends nothing (the next write may well get the lock). A StorageFailedError so
    that the HTTP layer answers it 503 "retry later" rather than a bare 500."""


class _DamagedPage(Exception):
    """Unit `index` of a group read a page that fails SQLCipher's check (`is_corrupt`)."""

    def __init__(self, index: int, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.index, self.cause = index, cause


class _TransactionLost(Exception):
    """A unit's error made SQLite roll back the whole transaction (so its savepoint is gone too);
    `cause` is that error, for every unit of the group."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def connect(
    path: Path,
    key: bytes,
    *,
    page_mac: str | None = None,
    synchronous: str = "FULL",
    factory: type[Any] = sqlcipher3.Connection,
) -> Connection:
    """Open a SQLCipher connection keyed with a raw 256-bit key and set our pragmas. `page_mac` is
    the MAC the file's pages carry, or None to find it (`page_mac_of`, one open more): a
    `Database`'s connections pass what its writer found.

    Only SQLITE_NOTADB means a wrong key (or not a database); a file that cannot be opened or
    its `-shm` made (a directory without write permission, a read-only volume) is an OSError
    saying so, where it was told as a wrong key and sent operators to their key store."""
    conn = _keyed(path, key, page_mac_of(path, key) if page_mac is None else page_mac, factory)
    when_free(lambda: conn.execute("PRAGMA journal_mode = WAL"))
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")
    conn.execute(f"PRAGMA soft_heap_limit = {SQLITE_MEMORY_BUDGET}")  # process-wide, so set by each
    return conn


def page_mac_of(path: Path, key: bytes) -> str:
    """The MAC the pages of the file at `path` carry: `PAGE_MAC` for a file made here (or not made
    yet), the other for one made on another processor or before files took the faster one. Tried,
    not read: no byte of the file is in clear. The first try, which fails on every such file, is
    kept out of SQLCipher's log (it would say "hmac check failed" at each start); the second is
    logged as any open is, unless the caller quiets it too (`Store` does)."""
    other = SHA512_PAGES if PAGE_MAC == SHA256_PAGES else SHA256_PAGES
    with quiet_cipher_log():
        try:
            _keyed(path, key, PAGE_MAC, sqlcipher3.Connection).close()
            return PAGE_MAC
        except DatabaseLockedError:
            pass
    _keyed(path, key, other, sqlcipher3.Connection).close()
    return other


@contextlib.contextmanager
def quiet_cipher_log() -> Iterator[None]:
    """SQLCipher's own log off for the block: a key or page MAC that does not open a file makes it
    print three "hmac check failed" lines straight to stderr, around the one `DatabaseLockedError`
    that already says what happened (the CLI's contract is one line). The level is process-wide,
    so blocks are serialized, a thread's nested ones included, and the level is put back after."""
    with _CIPHER_LOG_LOCK:
        probe = sqlcipher3.connect(":memory:")
        try:
            (level,) = probe.execute("PRAGMA cipher_log_level").fetchone()
            probe.execute("PRAGMA cipher_log_level = NONE")
            try:
                yield
            finally:
                probe.execute(f"PRAGMA cipher_log_level = {level}")
        finally:
            probe.close()


def _keyed(path: Path, key: bytes, page_mac: str, factory: type[Any]) -> Connection:
    """A connection to `path` whose first page has been read with `key` and `page_mac`."""
    conn: Connection | None = None
    try:
        conn = sqlcipher3.connect(
            str(path),
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
            factory=factory,
        )
        conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        conn.execute(f"PRAGMA cipher_hmac_algorithm = {page_mac}")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF == sqlcipher3.SQLITE_NOTADB:
            raise DatabaseLockedError(f"cannot open {path.name}: wrong key or not a database") from exc
        raise OSError(f"cannot open {path}: {exc}") from exc
    return conn


@contextlib.contextmanager
def savepoint(conn: Connection, name: str) -> Iterator[None]:
    """Writes inside a unit that an exception undoes alone, the unit's other writes kept. Some
    errors (SQLITE_FULL, SQLITE_IOERR) roll back the whole transaction instead: then the error
    goes on as it came, for the writer to fail the transaction, rather than hidden under a failed
    `ROLLBACK TO` ("no such savepoint")."""
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
        raise
    conn.execute(f"RELEASE {name}")


def in_chunks(values: Sequence[T], size: int = 500) -> Iterator[tuple[str, list[T]]]:
    """(`?,?,…` placeholders, values) per chunk, for `IN (…)` queries over many keys: one query per
    `size` keys instead of one per key, and under SQLite's limit on bound parameters."""
    for start in range(0, len(values), size):
        chunk = list(values[start : start + size])
        yield ",".join("?" * len(chunk)), chunk


def when_free(step: Callable[[], T], seconds: float = STARTUP_WAIT_SECONDS) -> T:
    """`step`, tried again while another connection holds the lock it needs. For start-up work
    only: two processes starting on a new data dir both switch it to WAL and migrate it, and
    SQLite answers busy at once to one of them there (the WAL switch does not wait on the busy
    handler, and the writer's own handler is off). Generous, since the other may be migrating
    a large table."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return step()
        except sqlcipher3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            if time.monotonic() > deadline:
                raise StorageBusyError(f"another process held the write lock for {seconds:.0f} s") from exc
            time.sleep(0.01)


def _is_busy(exc: sqlcipher3.Error) -> bool:
    """SQLITE_BUSY: another connection holds the write lock (sqlcipher3's exceptions are its
    own classes, not the standard library's `sqlite3` ones)."""
    return isinstance(exc, sqlcipher3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


class _Checkpointer:
    """The thread that folds the WAL back into the database file when the sync thread finds it
    past `CHECKPOINT_WAL_BYTES`.

    Its own thread because a checkpoint takes 5–25 ms with fsyncs of its own: run on the sync
    thread, it held back every commit's fsync meanwhile, and an error in it ended that thread
    (docs/performance-history.md, "The p99 at half load"). A pass copies what the WAL held when it
    began, while writes go on. The WAL is rewound (written again from its start) only by a write
    that begins once every frame is copied, so passes repeat until one finds nothing new: the WAL
    is then wholly copied between two groups, and the next write rewinds it. No lock is taken for
    that, so commits never wait for a checkpoint; a last pass under the write lock used to hold
    them back by up to 10 ms each time (docs/performance-history.md, "Checkpoints without the write
    lock"). Writes that never pause could outrun the passes for ever, and the WAL would grow
    without end (5 GB in a million-subject seeding), so once it is past twice
    `CHECKPOINT_WAL_BYTES` after a second pass, the last pass takes the write lock and completes.
    The same when the passes complete while a transaction is open: it may have begun before they
    did, and then it appends instead of rewinding (threads queued on the write lock begin the next
    transaction at once, so the seeding script's WAL grew by every one of them). Under the lock,
    the pass copies what that transaction wrote, and the transaction after it rewinds.
    A failed checkpoint loses nothing (the WAL still holds every frame); it is logged and tried
    again on the next request."""

    def __init__(self, path: Path, key: bytes, page_mac: str, name: str, write_lock: threading.Lock) -> None:
        self._path = path
        self._key, self._page_mac = key, page_mac
        self._write_lock = write_lock
        self._wanted = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name=f"checkpoint-{name}", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._wanted.set()

    def close(self) -> None:
        self._closing = True
        self._wanted.set()
        self._thread.join()

    def _loop(self) -> None:
        conn: Connection | None = None
        try:
            while not self._closing:
                self._wanted.wait()
                if self._closing:
                    return
                try:
                    conn = conn or connect(self._path, self._key, page_mac=self._page_mac)
                    self._fold(conn)
                except (sqlcipher3.Error, OSError, DatabaseLockedError) as exc:  # the last two: `connect`
                    log.warning("checkpoint failed; the WAL keeps every frame", extra={"error": str(exc)})
                # Requests made during the passes are covered by them: if the WAL was not
                # rewound after all, it is still past the limit at the next sync, which asks again.
                self._wanted.clear()
        finally:
            if conn is not None:
                conn.close()

    def _fold(self, conn: Connection) -> None:
        last: tuple[int, int] | None = None
        while True:
            # (busy, frames in the WAL when the pass began, frames copied in all)
            _, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            # Equal twice: all copied, or a reader holds the rest (more passes gain nothing).
            settled = (frames, copied) == last
            if settled or (last is not None and self._wal_bytes() > 2 * CHECKPOINT_WAL_BYTES):
                break
            last = (frames, copied)
        # SQLite rewinds the WAL only in a write transaction that began with every frame copied.
        # With none open now, the next one will; one open now may have begun before, and appends.
        if self._wal_bytes() <= 2 * CHECKPOINT_WAL_BYTES or (settled and not self._write_lock.locked()):
            return
        with self._write_lock:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    def _wal_bytes(self) -> int:
        with contextlib.suppress(FileNotFoundError):
            return os.stat(f"{self._path}-wal").st_size
        return 0


_NO_DESCRIPTOR = frozenset({errno.EMFILE, errno.ENFILE})
"""Errors of a WAL's first open that say only that the process or the system had no file
descriptor free at that moment."""


def _final(error: OSError) -> bool:
    """Whether a failed sync fails every commit after it (`_Syncer`): all but a passing want of
    file descriptors, which fails only the commits that sync was for."""
    return error.errno not in _NO_DESCRIPTOR


class _Syncer:
    """The thread that makes commits durable: one `fdatasync` of the WAL covers every commit
    made before it started, then the callbacks of those commits run (on this thread).

    `synced` is the highest commit number known durable. Commits are numbered under the
    writer's lock, so a sync after commit n covers every commit before n too. A failure is
    final: a failed fsync may have dropped pages, and WAL recovery stops at the first missing
    frame, so no later commit is durable either; every later request gets the same error.

    The WAL is opened once, at the first sync, and held: opened at each sync, a process out of
    file descriptors (idle connections held open by a client, say) could not open it, and that
    passing shortage was taken for a final failure, the gateway refusing every write until
    restarted. A first open that finds no descriptor free fails only the commits it was to
    make durable; the next sync tries again."""

    def __init__(self, path: Path, key: bytes, page_mac: str, name: str, write_lock: threading.Lock) -> None:
        self._path = path
        self._identity = _identity(path)  # the file the writer opened, before any commit
        self._wal = Path(f"{path}-wal")
        self._wal_fd: int | None = None  # held from the first sync (made after the first commit)
        self._wal_identity: tuple[int, int] | None = None
        self._checkpointer = _Checkpointer(path, key, page_mac, name, write_lock)
        self.synced = 0
        self.failed: OSError | None = None
        self._queue: queue.SimpleQueue[tuple[int, Callable[[OSError | None], None]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._loop, name=f"sync-{name}", daemon=True)
        self._thread.start()

    def request(self, commit: int, done: Callable[[OSError | None], None]) -> None:
        """Make commit number `commit` durable, then call `done` (with the error, if the sync failed)."""
        self._queue.put((commit, done))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        try:
            while True:
                batch = [self._queue.get()]
                while True:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                error, size = (self.failed, 0) if self.failed else self._sync()
                if error is None or _final(error):
                    self.failed = error
                if error is None:
                    self.synced = max([self.synced, *(item[0] for item in batch if item is not None)])
                for item in batch:
                    if item is not None:
                        item[1](error)
                if None in batch:
                    return
                if error is None and size > CHECKPOINT_WAL_BYTES:
                    self._checkpointer.request()
        finally:
            if self._wal_fd is not None:
                os.close(self._wal_fd)
            self._checkpointer.close()

    def moved(self) -> str | None:
        """None while the file at the path is the one the writer opened, else "missing" or
        "replaced". One that is not still takes commits through the writer's open descriptors,
        and they are gone at the next start: SQLite does not notice."""
        now = _identity(self._path)
        if now == self._identity:
            return None
        return "missing" if now is None else "replaced"

    def _sync(self) -> tuple[OSError | None, int]:
        """A database file or WAL removed or replaced (`moved`, or the WAL's path no longer
        naming the file held open) makes no commit durable: the same final failure as a failed
        fsync. Two `stat`s per sync."""
        if (moved := self.moved()) is not None:
            return OSError(errno.ENOENT, f"{self._path.name} is {moved} on disk"), 0
        try:
            if self._wal_fd is None:  # the WAL outlives every commit while the writer is open
                self._wal_fd = os.open(self._wal, os.O_RDONLY | os.O_CLOEXEC)
                held = os.fstat(self._wal_fd)
                self._wal_identity = (held.st_dev, held.st_ino)
            status = os.stat(self._wal)
            if (status.st_dev, status.st_ino) != self._wal_identity:
                return OSError(errno.ENOENT, f"{self._wal.name} was replaced on disk"), 0
            os.fdatasync(self._wal_fd)
            return None, status.st_size
        except OSError as exc:  # removed, or the sync failed
            return exc, 0


def _call_on(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    """Run `fn` on `loop` from another thread; a loop that has closed has nobody left to tell."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


def is_corrupt(exc: BaseException) -> bool:
    """SQLITE_CORRUPT, or SQLITE_NOTADB from a damaged page after the connection opened."""
    code = getattr(exc, "sqlite_errorcode", None)
    damaged = (sqlcipher3.SQLITE_CORRUPT, sqlcipher3.SQLITE_NOTADB)
    return isinstance(exc, sqlcipher3.Error) and isinstance(code, int) and code & 0xFF in damaged


def _is_full(exc: BaseException, *, in_transaction: bool = True) -> bool:
    """The disk refused a transaction's write: SQLITE_FULL (the disk, or the database's
    `max_page_count`, has no room), SQLITE_IOERR (a quota or the file-size limit reached,
    which SQLite cannot tell from an I/O error: the connection gives only the primary code), or
    SQLITE_READONLY (files the process may not write: a backup restored as another user, a
    volume mounted read-only; `BEGIN IMMEDIATE` takes the lock all the same, so only a write
    finds it). Either way nothing was written, and the next write may succeed once the operator
    acts. Outside a transaction (a checkpoint, whose IOERR may be a failed fsync of work
    already kept) only SQLITE_FULL."""
    code = getattr(exc, "sqlite_errorcode", None)
    refused = (
        (sqlcipher3.SQLITE_FULL, sqlcipher3.SQLITE_IOERR, sqlcipher3.SQLITE_READONLY)
        if in_transaction
        else (sqlcipher3.SQLITE_FULL,)
    )
    return isinstance(exc, sqlcipher3.Error) and isinstance(code, int) and code & 0xFF in refused


def _refusal(exc: BaseException) -> str:
    """How readiness names a refused write (`_is_full`)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return "read-only" if isinstance(code, int) and code & 0xFF == sqlcipher3.SQLITE_READONLY else "full"


def _grow(conn: Connection) -> None:
    """The room probe: allocate one page more than the file has free, then free them all. The
    commit must extend the database (and append to the WAL), which a full disk or
    `max_page_count` refuses with SQLITE_FULL. Fewer pages would come off the freelist and prove
    nothing; a rolled-back write would never reach the disk. The table is created and dropped in
    this one transaction, so the schema is as it was; the file keeps the freed pages for the next
    write."""
    # int(): on a keyed SQLCipher connection `PRAGMA page_size` answers the text '4096', and a
    # text times a count is that text repeated, not a size.
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    size = min(free + 1, ROOM_PROBE_MAX_PAGES) * int(conn.execute("PRAGMA page_size").fetchone()[0])
    conn.execute("CREATE TABLE _room_probe (filler BLOB)")
    conn.execute("INSERT INTO _room_probe VALUES (zeroblob(?))", (size,))
    conn.execute("DROP TABLE _room_probe")


def is_database_error(exc: BaseException) -> bool:
    """An error of the database itself (SQLite's own, or the writer's name for one), not of the
    data a unit read: what a unit must let through for the writer to fail and note it."""
    return isinstance(exc, sqlcipher3.Error | StorageFullError | StorageFailedError | StorageBusyError)


def raisable(exc: BaseException) -> BaseException:
    """What a unit's caller is told: a full disk as StorageFullError (SQLite's own error would be
    a bare 500); and a future cannot carry StopIteration (a unit calling `next()` on no rows
    raises it)."""
    if _is_full(exc):
        full = StorageFullError(str(exc))
        full.__cause__ = exc
        return full
    if isinstance(exc, StopIteration):
        wrapped = RuntimeError("a unit of work raised StopIteration")
        wrapped.__cause__ = exc
        return wrapped
    return exc


class _Job:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Unit, future: asyncio.Future[Any]) -> None:
        self.fn = fn
        self.future = future


class Writer:
    """The single writer of one database; see the module docstring."""

    def __init__(
        self,
        path: Path,
        key: bytes,
        *,
        name: str,
        max_batch: int = 512,
        on_damaged_page: Callable[[BaseException], None] | None = None,
    ) -> None:
        """`on_damaged_page` is told each error of a page failing its check that a unit met, before
        anything runs again: a unit reads other databases too, through their readers (`Store`)."""
        self._path, self._key, self._name = path, key, name
        self._on_damaged_page = on_damaged_page
        self.page_mac = page_mac_of(path, key)  # every connection to the file opens with it
        self._conn = self._open()
        self._lock = threading.Lock()
        self._max_batch = max_batch
        self._syncer = _Syncer(path, key, self.page_mac, name, self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Job] = []
        self._scheduled = False
        self._busy_since: float | None = None
        self._failed: OSError | None = None
        self._full = False
        self._refused_as = "full"  # what `unready` says while `full`: "full" or "read-only"
        self._committed = 0  # commits made, numbered; `_syncer.synced` says which are durable
        self._in_flight = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def _open(self) -> Connection:
        conn = connect(self._path, self._key, page_mac=self.page_mac, synchronous="NORMAL")
        conn.execute("PRAGMA busy_timeout = 0")  # waits are retried here, off the loop's back
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # the sync thread checkpoints
        # Once rewound, the WAL file is cut back to this size, so its size says how much was
        # written since the last checkpoint.
        conn.execute(f"PRAGMA journal_size_limit = {CHECKPOINT_WAL_BYTES}")
        return conn

    def _mend(self, errors: Iterable[BaseException]) -> None:
        """After a unit read a page that fails SQLCipher's check (bits rotted on disk: SQLITE_CORRUPT),
        the codec keeps the error on the connection, and every later unit failed with it (other
        rows, every write) until a restart, while readiness, whose probe reads no page, said
        ready. A new connection reads the healthy pages again: the damaged one fails only the
        units that read it. Called under the write lock, outside a transaction."""
        damaged = next((exc for exc in errors if is_corrupt(exc)), None)
        if damaged is None:
            return
        if self._on_damaged_page is not None:
            self._on_damaged_page(damaged)
        try:
            fresh = self._open()
        except (OSError, DatabaseLockedError, sqlcipher3.Error) as exc:
            log.error(
                "corrupt page: reopening failed",
                extra={"database": self._name, "exc_type": type(exc).__name__},
            )
            return
        self._conn.close()
        self._conn = fresh
        log.error("corrupt page: a unit read a page that fails its check; connection reopened",
                  extra={"database": self._name})  # fmt: skip

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in the next group commit; the answer comes once that commit is durable."""
        result = await self.submit(fn)
        wrote_in_context.set(True)
        return result

    def submit(self, fn: Callable[[Connection], T]) -> asyncio.Future[T]:
        """Queue `fn` now, ahead of any unit queued after this call (in the same group, it runs
        first); the future's answer comes once its commit is durable."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._pending or self._in_flight:  # still serving another loop: go the thread way
                return loop.run_in_executor(None, self._run_sync_raisable, fn)
            self._loop = loop
        job = _Job(fn, loop.create_future())
        self._pending.append(job)
        self._schedule()
        return job.future

    def run_sync(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in a transaction of its own, from a thread that is not the event loop's."""
        return self._locked_sync(fn, transaction=True)

    def _run_sync_raisable(self, fn: Callable[[Connection], T]) -> T:
        """`run_sync` for a future's sake: one cannot carry StopIteration (`raisable`), and the
        executor's attempt to set it fails inside a callback, leaving the caller waiting."""
        try:
            return self.run_sync(fn)
        except BaseException as exc:
            converted = raisable(exc)
            if converted is exc:
                raise
            raise converted from exc

    def run_alone(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` outside any transaction (for `wal_checkpoint` or migrations that manage their own)."""
        return self._locked_sync(fn, transaction=False)

    async def durable(self) -> None:
        """Return once every commit made so far is durable."""
        if self._failed is not None:
            raise StorageFailedError(str(self._failed))
        target = self._committed
        if self._syncer.synced >= target:
            return
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            await loop.run_in_executor(None, self._wait_synced, target)
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append((target, waiter))
        await waiter

    @property
    def full(self) -> bool:
        """A write was refused for want of room (`_is_full`) and `has_room` has not found room
        since. Not cleared by any later commit: one that rewrites pages in place needs no room,
        and would say there is some while every insert still fails."""
        return self._full

    @property
    def refused_as(self) -> str:
        """While `full`: "full", or "read-only" if the files refused the write for want of
        permission rather than of room."""
        return self._refused_as

    def has_room(self) -> bool:
        """From a thread: commit the room probe (`_grow`); True, and `full` cleared, if it was kept.
        Only worth it after a full disk: each success leaves the file a page or so larger."""
        try:
            self.run_sync(_grow)
        except StorageFullError:
            return False
        self._full = False
        return True

    def moved(self) -> str | None:
        """None while the database file on disk is the one written to, else "missing" or "replaced"."""
        return self._syncer.moved()

    @property
    def commits(self) -> int:
        """Commits made so far, durable or not: how the worker's grouping of units is checked."""
        return self._committed

    @property
    def failure(self) -> OSError | None:
        """The failed sync that ended this writer's durability, for good; None while healthy.
        The sync thread records it first, before any caller hears of it."""
        return self._syncer.failed

    def close(self) -> None:
        self._syncer.close()
        self._conn.close()

    # -- the loop's side -------------------------------------------------------------------

    def _schedule(self) -> None:
        """Flush at the next turn of the loop, unless a commit is still waiting for its fsync:
        then what arrives meanwhile waits and goes in one group when that fsync is done. So an
        idle server commits at once, and a busy one commits as often as the disk syncs, in
        groups as large as the load (fewer commits rewrite fewer pages)."""
        if not self._scheduled and self._pending and self._in_flight == 0:
            self._scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        try:
            self._flush_group()
        finally:
            self._schedule()

    def _flush_group(self) -> None:
        if not self._pending:
            return
        if self._failed is not None:
            self._fail(self._take(), StorageFailedError(str(self._failed)))
            return
        if not self._lock.acquire(blocking=False):  # a thread's own transaction is running
            self._retry_later()
            return
        try:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlcipher3.Error as exc:
                if not _is_busy(exc):
                    self._fail(self._take(), exc)
                    self._mend([exc])
                    return
                if self._busy_since is None:
                    self._busy_since = time.monotonic()
                if time.monotonic() - self._busy_since < BUSY_TIMEOUT_MS / 1000:
                    self._retry_later()
                    return
                self._busy_since = None
                self._fail(self._take(), StorageBusyError(str(exc)))
                return
            self._busy_since = None
            jobs = self._take()
            try:
                outcomes = self._run_units([job.fn for job in jobs])
                self._conn.execute("COMMIT")
            except _DamagedPage as damaged:
                self._redo_without(jobs, damaged)
                return
            except _TransactionLost as lost:  # rolled back by SQLite: nothing in this group was written
                self._fail(jobs, lost.cause)
                self._mend([lost.cause])
                return
            except Exception as exc:  # nothing in this group was written
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                self._fail(jobs, exc)
                self._mend([exc])
                return
            self._committed += 1
            commit = self._committed
        finally:
            self._lock.release()
        self._in_flight += 1
        loop = self._loop
        assert loop is not None
        self._syncer.request(commit, lambda error: _call_on(loop, self._settle, jobs, outcomes, error))

    def _redo_without(self, jobs: list[_Job], damaged: _DamagedPage) -> None:
        """A unit met a damaged page. The codec keeps that error on the connection, so nothing
        after it in the group could commit (SQLite may have rolled the group back already): the
        group is undone, the connection mended, that unit answered with the error, and the other
        units queued again, first, to run on the new connection. So a unit may run more than once;
        what it does outside its transaction must bear that, as when a caller tries it again."""
        if self._conn.in_transaction:
            with contextlib.suppress(sqlcipher3.Error):  # the mend closes the connection anyway
                self._conn.execute("ROLLBACK")
        self._mend([damaged.cause])
        self._fail([jobs[damaged.index]], damaged.cause)
        self._pending[:0] = [job for index, job in enumerate(jobs) if index != damaged.index]

    def _take(self) -> list[_Job]:
        jobs, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        return jobs

    def _retry_later(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            assert self._loop is not None
            self._loop.call_later(_RETRY_SECONDS, self._flush)

    def _settle(self, jobs: list[_Job], outcomes: list[tuple[bool, Any]], error: OSError | None) -> None:
        self._in_flight -= 1
        self._schedule()
        if error is not None:
            if _final(error):
                self._failed = error
            self._fail(jobs, StorageFailedError(str(error)))
        else:
            for job, (ok, value) in zip(jobs, outcomes, strict=True):
                if job.future.done():  # the caller went away (cancelled)
                    continue
                if ok:
                    job.future.set_result(value)
                else:
                    self._note(value)
                    job.future.set_exception(raisable(value))
        self._release_waiters()

    def _release_waiters(self) -> None:
        keep = []
        for target, waiter in self._waiters:
            if self._failed is not None and not waiter.done():
                waiter.set_exception(StorageFailedError(str(self._failed)))
            elif self._syncer.synced >= target:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                keep.append((target, waiter))
        self._waiters = keep

    def _fail(self, jobs: list[_Job], exc: BaseException) -> None:
        self._note(exc)
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(raisable(exc))

    # -- shared ------------------------------------------------------------------------------

    def _note(self, exc: BaseException, *, in_transaction: bool = True) -> None:
        """Remember a refusal for want of room (or of write permission), for `full`."""
        if _is_full(exc, in_transaction=in_transaction):
            self._full, self._refused_as = True, _refusal(exc)

    def _run_units(self, fns: list[Unit]) -> list[tuple[bool, Any]]:
        """Each unit in its own savepoint, so one that raises is undone alone. Some errors
        (SQLITE_FULL in a one-row write, SQLITE_IOERR) make SQLite roll back the whole transaction
        instead: the units before took their writes with it, so none may be answered as kept,
        and `ROLLBACK TO` would only fail ("no such savepoint") and hide the cause. A unit that
        met a damaged page stops the group (`_redo_without`)."""
        conn = self._conn
        outcomes: list[tuple[bool, Any]] = []
        for index, fn in enumerate(fns):
            conn.execute("SAVEPOINT unit")
            try:
                outcomes.append((True, fn(conn)))
                conn.execute("RELEASE unit")
            except BaseException as exc:  # the unit's own failure: undo only its writes
                if is_corrupt(exc):
                    raise _DamagedPage(index, exc) from exc
                if not conn.in_transaction:
                    raise _TransactionLost(exc) from exc
                conn.execute("ROLLBACK TO unit")
                conn.execute("RELEASE unit")
                outcomes.append((False, exc))
        return outcomes

    # -- the threads' side ---------------------------------------------------------------------

    def _locked_sync(self, fn: Callable[[Connection], T], *, transaction: bool) -> T:
        if self._failed is not None:
            raise StorageFailedError(str(self._failed))
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        with self._lock:
            conn = self._conn  # read under the lock: `_mend` may have replaced it meanwhile
            if transaction:
                while True:
                    try:
                        conn.execute("BEGIN IMMEDIATE")
                        break
                    except sqlcipher3.Error as exc:
                        if _is_full(exc):  # read-only files refuse even the transaction
                            self._note(exc)
                            raise StorageFullError(str(exc)) from exc
                        if not _is_busy(exc):
                            raise
                        if time.monotonic() > deadline:
                            raise StorageBusyError(str(exc)) from exc
                        time.sleep(_RETRY_SECONDS)
            try:
                result = fn(conn)
                if transaction:
                    conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._mend([exc])
                self._note(exc, in_transaction=transaction)
                if _is_full(exc, in_transaction=transaction):
                    raise StorageFullError(str(exc)) from exc
                raise
            self._committed += 1
            commit = self._committed
        self._wait_synced(commit)
        return result

    def _wait_synced(self, commit: int) -> None:
        done = threading.Event()
        failure: list[OSError] = []

        def synced(error: OSError | None) -> None:
            if error is not None:
                failure.append(error)
            done.set()

        self._syncer.request(commit, synced)
        done.wait()
        if failure and _final(failure[0]):
            self._failed = failure[0]
        if self._loop is not None:  # the loop's `durable()` callers, even one waiting as of now
            _call_on(self._loop, self._release_waiters)
        if failure:
            raise StorageFailedError(str(failure[0]))


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file is at `path` now (device, inode); None when there is none to be found."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _take_write_lock(conn: Connection) -> None:
    """Writes nothing: the writer's `BEGIN IMMEDIATE` around it is the test."""
    conn.execute("SELECT 1").fetchone()


class _Reader(sqlcipher3.Connection):  # type: ignore[misc]  # no stubs: untyped base
    """A read connection, which unlike SQLite's own type can be weakly referenced: a reader
    replaced (`Database.renew_readers`) closes once the last cursor reading from it lets go."""


class Database:
    """One SQLCipher database file: its writer and a read connection per thread."""

    def __init__(
        self,
        path: Path,
        key: bytes,
        *,
        name: str,
        on_damaged_page: Callable[[BaseException], None] | None = None,
    ) -> None:
        """`on_damaged_page`: see `Writer`."""
        self.path = path
        self._key = key
        self._local = threading.local()
        self._readers: weakref.WeakSet[Connection] = weakref.WeakSet()  # each thread's, for `close`
        self._lock = threading.Lock()
        self._readers_since = 0  # `renew_readers` counts up: a reader opened before is replaced
        self.writer = Writer(path, key, name=name, on_damaged_page=on_damaged_page)

    async def unready(self) -> str | None:
        """Why a write here would not be kept now ("unwritable", "missing", "replaced", "full",
        "read-only"),
        or None. A file removed or replaced on disk still takes writes through the descriptors
        this process holds, and they are gone at the next start: SQLite does not notice. After a
        full disk, only a commit that needs new pages shows there is room again (`has_room`).
        Last, the writer must get a write transaction (not locked out by another process)."""
        if self.writer.failure is not None:
            return "unwritable"
        if (moved := self.writer.moved()) is not None:
            return moved
        try:
            if self.writer.full and not await asyncio.to_thread(self.writer.has_room):
                return self.writer.refused_as
            await self.writer.run(_take_write_lock)
        except Exception as exc:  # whatever it is, this database cannot take a write now
            log.warning(
                "readiness: a write here failed",
                extra={"database": self.path.name, "exc_type": type(exc).__name__},
            )
            return "unwritable"
        return None

    def reader(self) -> Connection:
        """This thread's read connection; a new one after `renew_readers`, unless the old one is
        inside a read transaction (`snapshot`), which must end on the connection it began on."""
        local = self._local
        conn: Connection | None = getattr(local, "conn", None)
        if conn is not None and (local.since == self._readers_since or conn.in_transaction):
            return conn
        try:
            fresh = connect(self.path, self._key, page_mac=self.writer.page_mac, factory=_Reader)
        except DatabaseLockedError as exc:
            # The writer opened this file with this key: a reader that cannot read its first page
            # now meets a damaged page 1, not a wrong key. Raised as SQLite's own error it is
            # counted and logged as damage (`is_corrupt`), each time, not as a key refused.
            if isinstance(exc.__cause__, sqlcipher3.Error):
                raise exc.__cause__ from None
            raise
        fresh.execute("PRAGMA query_only = ON")
        # The connection replaced is not closed here: a cursor of this thread may still be reading
        # from it. It closes when nothing holds it any more.
        local.conn, local.since = fresh, self._readers_since
        with self._lock:
            self._readers.add(fresh)
        return fresh

    def renew_readers(self) -> None:
        """After a read met a page that fails SQLCipher's check (`is_corrupt`): the codec keeps
        that error on the connection, and each later read of a page not in its cache failed with
        it, other rows included, until a restart. Each thread's reader is replaced at its next
        read, so the damaged page fails only the reads that need it. The writer mends its own
        connection (`Writer._mend`)."""
        self._readers_since += 1

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """This thread's reader in one read transaction, for reads that must agree with each other:
        each statement on its own sees the newest commit, so counts over related tables taken one
        after another can disagree (a push delivered and opened between the two counts). Inside
        one already, the reads simply join it."""
        conn = self.reader()
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def checkpoint(self) -> bool:
        """Fold the WAL into the main file and truncate it, so deleted bytes leave the WAL (an
        erasure's key, an erased subject's rows). A reader in the middle of a read, here or in
        another process, holds back the frames its snapshot needs and SQLite then answers busy:
        tried again for up to ~0.3 s, since reads are short, and logged if it never folded, so an
        erasure is not taken for complete on disk when it is not. Returns whether it folded.
        A checkpoint that fails (an I/O error) is logged the same way, not raised: what it was to
        fold is committed already, and an erasure that raised here answered 500 and left its
        data-side half undone until it was asked again."""
        for wait in (*_TRUNCATE_WAITS, None):
            try:
                busy, _, _ = self.writer.run_alone(
                    lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                )
            except (sqlcipher3.Error, StorageFullError) as exc:  # an I/O error; a full disk
                log.error(
                    "a checkpoint failed: the WAL was not truncated; what was deleted stays in it until "
                    "a later checkpoint folds it",
                    extra={"database": self.path.name, "error": str(exc)},
                )
                return False
            if not busy:
                return True
            if wait is not None:
                time.sleep(wait)
        log.warning(
            "a reader held the WAL: it was not truncated; what was deleted stays in it until a later "
            "checkpoint folds it",
            extra={"database": self.path.name},
        )
        return False

    def close(self) -> None:
        self.writer.close()
        with self._lock:
            for conn in list(self._readers):
                conn.close()
            self._readers.clear()
