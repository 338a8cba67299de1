"""What the storage layer's errors mean, and what a unit's caller is told of them.

SQLite reports everything through a few error codes on its own exception classes (sqlcipher3's,
not the standard library's). These say which of them is a damaged page, a lock another process
holds, or a write the disk refused, and which names (`StorageFullError`, `StorageBusyError`) the
HTTP layer answers 503 "retry later" rather than 500.
"""

from __future__ import annotations

import sqlcipher3

__all__ = [
    "DatabaseLockedError",
    "StorageBusyError",
    "StorageFailedError",
    "StorageFullError",
    "is_busy",
    "is_corrupt",
    "is_database_error",
    "is_full",
    "raisable",
    "refusal_kind",
]


class DatabaseLockedError(Exception):
    """The database could not be opened with the given key (wrong key or not a database)."""


class StorageFailedError(Exception):
    """An fsync failed. What the kernel kept is unknown after that (a failed fsync may drop the
    dirty pages), so the writer refuses all further writes until the process restarts.
    `StorageFullError` and `StorageBusyError` are the kinds that do not end the writer."""


class StorageFullError(StorageFailedError):
    """The disk (or `max_page_count`) is full, or refused the write (`is_full`): this write was
    rolled back and not kept. Unlike its parent it ends nothing: SQLite undid the write, and the
    next one succeeds once there is space.
    A StorageFailedError so that the HTTP layer answers it the same way, 503 "retry later",
    rather than a bare 500."""


class StorageBusyError(StorageFailedError):
    """Another process held the database's write lock past the busy timeout: this write was not
    kept, and it ends nothing (the next write may well get the lock). A StorageFailedError so
    that the HTTP layer answers it 503 "retry later" rather than a bare 500."""


def is_corrupt(exc: BaseException) -> bool:
    """SQLITE_CORRUPT, or SQLITE_NOTADB from a damaged page after the connection opened."""
    code = getattr(exc, "sqlite_errorcode", None)
    damaged = (sqlcipher3.SQLITE_CORRUPT, sqlcipher3.SQLITE_NOTADB)
    return isinstance(exc, sqlcipher3.Error) and isinstance(code, int) and code & 0xFF in damaged


def is_busy(exc: sqlcipher3.Error) -> bool:
    """SQLITE_BUSY: another connection holds the write lock (sqlcipher3's exceptions are its
    own classes, not the standard library's `sqlite3` ones)."""
    return isinstance(exc, sqlcipher3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def is_full(exc: BaseException, *, in_transaction: bool = True) -> bool:
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


def refusal_kind(exc: BaseException) -> str:
    """How readiness names a refused write (`is_full`)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return "read-only" if isinstance(code, int) and code & 0xFF == sqlcipher3.SQLITE_READONLY else "full"


def is_database_error(exc: BaseException) -> bool:
    """An error of the database itself (SQLite's own, or the writer's name for one), not of the
    data a unit read: what a unit must let through for the writer to fail and note it."""
    return isinstance(exc, sqlcipher3.Error | StorageFullError | StorageFailedError | StorageBusyError)


def raisable(exc: BaseException) -> BaseException:
    """What a unit's caller is told: a full disk as StorageFullError (SQLite's own error would be
    a bare 500); and a future cannot carry StopIteration (a unit calling `next()` on no rows
    raises it)."""
    if is_full(exc):
        full = StorageFullError(str(exc))
        full.__cause__ = exc
        return full
    if isinstance(exc, StopIteration):
        wrapped = RuntimeError("a unit of work raised StopIteration")
        wrapped.__cause__ = exc
        return wrapped
    return exc
