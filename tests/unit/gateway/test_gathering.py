"""SharedUnit: requests that come while a writer unit waits to run join it, each caller gets its
own outcome, and nobody waits for company. A real writer on a real SQLCipher file."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support import rot_last_page

from gateway.services.gathering import SharedUnit
from storage.connections import Connection
from storage.failures import is_corrupt
from storage.writer import Writer

KEY = os.urandom(32)


class Refused(Exception):
    pass


class Tags:
    """Stores each item as a row, or refuses the items below zero; remembers each group."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []

    def handle(self, conn: Connection, items: list[int]) -> Sequence[int | Exception]:
        self.groups.append(items)
        outcomes: list[int | Exception] = []
        for item in items:
            if item < 0:
                outcomes.append(Refused(f"{item} refused"))
            else:
                conn.execute("INSERT INTO t (n) VALUES (?)", (item,))
                outcomes.append(item * 2)
        return outcomes


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Writer]:
    writer = Writer(tmp_path / "w.db", KEY, name="test")
    writer.run_sync(lambda conn: conn.execute("CREATE TABLE t (n INTEGER NOT NULL)"))
    yield writer
    writer.close()


def stored(writer: Writer) -> list[int]:
    return sorted(n for (n,) in writer.run_sync(lambda conn: conn.execute("SELECT n FROM t").fetchall()))


def test_what_comes_before_the_unit_runs_joins_it_and_what_comes_after_starts_another(writer: Writer) -> None:
    tags = Tags()
    shared: SharedUnit[int, int] = SharedUnit(writer, tags.handle)

    async def scenario() -> list[int]:
        first = await asyncio.gather(shared.submit(1), shared.submit(2), shared.submit(3))
        later = await shared.submit(4)
        return [*first, later]

    assert asyncio.run(scenario()) == [2, 4, 6, 8]
    assert tags.groups == [[1, 2, 3], [4]]
    assert stored(writer) == [1, 2, 3, 4]


def test_a_request_alone_runs_in_the_writers_next_turn_as_it_would_alone(writer: Writer) -> None:
    """No waiting for company: the unit is queued by the first request, as `Writer.run` would."""
    tags = Tags()
    shared: SharedUnit[int, int] = SharedUnit(writer, tags.handle)

    async def scenario() -> tuple[int, int]:
        alone = asyncio.ensure_future(shared.submit(5))
        plain = asyncio.ensure_future(writer.run(lambda conn: 7))
        return await alone, await plain

    assert asyncio.run(scenario()) == (10, 7)
    assert writer.commits == 2  # the table, then one group with both units


def test_an_items_exception_reaches_its_caller_alone_and_the_others_are_kept(writer: Writer) -> None:
    tags = Tags()
    shared: SharedUnit[int, int] = SharedUnit(writer, tags.handle)

    async def scenario() -> list[int | BaseException]:
        calls = (shared.submit(1), shared.submit(-1), shared.submit(2))
        return list(await asyncio.gather(*calls, return_exceptions=True))

    first, refused, second = asyncio.run(scenario())
    assert (first, second) == (2, 4)
    assert isinstance(refused, Refused)
    assert str(refused) == "-1 refused"
    assert stored(writer) == [1, 2]


def test_the_units_own_exception_reaches_every_caller_and_nothing_is_kept(writer: Writer) -> None:
    def failing(conn: Connection, items: list[int]) -> Sequence[int | Exception]:
        conn.execute("INSERT INTO t (n) VALUES (99)")
        raise OSError("disk full")

    shared: SharedUnit[int, int] = SharedUnit(writer, failing)

    async def scenario() -> list[int | BaseException]:
        return list(await asyncio.gather(shared.submit(1), shared.submit(2), return_exceptions=True))

    assert [type(o) for o in asyncio.run(scenario())] == [OSError, OSError]
    assert stored(writer) == []  # the unit's savepoint undone


def test_a_wrong_number_of_outcomes_fails_every_caller_rather_than_leaving_one_waiting(
    writer: Writer,
) -> None:
    shared: SharedUnit[int, int] = SharedUnit(writer, lambda conn, items: items[:-1])

    async def scenario() -> list[int | BaseException]:
        calls = asyncio.gather(shared.submit(1), shared.submit(2), return_exceptions=True)
        return list(await asyncio.wait_for(calls, timeout=5))

    assert [type(o) for o in asyncio.run(scenario())] == [RuntimeError, RuntimeError]


