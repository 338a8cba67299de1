"""Durability and checkpoints: the two threads each database's writer has beside the event loop.

Durability is ours, not SQLite's. The write connection runs with `synchronous=NORMAL`, so
COMMIT only writes the WAL; the sync thread (`Syncer`) then `fdatasync`s the WAL file, and only
after that are the units' callers answered, so an answer still means the data is on disk. While
one fsync runs the next group commits, so commits pipeline. Checkpoints run on a thread and
connection of their own (`_Checkpointer`), off the loop and off the sync thread, and hold no lock
while writes pause between groups.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import sqlcipher3

from storage.connections import Connection, connect
from storage.failures import DatabaseLockedError

__all__ = ["CHECKPOINT_WAL_BYTES", "Syncer", "sync_failure_is_final"]

log = logging.getLogger(__name__)


# Fold the WAL into the file past this size. Small, because a checkpoint's copy and fsync slow
# the commits' own fsyncs while it runs: at 2 MiB the stalls are short (docs/performance-history.md,
# "Checkpoints without the write lock"); 16 MiB made the p99 at half load.
CHECKPOINT_WAL_BYTES = 2 * 1024 * 1024


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


def sync_failure_is_final(error: OSError) -> bool:
    """Whether a failed sync fails every commit after it (`Syncer`): all but a passing want of
    file descriptors, which fails only the commits that sync was for."""
    return error.errno not in _NO_DESCRIPTOR


class Syncer:
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
                if error is None or sync_failure_is_final(error):
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


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file is at `path` now (device, inode); None when there is none to be found."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino
