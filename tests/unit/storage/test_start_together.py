"""Two processes starting on one new data dir both switch it to WAL and migrate it: neither may
fail for the other's lock (one of them did, with "database is locked", in four runs of six)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, cast

import pytest
import sqlcipher3

from storage.connections import Connection, connect, when_free
from storage.failures import StorageBusyError
from storage.keys import KeyStore
from storage.migrations import DATA_MIGRATIONS, migrate

pytestmark = pytest.mark.slow

OPEN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from storage.keys import KeyStore
    from storage.store import Store
    data = Path(sys.argv[1])
    while not (data / "go").exists():
        time.sleep(0.001)
    Store(data, KeyStore.load(data / "keys.json")).close()
    """
)


@pytest.mark.parametrize("attempt", range(4))
def test_two_processes_starting_together_both_open_the_store(tmp_path: Path, attempt: int) -> None:
    data = tmp_path / "data"
    data.mkdir()
    KeyStore.create(data / "keys.json")
    starting = [
        subprocess.Popen([sys.executable, "-c", OPEN, str(data)], stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    (data / "go").touch()
    for process in starting:
        _, errors = process.communicate(timeout=60)
        assert process.returncode == 0, errors[-2000:]


def test_a_lock_held_past_the_start_up_wait_is_storage_busy(tmp_path: Path) -> None:
    """Not sqlcipher3's OperationalError, which the CLI printed as a traceback: the error the
    writer gives for the same lock, which the CLI and the HTTP layer answer."""
    key = KeyStore.create(tmp_path / "keys.json").database_key
    holder, waiter = connect(tmp_path / "gateway.db", key), connect(tmp_path / "gateway.db", key)
    waiter.execute("PRAGMA busy_timeout = 0")
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageBusyError, match="held the write lock"):
            when_free(lambda: waiter.execute("BEGIN IMMEDIATE"), seconds=0.1)
    finally:
        holder.execute("ROLLBACK")
    when_free(lambda: waiter.execute("BEGIN IMMEDIATE"), seconds=0.1)  # free again: taken at once
    waiter.execute("ROLLBACK")
    holder.close()
    waiter.close()


class _LockedOnce:
    """A real connection whose first statement meets another process's lock, as SQLite answers a
    connection without a busy handler (the writer's) while another process checkpoints and
    removes the WAL on closing its last connection, or switches a new file to WAL."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.refused = 0

    def execute(self, sql: str, *args: Any) -> Any:
        if not self.refused:
            self.refused += 1
            raise sqlcipher3.OperationalError("database is locked")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_the_migrations_read_again_when_another_start_holds_the_file(tmp_path: Path) -> None:
    """Regression: the migrations' first read, on the writer's connection, failed at once with
    "database is locked" (the test above, one run in a few hundred); their writes already waited
    (`when_free`)."""
    keys = KeyStore.create(tmp_path / "keys.json")
    conn = connect(tmp_path / "gateway.db", keys.database_key)
    try:
        migrate(conn, DATA_MIGRATIONS)
        locked = _LockedOnce(conn)
        assert migrate(cast(Connection, locked), DATA_MIGRATIONS) == []  # all recorded, read again
        assert locked.refused == 1
    finally:
        conn.close()


CREATE_KEYS = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from storage.store import open_keystore
    data = Path(sys.argv[1])
    (data.parent / sys.argv[2]).touch()
    while not (data.parent / "go").exists():
        pass
    keys, created = open_keystore(data / "keys.json", create=True)
    print(created, keys.pseudonym_key.hex())
    """
)


@pytest.mark.parametrize("attempt", range(4))
def test_processes_starting_together_on_a_new_data_dir_share_one_key_store(
    tmp_path: Path, attempt: int
) -> None:
    """`serve` and `worker` started together on a first run: each found no key store, and the one
    that lost the race to create it stopped with "File exists" (or read it half-written)."""
    data = tmp_path / "data"
    starting = [
        subprocess.Popen(
            [sys.executable, "-c", CREATE_KEYS, str(data), f"ready-{n}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    deadline = time.monotonic() + 60  # all four waiting at the line, so that they meet
    while len(list(tmp_path.glob("ready-*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    (tmp_path / "go").touch()
    said = []
    for process in starting:
        out, errors = process.communicate(timeout=60)
        assert process.returncode == 0, errors[-2000:]
        said.append(out.split())
    assert sorted(created for created, _ in said) == ["False", "False", "False", "True"]
    assert len({key for _, key in said}) == 1
    assert sorted(p.name for p in data.iterdir()) == ["keys.json"]
