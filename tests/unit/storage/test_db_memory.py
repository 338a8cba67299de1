"""SQLite's memory has one bound for the whole process, however many connections read.

A reader is opened per thread, so per-connection page caches alone bound nothing. Here the
budget is shrunk to 8 MiB and three connections each read ~24 MiB of pages, which with
per-connection caches alone would keep ~70 MiB resident: the process must grow by far less."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from sqlite3 import Cursor

import pytest

import storage.connections
from storage.connections import Connection, connect
from storage.db import Database

KEY = os.urandom(32)
ROWS = 6_000
ROW_BYTES = 4_000  # about a page each: ~24 MiB of table


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.fixture
def big_db(tmp_path: Path) -> Iterator[Path]:
    db = Database(tmp_path / "big.db", KEY, name="big")
    db.writer.run_sync(lambda conn: conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)"))
    for start in range(0, ROWS, 1_000):

        def insert(conn: Connection, start: int = start) -> Cursor:
            return conn.executemany(
                "INSERT INTO blobs (id, b) VALUES (?, ?)",
                ((i, os.urandom(ROW_BYTES)) for i in range(start, start + 1_000)),
            )

        db.writer.run_sync(insert)
    db.checkpoint()
    db.close()
    yield tmp_path / "big.db"
    connect(tmp_path / "big.db", KEY).close()  # the budget back at its real value for later tests


def test_many_connections_share_one_memory_budget(big_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage.connections, "SQLITE_MEMORY_BUDGET", 8 * 1024 * 1024)
    conns = [connect(big_db, KEY) for _ in range(3)]
    before = _rss_mib()
    for conn in conns:
        # hex() reads every byte, overflow pages included (length() of a blob would not)
        assert conn.execute("SELECT sum(length(hex(b))) FROM blobs").fetchone() == (2 * ROWS * ROW_BYTES,)
    grown = _rss_mib() - before
    for conn in conns:
        conn.close()
    assert grown < 30, f"three connections kept {grown:.0f} MiB of pages under an 8 MiB budget"


def test_the_budget_is_set_on_every_connection(tmp_path: Path) -> None:
    conn = connect(tmp_path / "any.db", KEY)
    assert conn.execute("PRAGMA soft_heap_limit").fetchone() == (storage.connections.SQLITE_MEMORY_BUDGET,)
    conn.close()
