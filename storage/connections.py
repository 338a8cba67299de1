"""Connections to the SQLCipher files: the key, the page MAC, the pragmas, and the small tools
every unit's SQL uses (`savepoint`, `in_chunks`, `when_free`).

A connection is opened with a raw 256-bit key, in WAL mode, `secure_delete` on (deleted bytes
are overwritten, not left in free pages), a page cache per connection and one memory budget for
the process. Its reads and writes go through `storage.db.Database` (a reader per thread, one
writer); `connect` alone is for tools and the writer's own threads.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlcipher3

from storage.failures import DatabaseLockedError, StorageBusyError, is_busy

__all__ = [
    "BUSY_TIMEOUT_MS",
    "PAGE_CACHE_KIB",
    "PAGE_MAC",
    "SHA256_PAGES",
    "SHA512_PAGES",
    "SQLITE_MEMORY_BUDGET",
    "STARTUP_WAIT_SECONDS",
    "Connection",
    "connect",
    "faster_page_mac",
    "in_chunks",
    "page_mac_of",
    "quiet_cipher_log",
    "savepoint",
    "when_free",
]


T = TypeVar("T")


Connection = sqlite3.Connection


BUSY_TIMEOUT_MS = 5000


PAGE_CACHE_KIB = 64 * 1024  # per connection: decrypted pages stay cached


# For SQLite's memory in the whole process, whatever the number of connections: a reader is
# opened per thread, so the per-connection caches alone put no bound on the total. Past this,
# SQLite recycles cached pages instead of allocating more (a soft limit: it never fails a query).
# Four connections do the hot work (each database's writer and the loop thread's reader).
SQLITE_MEMORY_BUDGET = 4 * PAGE_CACHE_KIB * 1024


STARTUP_WAIT_SECONDS = 120.0


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
        # With the path as the error's file name, so a command names the setting that gave it.
        cannot = "" if os.access(path.parent, os.W_OK) else f" ({path.parent} cannot be written)"
        raise OSError(errno.EIO, f"cannot open {path.name}: {exc}{cannot}", str(path)) from exc
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
            if not is_busy(exc):
                raise
            if time.monotonic() > deadline:
                raise StorageBusyError(f"another process held the write lock for {seconds:.0f} s") from exc
            time.sleep(0.01)
