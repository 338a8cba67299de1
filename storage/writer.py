"""The one writer each database has: every write goes through it, in group commits.

`Writer` owns the only write connection and runs units of work (`fn(conn) -> result`) in
`BEGIN IMMEDIATE` transactions. Units submitted from the event loop (`await writer.run(fn)`)
are gathered — every unit that arrives within one turn of the loop, or while the previous
commit waits for its fsync — and run in one transaction, each inside its own SAVEPOINT,
committed once: group commit. A unit that raises is rolled back alone; a commit that fails
fails every unit in it, and so does a unit whose error made SQLite roll back the whole
transaction itself (a full disk mostly), since the units before it went with it. A unit that
reads a damaged page (`is_corrupt`) fails alone: the others of its group run again in the next.

A full disk (SQLITE_FULL) reaches callers as `StorageFullError`: that write is not kept, and
writes succeed again once space is freed. So does a write the kernel refused otherwise, which
SQLite reports as SQLITE_IOERR: a disk quota or the file-size limit reached (EDQUOT, EFBIG), an
I/O error. The writer remembers it (`Writer.full`) until a small commit that needs new pages
succeeds (`Writer.has_room`), so readiness can say so.

The SQL runs on the event loop thread and each commit's fsync on the sync thread (`storage.wal`):
with a writer thread, every SQLite call on either thread handed the GIL to the other (a context
switch each on a one-core server), which cost more than the SQL itself.

`run_sync` is the same for threads without a loop (CLI, tools, tests): its own transaction,
answered after its own fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import sqlcipher3

from storage import connections, wal
from storage.connections import Connection, connect, page_mac_of
from storage.failures import (
    DatabaseLockedError,
    StorageBusyError,
    StorageFailedError,
    StorageFullError,
    is_busy,
    is_corrupt,
    is_full,
    raisable,
    refusal_kind,
)
from storage.wal import Syncer, sync_failure_is_final

__all__ = ["Unit", "Writer", "wrote_in_context"]

log = logging.getLogger(__name__)


T = TypeVar("T")


Unit = Callable[[Connection], Any]


_RETRY_SECONDS = 0.002


# The room probe writes at most this many pages (1 MiB at SQLCipher's 4 KiB): past that many free
# pages in the file, it proves room for a write that size rather than that the file can grow.
ROOM_PROBE_MAX_PAGES = 256


wrote_in_context: contextvars.ContextVar[bool] = contextvars.ContextVar("wrote_in_context", default=False)


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


def _call_on(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    """Run `fn` on `loop` from another thread; a loop that has closed has nobody left to tell."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


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
        self._syncer = Syncer(path, key, self.page_mac, name, self._lock)
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
        conn.execute(f"PRAGMA journal_size_limit = {wal.CHECKPOINT_WAL_BYTES}")
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
        """A write was refused for want of room (`is_full`) and `has_room` has not found room
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
                if not is_busy(exc):
                    self._fail(self._take(), exc)
                    self._mend([exc])
                    return
                if self._busy_since is None:
                    self._busy_since = time.monotonic()
                if time.monotonic() - self._busy_since < connections.BUSY_TIMEOUT_MS / 1000:
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
            if sync_failure_is_final(error):
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
        if is_full(exc, in_transaction=in_transaction):
            self._full, self._refused_as = True, refusal_kind(exc)

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
        deadline = time.monotonic() + connections.BUSY_TIMEOUT_MS / 1000
        with self._lock:
            conn = self._conn  # read under the lock: `_mend` may have replaced it meanwhile
            if transaction:
                while True:
                    try:
                        conn.execute("BEGIN IMMEDIATE")
                        break
                    except sqlcipher3.Error as exc:
                        if is_full(exc):  # read-only files refuse even the transaction
                            self._note(exc)
                            raise StorageFullError(str(exc)) from exc
                        if not is_busy(exc):
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
                if is_full(exc, in_transaction=transaction):
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
        if failure and sync_failure_is_final(failure[0]):
            self._failed = failure[0]
        if self._loop is not None:  # the loop's `durable()` callers, even one waiting as of now
            _call_on(self._loop, self._release_waiters)
        if failure:
            raise StorageFailedError(str(failure[0]))
