"""Connections to the SQLCipher databases, and the one writer each database has.

All writes go through `Writer`: a thread that owns the only write connection and runs
units of work (`fn(conn) -> result`) in `BEGIN IMMEDIATE` transactions. Units that arrive
while a transaction is open wait and are then run together in the next one, each inside its
own SAVEPOINT, and committed once — group commit. A unit that raises is rolled back alone; a
commit that fails fails every unit in it. Nobody is answered before their commit is durable
(`synchronous=FULL`), so an answer always means the data is on disk.

Reads use one connection per thread (`Database.reader()`), which in WAL mode never waits
for the writer.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import sqlcipher3

__all__ = ["Connection", "Database", "DatabaseLockedError", "Writer", "connect"]

T = TypeVar("T")
Connection = sqlite3.Connection
Unit = Callable[[Connection], Any]

BUSY_TIMEOUT_MS = 5000


class DatabaseLockedError(Exception):
    """The database could not be opened with the given key (wrong key or not a database)."""


def connect(path: Path, key: bytes) -> Connection:
    """Open a SQLCipher connection keyed with a raw 256-bit key and set our pragmas."""
    conn: Connection = sqlcipher3.connect(
        str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher3.DatabaseError as exc:
        conn.close()
        raise DatabaseLockedError(f"cannot open {path.name}: wrong key or not a database") from exc
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: decrypted pages stay cached
    return conn


class _Job:
    __slots__ = ("fn", "future", "transaction")

    def __init__(self, fn: Unit, transaction: bool) -> None:
        self.fn = fn
        self.transaction = transaction
        self.future: Future[Any] = Future()


_STOP = object()


class Writer:
    """The single writer of one database; see the module docstring."""

    def __init__(self, conn: Connection, *, name: str, max_batch: int = 512) -> None:
        self._conn = conn
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=f"writer-{name}", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[Connection], T], *, transaction: bool = True) -> Future[T]:
        """Queue a unit of work; `transaction=False` runs it alone, outside any transaction
        (for pragmas such as `wal_checkpoint` that cannot run inside one)."""
        job = _Job(fn, transaction)
        self._queue.put(job)
        return job.future

    def run_sync(self, fn: Callable[[Connection], T]) -> T:
        return self.submit(fn).result()

    async def run(self, fn: Callable[[Connection], T]) -> T:
        return await asyncio.wrap_future(self.submit(fn))

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._conn.close()

    def _loop(self) -> None:
        held: _Job | object | None = None
        while True:
            first = held if held is not None else self._queue.get()
            held = None
            if first is _STOP:
                return
            assert isinstance(first, _Job)
            if not first.transaction:
                self._run_alone(first)
                continue
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(item, _Job) or not item.transaction:
                    held = item
                    break
                batch.append(item)
            self._commit(batch)

    def _run_alone(self, job: _Job) -> None:
        try:
            job.future.set_result(job.fn(self._conn))
        except BaseException as exc:
            job.future.set_exception(exc)

    def _commit(self, batch: list[_Job]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT unit")
                try:
                    outcomes.append((True, job.fn(conn)))
                    conn.execute("RELEASE unit")
                except BaseException as exc:  # the unit's own failure: undo only its writes
                    conn.execute("ROLLBACK TO unit")
                    conn.execute("RELEASE unit")
                    outcomes.append((False, exc))
            conn.execute("COMMIT")
        except Exception as exc:  # BEGIN or COMMIT failed: nothing in this batch was written
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in batch:
                job.future.set_exception(exc)
            return
        for job, (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)


class Database:
    """One SQLCipher database file: its writer and a read connection per thread."""

    def __init__(self, path: Path, key: bytes, *, name: str) -> None:
        self.path = path
        self._key = key
        self._local = threading.local()
        self._readers: list[Connection] = []
        self._lock = threading.Lock()
        self.writer = Writer(connect(path, key), name=name)

    def reader(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, self._key)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
        return conn

    def checkpoint(self) -> None:
        """Fold the WAL into the main file and truncate it, so deleted bytes leave the WAL."""
        self.writer.submit(
            lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone(), transaction=False
        ).result()

    def close(self) -> None:
        self.writer.close()
        with self._lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
