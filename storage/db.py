"""Each SQLCipher database file: its one writer (`storage.writer`) and a read connection per thread.

Reads use one connection per thread (`Database.reader()`), which in WAL mode never waits for
the writer, and may see a commit before its fsync; `Writer.durable()` lets an answer that
depends on such a read wait for it. The app awaits it before answering any request that wrote
nothing (`wrote_in_context`): one that wrote is answered after its own commit's fsync, which
covers everything it could have read before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlcipher3

from storage.connections import Connection, connect
from storage.failures import DatabaseLockedError, StorageFullError
from storage.writer import Writer

__all__ = ["Database"]

log = logging.getLogger(__name__)


_TRUNCATE_WAITS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.1)


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
