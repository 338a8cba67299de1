"""The writer against real SQLCipher files: group commit, a unit rolled back alone, answers only
after the WAL's fsync, a failed fsync poisoning the writer, waiting on a lock held by another
connection without blocking the loop, threads and the loop writing together, `durable()`,
`wrote_in_context`, and what readers and a reopened database see.

The only thing replaced is `os.fdatasync` (the OS boundary), to watch, delay or fail the syncs."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlcipher3
from support import out_of_descriptors, rot_last_page

import storage.connections
import storage.failures
import storage.wal
from storage.connections import Connection, connect
from storage.db import Database
from storage.failures import StorageFailedError
from storage.writer import Writer, wrote_in_context

T = TypeVar("T")
KEY = os.urandom(32)
REAL_FDATASYNC = os.fdatasync
# Seconds any await may take before the test calls it a hang: a loaded machine's pauses reach seconds.
WAIT = 10.0


def _run(scenario: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(scenario)


async def _within(awaitable: Awaitable[T], what: str) -> T:
    try:
        return await asyncio.wait_for(awaitable, WAIT)
    except TimeoutError:
        pytest.fail(f"{what} did not finish within {WAIT} s")


def _create(conn: Connection) -> None:
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, tag TEXT NOT NULL UNIQUE)")


def _insert(tag: str) -> Callable[[Connection], int]:
    def unit(conn: Connection) -> int:
        return int(conn.execute("INSERT INTO t (tag) VALUES (?) RETURNING id", (tag,)).fetchone()[0])

    return unit


def _tags(path: Path) -> list[str]:
    """The rows as a fresh connection sees them, in insertion order."""
    conn = connect(path, KEY)
    try:
        return [row[0] for row in conn.execute("SELECT tag FROM t ORDER BY id")]
    finally:
        conn.close()


class Syncs:
    """Records each `os.fdatasync` in `events`; `gate` (when set up) holds every sync until released
    (or for WAIT at most, so a failing test cannot hang), `fail_next` makes the next syncs raise EIO."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.files: list[str] = []
        self.calls = 0
        self.fail_next = 0
        self.entered = threading.Event()
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        with self._lock:
            self.calls += 1
            self.events.append("sync-start")
            self.files.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
            fail = self.fail_next > 0
            if fail:
                self.fail_next -= 1
        self.entered.set()
        if self.gate is not None:
            # never raise here: it would kill the sync thread and hang whoever waits on it
            self.gate.wait(WAIT)
        if fail:
            self.events.append("sync-failed")
            raise OSError(errno.EIO, "Input/output error (injected)")
        REAL_FDATASYNC(fd)
        self.events.append("sync-end")

    def synced_after(self, event: str) -> bool:
        """Whether a sync started after `event` and finished (the list as it is now)."""
        later = self.events[self.events.index(event) :]
        return "sync-start" in later and "sync-end" in later[later.index("sync-start") :]

    async def until_entered(self) -> None:
        deadline = time.monotonic() + WAIT
        while not self.entered.is_set():
            assert time.monotonic() < deadline, "no fdatasync started"
            await asyncio.sleep(0.001)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "w.db"


@pytest.fixture
def writer(path: Path) -> Iterator[Writer]:
    writer = Writer(path, KEY, name="test")
    writer.run_sync(_create)
    yield writer
    writer.close()


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch, writer: Writer) -> Syncs:
    """Installed after the table exists, so it only sees the test's own syncs."""
    recorder = Syncs()
    monkeypatch.setattr(os, "fdatasync", recorder)
    return recorder


# -- group commit --------------------------------------------------------------------------------


def test_units_of_one_loop_turn_share_one_transaction_and_one_fsync(
    writer: Writer, path: Path, syncs: Syncs
) -> None:
    outsider = connect(path, KEY)  # sees only what is committed

    def unit(i: int) -> Callable[[Connection], tuple[int, int, bool]]:
        def fn(conn: Connection) -> tuple[int, int, bool]:
            mine = conn.execute("SELECT count(*) FROM t").fetchone()[0]
            committed = outsider.execute("SELECT count(*) FROM t").fetchone()[0]
            conn.execute("INSERT INTO t (tag) VALUES (?)", (f"row-{i}",))
            return mine, committed, conn.in_transaction

        return fn

    async def scenario() -> list[tuple[int, int, bool]]:
        return await _within(asyncio.gather(*(writer.run(unit(i)) for i in range(50))), "the group")

    try:
        seen = _run(scenario())
    finally:
        outsider.close()
    assert [mine for mine, _, _ in seen] == list(range(50))  # one after the other, each seeing the last
    assert [committed for _, committed, _ in seen] == [0] * 50  # none committed before the last ran
    assert all(in_transaction for _, _, in_transaction in seen)
    assert syncs.calls == 1
    assert _tags(path) == [f"row-{i}" for i in range(50)]


