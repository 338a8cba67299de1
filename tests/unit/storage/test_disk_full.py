"""The writer on a full disk, simulated with `PRAGMA max_page_count` at the current page count
(SQLite's SQLITE_FULL, the same error a real ENOSPC gives): the write that hit it fails with
StorageFullError, no unit is answered as kept when SQLite rolled its transaction back, and the
writer takes writes again once there is room.

SQLite undoes only the failing statement when it keeps a statement journal (a write of many
rows), and the whole transaction otherwise (a one-row write): both are covered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlcipher3

from storage.connections import Connection, connect
from storage.db import Database
from storage.failures import StorageFailedError, StorageFullError
from storage.writer import Writer

KEY = os.urandom(32)
WAIT = 5.0  # seconds any await may take before the test calls it a hang
NO_LIMIT = 1073741823  # SQLite's default max_page_count

# One row too big for the pages the database has: overflow pages are needed, and a one-row
# INSERT keeps no statement journal, so SQLite rolls back the whole transaction.
BIG_ROW = "INSERT INTO t (tag) VALUES (hex(randomblob(100000)))"
# Many rows in one statement: SQLite keeps a statement journal and undoes only this statement.
MANY_ROWS = (
    "INSERT INTO t (tag) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) "
    "SELECT printf('bulk-%d-%s', i, hex(randomblob(200))) FROM n"
)


def _insert(tag: str) -> Callable[[Connection], int]:
    def unit(conn: Connection) -> int:
        return int(conn.execute("INSERT INTO t (tag) VALUES (?) RETURNING id", (tag,)).fetchone()[0])

    return unit


def _execute(sql: str) -> Callable[[Connection], None]:
    def unit(conn: Connection) -> None:
        conn.execute(sql)

    return unit


def _tags(path: Path) -> list[str]:
    """The short rows as a fresh connection sees them, in insertion order."""
    conn = connect(path, KEY)
    try:
        return [row[0] for row in conn.execute("SELECT tag FROM t WHERE length(tag) < 100 ORDER BY id")]
    finally:
        conn.close()


def _fill(writer: Writer) -> None:
    """No page may be added to the database from now on: it is full."""
    writer.run_alone(
        lambda conn: conn.execute(
            f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}"
        ).fetchone()
    )


def _free(writer: Writer) -> None:
    writer.run_alone(lambda conn: conn.execute(f"PRAGMA max_page_count = {NO_LIMIT}").fetchone())


def _group(writer: Writer, *units: Callable[[Connection], object]) -> list[object]:
    """Run the units in one group commit (submitted in one turn of the loop); each one's answer."""

    async def scenario() -> list[object]:
        gathered = asyncio.gather(*(writer.run(unit) for unit in units), return_exceptions=True)
        return list(await asyncio.wait_for(gathered, WAIT))

    return asyncio.run(scenario())


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "w.db"


@pytest.fixture
def writer(path: Path) -> Iterator[Writer]:
    writer = Writer(path, KEY, name="test")
    writer.run_sync(lambda conn: conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, tag TEXT NOT NULL)"))
    yield writer
    writer.close()


def test_a_full_disk_that_rolls_back_the_transaction_fails_the_whole_group_then_heals(
    writer: Writer, path: Path
) -> None:
    """The unit before the full one ran and was rolled back with the transaction, the one after
    never ran: neither may be answered as kept. The error says the disk is full, not "no such
    savepoint" from a ROLLBACK TO on a transaction that is gone."""
    _fill(writer)
    before, full, after = _group(writer, _insert("before"), _execute(BIG_ROW), _insert("after"))
    assert isinstance(full, StorageFullError), repr(full)
    assert "full" in str(full)
    assert isinstance(before, StorageFullError), repr(before)
    assert isinstance(after, StorageFullError), repr(after)
    assert isinstance(full, StorageFailedError)  # so the HTTP layer answers it with its 503
    assert _tags(path) == []

    _free(writer)
    assert all(isinstance(result, int) for result in _group(writer, _insert("a"), _insert("b")))
    assert _group(writer, _execute(BIG_ROW)) == [None]
    assert writer.failure is None  # a full disk ends nothing, unlike a failed fsync
    assert _tags(path) == ["a", "b"]