def test_a_caller_gone_does_not_keep_the_others_from_their_answers(writer: Writer) -> None:
    tags = Tags()
    shared: SharedUnit[int, int] = SharedUnit(writer, tags.handle)

    async def scenario() -> int:
        leaving = asyncio.ensure_future(shared.submit(1))
        staying = asyncio.ensure_future(shared.submit(2))
        await asyncio.sleep(0)  # both have joined
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        return await staying

    assert asyncio.run(scenario()) == 4
    assert tags.groups == [[1, 2]]
    assert stored(writer) == [1, 2]  # the unit ran: a push accepted is kept, its answer unheard


def test_after_a_failed_fsync_each_group_is_refused_and_none_is_left_waiting(
    writer: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second group is refused before its unit runs (the writer has failed for good): it
    must be closed all the same, or the third request would join it and wait forever."""

    def failing_sync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing_sync)
    tags = Tags()
    shared: SharedUnit[int, int] = SharedUnit(writer, tags.handle)

    async def scenario() -> list[list[str]]:
        refused = []
        for group in ((1, 2), (3, 4), (5,)):
            calls = asyncio.gather(*(shared.submit(n) for n in group), return_exceptions=True)
            refused.append([type(o).__name__ for o in await asyncio.wait_for(calls, timeout=5)])
        return refused

    assert asyncio.run(scenario()) == [
        ["StorageFailedError"] * 2,
        ["StorageFailedError"] * 2,
        ["StorageFailedError"],
    ]
    assert tags.groups == [[1, 2]]  # the others never ran


def test_an_items_stop_iteration_reaches_its_caller_as_an_error_and_the_others_are_answered(
    writer: Writer,
) -> None:
    """A future refuses a StopIteration (a defect's `next()` on nothing): set as it was, it
    raised in the middle of settling and left that caller and the ones after it unanswered."""

    def handle(conn: Connection, items: list[int]) -> Sequence[int | Exception]:
        return [StopIteration() if item == 2 else item * 2 for item in items]

    shared: SharedUnit[int, int] = SharedUnit(writer, handle)

    async def scenario() -> list[int | BaseException]:
        calls = asyncio.gather(*(shared.submit(n) for n in (1, 2, 3)), return_exceptions=True)
        return list(await asyncio.wait_for(calls, timeout=5))

    first, defect, third = asyncio.run(scenario())
    assert (first, third) == (2, 6)
    assert isinstance(defect, RuntimeError)
    assert isinstance(defect.__cause__, StopIteration)


def test_a_request_on_another_loop_does_not_join_a_group_it_would_never_hear_from(writer: Writer) -> None:
    """A group's answers are set on the loop of the request that queued it. Joined from another
    loop (a thread with its own), the answer did not wake that loop: the request hung."""
    tags = Tags()
    shared: SharedUnit[int, int] = SharedUnit(writer, tags.handle)

    async def scenario() -> tuple[int, int]:
        first = asyncio.ensure_future(shared.submit(1))
        await asyncio.sleep(0)  # `first` has opened its group; its unit runs at the next turn
        with ThreadPoolExecutor(1) as pool:
            # This loop is blocked meanwhile, so the group stays open while the other comes.
            # Bounded in its own loop: joined to this group, it would wait for good.
            other = pool.submit(asyncio.run, asyncio.wait_for(shared.submit(2), timeout=5)).result()
        return other, await first

    assert asyncio.run(scenario()) == (4, 2)
    assert tags.groups == [[2], [1]]


def test_an_item_that_reads_a_corrupt_page_fails_alone_and_the_others_are_done_again(
    tmp_path: Path,
) -> None:
    """An item that meets a damaged page fails the unit it shares: its error is SQLite's, which
    a handler lets through (`PushService._record_singles`), and the unit's other items failed
    with it. Now each item of that unit is done again alone, so only the damaged one fails."""
    path = tmp_path / "rotten.db"
    rot_last_page(path, KEY)  # the rows of `big` are 0..7; row 7's page is damaged
    writer = Writer(path, KEY, name="test")
    groups: list[list[int]] = []

    def lengths(conn: Connection, items: list[int]) -> Sequence[int | Exception]:
        groups.append(items)
        return [len(conn.execute("SELECT body FROM big WHERE id = ?", (i,)).fetchone()[0]) for i in items]

    shared: SharedUnit[int, int] = SharedUnit(writer, lengths)

    async def scenario() -> list[int | BaseException]:
        calls = (shared.submit(1), shared.submit(7), shared.submit(2))
        return list(await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), timeout=5))

    try:
        first, damaged, second = asyncio.run(scenario())
    finally:
        writer.close()
    assert (first, second) == (3000, 3000)
    assert isinstance(damaged, BaseException)
    assert is_corrupt(damaged)
    # Then each alone: 1 runs before the damage, is undone with its group, and runs again.
    assert groups == [[1, 7, 2], [1], [7], [1], [2]]