def test_a_unit_that_raises_is_rolled_back_alone(writer: Writer, path: Path) -> None:
    def half_then_fail(conn: Connection) -> None:
        conn.execute("INSERT INTO t (tag) VALUES ('partial')")
        raise ValueError("unit failed")

    async def scenario() -> tuple[object, ...]:
        return await _within(
            asyncio.gather(
                writer.run(_insert("before")),
                writer.run(half_then_fail),
                writer.run(_insert("duplicate")),
                writer.run(_insert("duplicate")),  # IntegrityError from SQLite itself
                writer.run(_insert("after")),
                return_exceptions=True,
            ),
            "the group",
        )

    before, failed, first, duplicate, after = _run(scenario())
    assert isinstance(before, int)
    assert isinstance(first, int)
    assert isinstance(after, int)
    assert isinstance(failed, ValueError)
    assert str(failed) == "unit failed"
    assert isinstance(duplicate, sqlcipher3.IntegrityError)
    assert _tags(path) == ["before", "duplicate", "after"]


def test_a_unit_raising_stop_iteration_still_answers_its_group(writer: Writer, path: Path) -> None:
    """`next(conn.execute(...))` on no rows raises StopIteration inside a unit. Its caller must get
    an exception and the other units of the group their answers — not hang."""

    def first_row_of_nothing(conn: Connection) -> object:
        return next(iter(conn.execute("SELECT tag FROM t WHERE tag = 'missing'")))

    async def scenario() -> tuple[object, ...]:
        return await _within(
            asyncio.gather(
                writer.run(_insert("before")),
                writer.run(first_row_of_nothing),
                writer.run(_insert("after")),
                return_exceptions=True,
            ),
            "the group with a StopIteration unit",
        )

    before, failed, after = _run(scenario())
    assert isinstance(before, int)
    assert isinstance(failed, Exception)
    assert isinstance(after, int)
    assert _tags(path) == ["before", "after"]


# -- durability ------------------------------------------------------------------------------------


def test_units_arriving_while_an_fsync_runs_wait_for_it_and_commit_together(
    writer: Writer, path: Path, syncs: Syncs
) -> None:
    """Group commit under load: while one commit's fsync is out, later units are not committed
    each on their own turn but gathered, and go in one transaction once that fsync is done."""
    syncs.gate = gate = threading.Event()
    seen: list[int] = []

    def counting(tag: str) -> Callable[[Connection], int]:
        def unit(conn: Connection) -> int:
            seen.append(int(conn.execute("SELECT count(*) FROM t").fetchone()[0]))
            return _insert(tag)(conn)

        return unit

    async def scenario() -> None:
        first = asyncio.ensure_future(writer.run(_insert("first")))
        await syncs.until_entered()  # "first" is committed; its fsync is held
        later = []
        for i in range(5):  # five separate turns of the loop
            later.append(asyncio.ensure_future(writer.run(counting(f"later-{i}"))))
            await asyncio.sleep(0.005)
        outside = connect(path, KEY)
        try:  # nothing of the later units is committed while the fsync is out
            assert outside.execute("SELECT count(*) FROM t").fetchone()[0] == 1
        finally:
            outside.close()
        gate.set()
        await _within(asyncio.gather(first, *later), "the held and the later units")

    _run(scenario())
    assert seen == [1, 2, 3, 4, 5]  # one transaction: each saw the ones before it
    assert syncs.calls == 2
    assert _tags(path) == ["first", *(f"later-{i}" for i in range(5))]


def test_run_answers_only_after_an_fsync_that_started_after_the_unit(
    writer: Writer, path: Path, syncs: Syncs
) -> None:
    def unit(conn: Connection) -> None:
        syncs.events.append("unit")
        _insert("x")(conn)

    async def scenario() -> bool:
        await _within(writer.run(unit), "run")
        return syncs.synced_after("unit")

    assert _run(scenario())
    assert set(syncs.files) == {f"{path.name}-wal"}


def test_run_sync_answers_only_after_an_fsync_that_started_after_the_unit(
    writer: Writer, path: Path, syncs: Syncs
) -> None:
    def unit(conn: Connection) -> None:
        syncs.events.append("unit")
        _insert("x")(conn)

    writer.run_sync(unit)
    assert syncs.synced_after("unit")
    assert set(syncs.files) == {f"{path.name}-wal"}