def test_a_full_disk_that_undoes_one_statement_fails_only_that_unit(writer: Writer, path: Path) -> None:
    _fill(writer)
    before, full, after = _group(writer, _insert("before"), _execute(MANY_ROWS), _insert("after"))
    assert isinstance(full, StorageFullError), repr(full)
    assert isinstance(before, int)
    assert isinstance(after, int)
    assert _tags(path) == ["before", "after"]

    _free(writer)
    assert _group(writer, _execute(MANY_ROWS)) == [None]


def test_run_sync_on_a_full_disk_raises_storage_full_and_works_once_freed(writer: Writer, path: Path) -> None:
    _fill(writer)
    with pytest.raises(StorageFullError):
        writer.run_sync(_execute(BIG_ROW))
    with pytest.raises(StorageFullError):
        writer.run_sync(_execute(MANY_ROWS))
    _free(writer)
    writer.run_sync(_insert("later"))
    assert _tags(path) == ["later"]


@contextlib.contextmanager
def _file_size_limit(path: Path) -> Iterator[None]:
    """No file may grow past a page more than the main file has now, the WAL included (EFBIG,
    which SQLite reports as SQLITE_IOERR, as it does a quota or a failing disk). Python ignores
    the SIGXFSZ."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 4096, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_write_the_kernel_refuses_is_a_full_disk_but_a_failed_checkpoint_is_not(
    writer: Writer, path: Path
) -> None:
    """A transaction's SQLITE_IOERR was undone like a full disk's: StorageFullError, `full`. A
    checkpoint's is not a write refused: what it copies was kept, and its IOERR may be a failed
    fsync; said `full`, an erasure already done answered "not kept"."""
    writer.run_sync(_execute(BIG_ROW))  # in the WAL, for the checkpoint to copy into the main file
    with _file_size_limit(path):
        with pytest.raises(StorageFullError):
            writer.run_sync(_execute(BIG_ROW))
        assert writer.full
        writer.run_sync(lambda conn: None)  # nothing to write: works
        with pytest.raises(sqlcipher3.OperationalError) as failed:
            writer.run_alone(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
    assert not isinstance(failed.value, StorageFailedError)
    assert writer.has_room()
    assert not writer.full


def test_a_checkpoint_that_fails_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An erasure checkpoints once its rows are deleted and committed; a checkpoint's I/O error
    raised through it, answering 500 with its data-side half left undone."""
    db = Database(tmp_path / "c.db", KEY, name="test")
    try:
        db.writer.run_sync(lambda conn: conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, tag TEXT)"))
        db.writer.run_sync(_execute(BIG_ROW))
        with _file_size_limit(db.path), caplog.at_level(logging.ERROR, logger="storage.db"):
            assert db.checkpoint() is False
        assert "a checkpoint failed" in caplog.text
        assert db.checkpoint() is True  # room again: it folds
    finally:
        db.close()


def test_a_checkpoint_on_a_full_disk_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a full disk the writer gives a checkpoint's SQLITE_FULL as StorageFullError, which the
    I/O error's fix let through. (`max_page_count` cannot refuse a checkpoint, whose pages are
    counted already, so the writer's answer is given here.)"""
    db = Database(tmp_path / "c.db", KEY, name="test")

    def full(fn: object) -> object:
        raise StorageFullError("database or disk is full")

    try:
        monkeypatch.setattr(db.writer, "run_alone", full)
        with caplog.at_level(logging.ERROR, logger="storage.db"):
            assert db.checkpoint() is False
        assert "a checkpoint failed" in caplog.text
    finally:
        monkeypatch.undo()
        db.close()