def test_run_waits_for_a_slow_fsync(writer: Writer, syncs: Syncs) -> None:
    syncs.gate = gate = threading.Event()

    async def scenario() -> None:
        task = asyncio.ensure_future(writer.run(_insert("x")))
        await syncs.until_entered()
        await asyncio.sleep(0.05)
        assert not task.done()  # committed, but not yet on disk
        gate.set()
        await _within(task, "run after the fsync")

    _run(scenario())


def test_a_failed_fsync_fails_the_group_and_every_later_write(
    writer: Writer, path: Path, syncs: Syncs, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs.fail_next = 1

    async def scenario() -> tuple[object, ...]:
        return await _within(
            asyncio.gather(writer.run(_insert("a")), writer.run(_insert("b")), return_exceptions=True),
            "the group",
        )

    outcomes = _run(scenario())
    assert all(isinstance(outcome, StorageFailedError) for outcome in outcomes), outcomes
    monkeypatch.setattr(os, "fdatasync", REAL_FDATASYNC)  # the disk is fine again: too late

    async def later() -> None:
        with pytest.raises(StorageFailedError):
            await _within(writer.run(_insert("later")), "a later run")

    _run(later())
    with pytest.raises(StorageFailedError):
        writer.run_sync(_insert("later-sync"))
    with pytest.raises(StorageFailedError):
        writer.run_alone(lambda conn: None)
    assert "later" not in _tags(path)
    assert "later-sync" not in _tags(path)


def test_a_failed_run_sync_fsync_fails_later_runs(
    writer: Writer, syncs: Syncs, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs.fail_next = 1
    with pytest.raises(StorageFailedError):
        writer.run_sync(_insert("a"))
    monkeypatch.setattr(os, "fdatasync", REAL_FDATASYNC)

    async def later() -> None:
        with pytest.raises(StorageFailedError):
            await _within(writer.run(_insert("later")), "a later run")

    _run(later())


def test_a_group_committed_while_a_failing_fsync_runs_is_not_acknowledged(
    writer: Writer, syncs: Syncs
) -> None:
    """Group A's fsync fails; group B committed (into the same WAL, after A's frames) while that
    fsync ran. A failed fsync may drop A's pages, and WAL recovery stops at the first missing
    frame, so B is no safer than A: its caller must get StorageFailedError, not success."""
    syncs.gate = gate = threading.Event()
    syncs.fail_next = 1

    async def scenario() -> object:
        group_a = asyncio.ensure_future(writer.run(_insert("a")))
        await syncs.until_entered()  # A committed; its fsync is running (held by the gate)
        group_b = asyncio.ensure_future(writer.run(_insert("b")))
        await asyncio.sleep(0.02)  # B's turn: it commits while A's fsync is still out
        gate.set()  # A's fsync now fails; B's (a later one) succeeds
        outcomes = await _within(asyncio.gather(group_a, group_b, return_exceptions=True), "the two groups")
        assert isinstance(outcomes[0], StorageFailedError)
        return outcomes[1]

    assert isinstance(_run(scenario()), StorageFailedError)


def test_durable_after_a_failed_fsync_raises_instead_of_hanging(writer: Writer, syncs: Syncs) -> None:
    syncs.fail_next = 1

    async def scenario() -> None:
        with pytest.raises(StorageFailedError):
            await _within(writer.run(_insert("a")), "run")
        with pytest.raises(StorageFailedError):
            await _within(writer.durable(), "durable() after a failed fsync")

    _run(scenario())


# -- locks -------------------------------------------------------------------------------------


def test_a_lock_held_by_another_connection_is_waited_out_without_blocking_the_loop(
    writer: Writer, path: Path
) -> None:
    other = connect(path, KEY)

    async def scenario() -> None:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t (tag) VALUES ('other')")
        task = asyncio.ensure_future(writer.run(_insert("mine")))
        gaps = []
        last = time.monotonic()
        for _ in range(15):
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
        assert not task.done()  # still waiting for the other connection
        # A writer that waited inside SQLite would hold the loop for the whole busy timeout (5 s);
        # the bound is far from that and from a loaded host's scheduling delays (one of 50 ms
        # failed a run on a busy 2-core machine).
        assert max(gaps) < 1.0, gaps
        other.execute("COMMIT")
        await _within(task, "run after the other connection committed")

    try:
        _run(scenario())
    finally:
        other.close()
    assert _tags(path) == ["other", "mine"]


def test_a_lock_held_past_the_busy_timeout_fails_the_group_only(
    writer: Writer, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage.connections, "BUSY_TIMEOUT_MS", 200)  # shortened so the test stays fast
    other = connect(path, KEY)

    async def scenario() -> None:
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(storage.failures.StorageBusyError, match="locked"):
            await _within(writer.run(_insert("given-up")), "run against a held lock")
        assert 0.15 < time.monotonic() - started < WAIT
        other.execute("ROLLBACK")
        await _within(writer.run(_insert("next")), "the next run")

    try:
        _run(scenario())
    finally:
        other.close()
    assert _tags(path) == ["next"]


def test_the_room_probe_on_a_file_with_free_pages_writes_one_page_more_than_they_hold(
    writer: Writer, path: Path
) -> None:
    """Regression: SQLCipher answers `PRAGMA page_size` as the text '4096', and the probe's size
    was that text repeated: with one free page it wrote 41 MB, with more it failed outright, so
    after a full disk the database never read as having room again."""

    def free_pages(conn: Connection) -> None:
        conn.execute("CREATE TABLE filler (b BLOB)")
        conn.executemany("INSERT INTO filler VALUES (zeroblob(3000))", [()] * 40)
        conn.execute("DROP TABLE filler")

    writer.run_sync(free_pages)
    (free,) = writer.run_sync(lambda conn: conn.execute("PRAGMA freelist_count").fetchone())
    assert int(free) > 1
    before = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    assert writer.has_room()
    grown = sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) - before
    assert grown < 2 * (int(free) + 2) * 4096  # the pages and their WAL frames, not megabytes


def test_run_sync_against_a_lock_held_past_the_busy_timeout_is_a_busy_storage(
    writer: Writer, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage.connections, "BUSY_TIMEOUT_MS", 200)
    other = connect(path, KEY)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(storage.failures.StorageBusyError, match="locked"):
            writer.run_sync(_insert("given-up"))
    finally:
        other.execute("ROLLBACK")
        other.close()
    writer.run_sync(_insert("next"))  # it ended nothing
    assert _tags(path) == ["next"]


def test_run_sync_waits_out_a_lock_held_briefly_by_another_connection(writer: Writer, path: Path) -> None:
    other = connect(path, KEY)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t (tag) VALUES ('other')")
    release = threading.Timer(0.1, other.execute, ("COMMIT",))
    release.start()
    try:
        writer.run_sync(_insert("mine"))
    finally:
        release.join()
        other.close()
    assert _tags(path) == ["other", "mine"]


# -- threads and the loop ---------------------------------------------------------------------------


def test_run_sync_from_a_thread_interleaves_with_runs_on_the_loop(writer: Writer, path: Path) -> None:
    loop_started = threading.Event()

    def thread_work() -> None:
        assert loop_started.wait(WAIT)
        for i in range(20):
            writer.run_sync(_insert(f"thread-{i}"))

    async def scenario() -> int:
        worker = asyncio.ensure_future(asyncio.to_thread(thread_work))
        done = 0
        while done < 200 or not worker.done():
            await _within(
                asyncio.gather(*(writer.run(_insert(f"loop-{done + i}")) for i in range(10))), "a loop batch"
            )
            done += 10
            loop_started.set()
        await _within(worker, "the thread")
        await _within(writer.run(_insert(f"loop-{done}")), "the last loop insert")
        return done + 1

    loop_rows = _run(scenario())
    tags = _tags(path)
    assert sorted(tags) == sorted(
        [f"loop-{i}" for i in range(loop_rows)] + [f"thread-{i}" for i in range(20)]
    )
    thread_rows = [tag for tag in tags if tag.startswith("thread-")]
    assert thread_rows == [f"thread-{i}" for i in range(20)]
    assert tags[0].startswith("loop-")
    assert tags[-1].startswith("loop-")


# -- durable() and wrote_in_context ------------------------------------------------------------------


def test_durable_returns_after_run_sync_and_after_run(writer: Writer, path: Path) -> None:
    async def scenario() -> None:
        await _within(asyncio.to_thread(writer.run_sync, _insert("thread")), "run_sync")
        await _within(writer.durable(), "durable() after run_sync")
        await _within(writer.run(_insert("loop")), "run")
        await _within(writer.durable(), "durable() after run")
        await _within(asyncio.to_thread(writer.run_sync, _insert("thread-2")), "run_sync")
        await _within(writer.durable(), "durable() after run_sync on a loop that ran")

    _run(scenario())
    assert _tags(path) == ["thread", "loop", "thread-2"]


def test_durable_waits_for_the_fsync_of_a_run(writer: Writer, syncs: Syncs) -> None:
    syncs.gate = gate = threading.Event()

    async def scenario() -> None:
        write = asyncio.ensure_future(writer.run(_insert("x")))
        await syncs.until_entered()
        waiting = asyncio.ensure_future(writer.durable())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        gate.set()
        await _within(waiting, "durable()")
        await _within(write, "run")

    _run(scenario())


def test_durable_on_the_loop_waits_for_the_fsync_of_a_threads_run_sync(writer: Writer, syncs: Syncs) -> None:
    async def scenario() -> None:
        await _within(writer.run(_insert("binds-the-loop")), "run")
        syncs.entered.clear()
        syncs.gate = gate = threading.Event()
        thread = asyncio.ensure_future(asyncio.to_thread(writer.run_sync, _insert("thread")))
        await syncs.until_entered()  # committed by the thread; its fsync held by the gate
        waiting = asyncio.ensure_future(writer.durable())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        gate.set()
        await _within(waiting, "durable() after the thread's fsync")
        await _within(thread, "run_sync")

    _run(scenario())


def test_durable_waiting_on_the_loop_fails_when_a_threads_fsync_fails(writer: Writer, syncs: Syncs) -> None:
    async def scenario() -> None:
        await _within(writer.run(_insert("binds-the-loop")), "run")
        syncs.entered.clear()
        syncs.gate = gate = threading.Event()
        syncs.fail_next = 1
        thread = asyncio.ensure_future(asyncio.to_thread(writer.run_sync, _insert("thread")))
        await syncs.until_entered()  # committed by the thread; its (failing) fsync held by the gate
        waiting = asyncio.ensure_future(writer.durable())
        await asyncio.sleep(0.02)
        gate.set()
        with pytest.raises(StorageFailedError):
            await _within(thread, "run_sync")
        with pytest.raises(StorageFailedError):
            await _within(waiting, "durable() waiting on the failed commit")

    _run(scenario())


def test_wrote_in_context_is_set_by_run_in_the_callers_task_only(writer: Writer) -> None:
    async def request(write: bool) -> tuple[bool, bool]:
        before = wrote_in_context.get()
        if write:
            await writer.run(_insert("x"))
        return before, wrote_in_context.get()

    async def scenario() -> None:
        assert await _within(asyncio.ensure_future(request(write=True)), "a writing task") == (False, True)
        assert await _within(asyncio.ensure_future(request(write=False)), "a reading task") == (False, False)
        assert wrote_in_context.get() is False  # the parent's context is untouched

    _run(scenario())


# -- readers and reopening ---------------------------------------------------------------------------


def test_a_reader_sees_a_run_once_it_returns_and_a_reopened_database_holds_every_row(path: Path) -> None:
    db = Database(path, KEY, name="test")
    try:
        db.writer.run_sync(_create)

        async def scenario() -> None:
            reader = db.reader()
            for batch in range(3):
                await _within(
                    asyncio.gather(*(db.writer.run(_insert(f"r-{batch}-{i}")) for i in range(5))), "a batch"
                )
                assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 5 * (batch + 1)

        _run(scenario())
    finally:
        db.close()
    reopened = Database(path, KEY, name="test")
    try:
        rows = [row[0] for row in reopened.reader().execute("SELECT tag FROM t ORDER BY id")]
    finally:
        reopened.close()
    assert rows == [f"r-{batch}-{i}" for batch in range(3) for i in range(5)]


# -- checkpoints ---------------------------------------------------------------------------------


def test_a_truncating_checkpoint_a_reader_holds_back_is_retried_and_reported(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: an erasure's checkpoint ignored SQLite's busy answer, so a read in progress (in
    another process, say) left the deleted rows' frames in the WAL with nothing said."""
    db = Database(path, KEY, name="test")
    other = connect(path, KEY)  # another process's reader
    try:
        db.writer.run_sync(_create)
        db.writer.run_sync(_insert("before"))
        other.execute("BEGIN")
        assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 1  # a snapshot, held
        db.writer.run_sync(lambda conn: conn.execute("DELETE FROM t"))

        with caplog.at_level(logging.WARNING, logger="storage.db"):
            assert db.checkpoint() is False
        assert "not truncated" in caplog.text
        assert os.path.getsize(f"{path}-wal") > 0

        other.execute("COMMIT")
        assert db.checkpoint() is True
        assert os.path.getsize(f"{path}-wal") == 0
    finally:
        other.close()
        db.close()


def test_the_wal_is_folded_back_while_writes_keep_coming(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint racing appends that never pause never completes on its own, so the writer
    never rewinds the WAL and the file grows with every write (5 GB in a million-subject seeding).
    The sync thread's checkpoint finishes under the write lock, so the WAL stays near its limit."""
    monkeypatch.setattr(storage.wal, "CHECKPOINT_WAL_BYTES", 256 * 1024)
    writer = Writer(path, KEY, name="test")
    try:
        writer.run_sync(lambda conn: conn.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, v BLOB)"))

        async def lane() -> None:
            for _ in range(100):
                await writer.run(lambda conn: conn.execute("INSERT INTO b (v) VALUES (randomblob(8192))"))

        async def scenario() -> None:
            await asyncio.wait_for(asyncio.gather(*(lane() for _ in range(4))), 60)

        _run(scenario())
        written = 400 * 8192
        wal = Path(f"{path}-wal").stat().st_size
        assert wal < written / 3, f"the WAL kept {wal} bytes of {written} written"
    finally:
        writer.close()


def test_the_wal_is_folded_back_between_long_transactions_from_threads(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite rewinds the WAL only in a write transaction that began with every frame copied.
    Threads queued on the write lock (the seeding script's two) begin the next transaction the
    moment the last one commits, before its checkpoint has run, so lock-free passes alone never
    got the WAL rewound: it grew by every transaction (4 GB in two minutes of seeding)."""
    monkeypatch.setattr(storage.wal, "CHECKPOINT_WAL_BYTES", 256 * 1024)
    writer = Writer(path, KEY, name="test")
    try:
        writer.run_sync(lambda conn: conn.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, v BLOB)"))

        def unit(conn: Connection) -> None:
            conn.executemany("INSERT INTO b (v) VALUES (randomblob(8192))", [()] * 64)
            time.sleep(0.02)  # a unit's own work: the checkpoint's passes finish meanwhile

        with ThreadPoolExecutor(max_workers=2) as pool:
            for future in [pool.submit(writer.run_sync, unit) for _ in range(40)]:
                future.result(timeout=60)
        written = 40 * 64 * 8192
        wal = Path(f"{path}-wal").stat().st_size
        assert wal < written / 4, f"the WAL kept {wal} bytes of {written} written"
    finally:
        writer.close()


class _SpyLock:
    """A write lock that counts how often it was taken."""

    def __init__(self) -> None:
        self.taken = 0

    def __enter__(self) -> None:
        self.taken += 1

    def __exit__(self, *exc: object) -> None:
        return None

    def locked(self) -> bool:
        return False


def test_a_checkpoint_between_writes_takes_no_lock(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With writes paused, the checkpoint copies the whole WAL without the write lock (a last pass
    under it held commits back by up to 10 ms at every checkpoint), even a WAL past twice the
    limit, and the next write rewinds the WAL to its start."""
    monkeypatch.setattr(storage.wal, "CHECKPOINT_WAL_BYTES", 64 * 1024)
    conn = connect(path, KEY, synchronous="NORMAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute(f"PRAGMA journal_size_limit = {64 * 1024}")
    conn.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, v BLOB)")
    for _ in range(40):
        conn.execute("INSERT INTO b (v) VALUES (randomblob(8192))")
    wal = Path(f"{path}-wal")
    assert wal.stat().st_size > 4 * 64 * 1024
    lock = _SpyLock()
    checkpointer = storage.wal._Checkpointer(path, KEY, storage.connections.PAGE_MAC, "test", lock)  # type: ignore[arg-type]
    try:
        checkpointer.request()
        deadline = time.monotonic() + 10
        while checkpointer._wanted.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        conn.execute("INSERT INTO b (v) VALUES (randomblob(8192))")
        assert wal.stat().st_size <= 64 * 1024, "the WAL was not rewound"
    finally:
        checkpointer.close()
        conn.close()
    assert lock.taken == 0
    with connect(path, KEY) as reopened:
        assert reopened.execute("SELECT count(*) FROM b").fetchone()[0] == 41


@pytest.mark.parametrize("opens", ["no such directory", "not a database"])
def test_a_failing_checkpoint_holds_up_no_write(
    path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, opens: str
) -> None:
    """A checkpoint that cannot run (here its connection cannot be opened, as when the file
    system refuses) loses nothing, since the WAL keeps every frame: writes go on being answered
    and durable, and the failure is logged. When checkpoints ran on the sync thread, the error
    ended that thread and every later write waited forever for its fsync."""
    monkeypatch.setattr(storage.wal, "CHECKPOINT_WAL_BYTES", 64 * 1024)
    opened = sqlcipher3.connect

    def connect_unless_checkpointing(*args: Any, **kwargs: Any) -> Any:
        # SQLite's own refusal, which `connect` reports as an OSError (a file system that
        # refuses, or no file descriptor left): an OSError ended the checkpoint thread.
        if threading.current_thread() is not threading.main_thread():  # only checkpoints open off it
            return opened("/nonexistent-directory/checkpoint.db" if opens == "no such directory" else junk)
        return opened(*args, **kwargs)

    junk = str(path.with_name("junk.db"))
    Path(junk).write_bytes(b"not a database" * 512)  # SQLITE_NOTADB: `connect` says wrong key

    monkeypatch.setattr(sqlcipher3, "connect", connect_unless_checkpointing)
    writer = Writer(path, KEY, name="test")
    try:
        writer.run_sync(lambda conn: conn.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, v BLOB)"))

        async def scenario() -> None:
            for _ in range(40):
                await asyncio.wait_for(
                    writer.run(lambda conn: conn.execute("INSERT INTO b (v) VALUES (randomblob(8192))")), 10
                )

        with caplog.at_level("WARNING", logger="storage.wal"):
            _run(scenario())
        assert Path(f"{path}-wal").stat().st_size > 64 * 1024  # nothing folded back, nothing lost
        assert any("checkpoint failed" in record.getMessage() for record in caplog.records)
    finally:
        writer.close()
    monkeypatch.undo()
    with connect(path, KEY) as conn:
        assert conn.execute("SELECT count(*) FROM b").fetchone()[0] == 40


def test_a_unit_raising_stop_iteration_the_thread_way_is_an_error_not_a_hang(writer: Writer) -> None:
    """From a second loop while the writer serves a first, units run on a thread and their
    answer is carried by the executor's future, which cannot carry StopIteration (a unit's
    `next()` on no rows): setting it failed in a callback and the caller waited for good."""

    def no_rows(conn: Connection) -> None:
        next(iter(conn.execute("SELECT tag FROM t WHERE tag = 'none'")))

    async def scenario() -> BaseException | None:
        first = asyncio.ensure_future(writer.run(_insert("a")))
        await asyncio.sleep(0)  # the writer serves this loop now, `first` queued
        with ThreadPoolExecutor(1) as pool:
            # Bounded in its own loop: unanswered, it would wait for good.
            other = pool.submit(asyncio.run, asyncio.wait_for(writer.run(no_rows), timeout=5))
            error = other.exception()
        await first
        return error

    error = _run(scenario())
    assert isinstance(error, RuntimeError)
    assert isinstance(error.__cause__, StopIteration)


def _rotten(path: Path) -> None:
    """`rot_last_page` on a file that has `t` too, before `big`."""
    writer = Writer(path, KEY, name="test")
    writer.run_sync(_create)
    writer.close()
    rot_last_page(path, KEY)


def _read(row_id: int) -> Callable[[Connection], int]:
    def unit(conn: Connection) -> int:
        return len(conn.execute("SELECT body FROM big WHERE id = ?", (row_id,)).fetchone()[0])

    return unit


def test_a_corrupt_page_costs_the_units_that_read_it_not_every_later_write(path: Path) -> None:
    """A page whose bits rotted fails SQLCipher's check when read (SQLITE_CORRUPT), and the codec
    kept that error on the connection: every later unit of the writer failed the same way, other
    rows and writes included, until a restart."""
    _rotten(path)
    writer = Writer(path, KEY, name="test")
    try:

        async def scenario() -> list[str]:
            outcomes = []
            for unit in (_read(7), _read(0), _insert("after"), _read(7), _read(1)):
                try:
                    outcomes.append(str(await writer.run(unit)))
                except Exception as exc:
                    outcomes.append(type(exc).__name__)
            return outcomes

        first, healthy, write, again, other = _run(scenario())
        assert first == "DatabaseError"  # the rotten row
        assert (healthy, write, other) == ("3000", "1", "3000")
        assert again == "DatabaseError"
    finally:
        writer.close()


def test_a_thread_waiting_for_the_lock_writes_on_the_connection_mended_meanwhile(path: Path) -> None:
    """A thread's `run_sync` took the writer's connection before waiting for the lock; a group
    that met the corrupt page meanwhile closed it, and the thread's write failed on a closed
    database, having read nothing damaged."""
    _rotten(path)
    writer = Writer(path, KEY, name="test")
    outcome: list[object] = []

    def thread_way() -> None:
        try:
            outcome.append(writer.run_sync(_insert("from a thread")))
        except Exception as exc:
            outcome.append(type(exc).__name__)

    thread = threading.Thread(target=thread_way)

    def rotten_read_while_the_thread_waits(conn: Connection) -> int:
        thread.start()  # it waits for the write lock this group holds
        time.sleep(0.3)
        return _read(7)(conn)

    async def scenario() -> None:
        with pytest.raises(sqlcipher3.DatabaseError):
            await writer.run(rotten_read_while_the_thread_waits)
        await asyncio.to_thread(thread.join, 10)

    try:
        _run(scenario())
        assert outcome == [1]
    finally:
        writer.close()


def _body_length(conn: Connection, row_id: int) -> int | str:
    try:
        return _read(row_id)(conn)
    except sqlcipher3.DatabaseError as exc:
        return "corrupt" if storage.failures.is_corrupt(exc) else repr(exc)


def test_a_reader_that_met_a_corrupt_page_is_replaced_once_renewed(path: Path) -> None:
    """A read connection keeps the codec's error too: after the damaged row, rows on pages not yet
    in its cache failed with it. Renewed, the thread's next read opens a new connection."""
    _rotten(path)
    db = Database(path, KEY, name="test")
    try:
        met = db.reader()
        assert [_body_length(met, row) for row in (0, 7, 1)] == [3000, "corrupt", "corrupt"]
        db.renew_readers()
        fresh = db.reader()
        assert fresh is not met
        assert [_body_length(fresh, row) for row in (1, 2, 7)] == [3000, 3000, "corrupt"]
        assert db.reader() is fresh  # one new connection per renewal, not per read
    finally:
        db.close()


def test_a_renewed_reader_is_not_closed_under_a_cursor_or_a_snapshot(path: Path) -> None:
    """A renewal comes from whichever thread met the damage, at any time: a cursor still reading
    from the old connection, or a read transaction begun on it, must end there undisturbed."""
    _rotten(path)
    db = Database(path, KEY, name="test")
    try:
        old = db.reader()
        rows = old.execute("SELECT id FROM big WHERE id < 6 ORDER BY id")  # 7 is the damaged one
        assert next(rows) == (0,)
        db.renew_readers()
        fresh = db.reader()
        assert fresh is not old
        assert [row[0] for row in rows] == [1, 2, 3, 4, 5]  # the cursor read on
        with db.snapshot() as snapshot:
            db.renew_readers()
            assert db.reader() is snapshot  # inside its read transaction: the same connection
        assert db.reader() is not snapshot
        del old, rows, fresh, snapshot
        assert len(db._readers) == 1  # the replaced ones closed once nothing held them
    finally:
        db.close()


def test_a_unit_that_reads_a_corrupt_page_fails_alone_and_the_rest_of_its_group_runs_again(
    path: Path,
) -> None:
    """SQLite rolled back the whole transaction when a unit met the damaged page, so every unit of
    its group failed with it: a 500 for each request that happened to share its commit. Now the
    group is undone, the connection mended, that unit answered with the error, and the others run
    again in the next group, the ones before it included."""
    _rotten(path)
    writer = Writer(path, KEY, name="test")
    runs: list[str] = []

    def counted(tag: str) -> Callable[[Connection], int]:
        def unit(conn: Connection) -> int:
            runs.append(tag)
            return _insert(tag)(conn)

        return unit

    async def scenario() -> list[object]:
        units = (counted("before"), _read(7), counted("after"), _read(1))
        return list(await asyncio.gather(*(writer.submit(u) for u in units), return_exceptions=True))

    try:
        before, damaged, after, other = _run(scenario())
        assert isinstance(damaged, sqlcipher3.DatabaseError)
        assert storage.failures.is_corrupt(damaged)
        assert (before, after, other) == (1, 2, 3000)
        assert runs == ["before", "before", "after"]  # undone with the group, then run again
    finally:
        writer.close()
    assert _tags(path) == ["before", "after"]


def test_a_sync_that_finds_no_free_descriptor_fails_only_its_own_commit(path: Path) -> None:
    """The syncer opens the WAL at its first sync and holds it. A process out of descriptors then
    (idle connections held open by a client) failed that commit, and the writer took the error
    for a failed fsync: every later write refused until a restart, while `failure` said nothing.
    The descriptors really run out here (the soft limit lowered to what is open, the rest filled)."""
    made = connect(path, KEY)  # the table made before: SQLite has what it needs open, the syncer not
    made.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, tag TEXT NOT NULL UNIQUE)")
    made.close()
    writer = Writer(path, KEY, name="test")
    try:
        with out_of_descriptors(spare=16), pytest.raises(StorageFailedError, match="Too many open files"):
            writer.run_sync(_insert("during"))
        assert writer.failure is None

        async def later() -> int:
            return await _within(writer.run(_insert("after")), "a later run")

        _run(later())
        writer.run_sync(_insert("after-sync"))
        assert _tags(path) == ["during", "after", "after-sync"]  # its row was written, not its sync
    finally:
        writer.close()
