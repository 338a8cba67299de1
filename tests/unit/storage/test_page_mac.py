"""Each database file's pages carry the MAC that was fastest where the file was made, and keep it.

A file made before new files took the faster MAC (HMAC-SHA512, SQLCipher's default) must open,
take writes and fold its WAL as it did, and a file made on a processor without SHA extensions
must open on one with them: every connection to a file (the writer's, the sync and checkpoint
threads', each thread's reader) has to use the MAC its pages carry, or SQLCipher takes the file
for one with another key."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import storage.connections
import storage.wal
from storage.connections import PAGE_MAC, SHA256_PAGES, SHA512_PAGES, connect, faster_page_mac, page_mac_of
from storage.db import Database
from storage.failures import DatabaseLockedError
from storage.keys import KeyStore
from storage.store import Store
from storage.writer import Writer

KEY = os.urandom(32)
ONE_ROW_LESS = "DELETE FROM t WHERE rowid IN (SELECT min(rowid) FROM t)"  # a write each time
OTHER_MAC = SHA512_PAGES if PAGE_MAC == SHA256_PAGES else SHA256_PAGES

X86_WITH_SHA = "processor\t: 0\nflags\t\t: fpu vme sse2 aes avx2 sha_ni vaes\nmodel name\t: AMD EPYC\n"
X86_WITHOUT_SHA = "processor\t: 0\nflags\t\t: fpu vme sse2 aes avx2 avx512f\nmodel name\t: Intel Xeon\n"
ARM_WITH_SHA = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"


@pytest.mark.parametrize(
    ("cpuinfo", "mac"),
    [
        (X86_WITH_SHA, SHA256_PAGES),
        (X86_WITHOUT_SHA, SHA512_PAGES),
        (ARM_WITH_SHA, SHA256_PAGES),
        ("model name\t: sha_ni in a name is no flag\n", SHA512_PAGES),
        ("", SHA512_PAGES),  # not Linux
    ],
)
def test_new_files_take_the_faster_mac_of_the_processor(cpuinfo: str, mac: str) -> None:
    assert faster_page_mac(cpuinfo) == mac


def _opens_with(path: Path, mac: str) -> bool:
    try:
        connect(path, KEY, page_mac=mac).close()
    except DatabaseLockedError:
        return False
    return True


def test_a_new_file_carries_this_processors_mac(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    writer = Writer(path, KEY, name="test")
    writer.run_sync(lambda conn: conn.execute("CREATE TABLE t (v TEXT)"))
    writer.close()
    assert writer.page_mac == PAGE_MAC
    assert _opens_with(path, PAGE_MAC)
    assert not _opens_with(path, OTHER_MAC)


def test_a_file_made_with_the_other_mac_keeps_it(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written, read, folded by the checkpoint thread and reopened through a `Database`, as the
    gateway does: had any connection written a page with this processor's MAC, the file would no
    longer open whole with its own; had the checkpoint thread's connection used it, the WAL would
    never fold back."""
    monkeypatch.setattr(storage.wal, "CHECKPOINT_WAL_BYTES", 64 * 1024)
    path = tmp_path / "older.db"
    made = connect(path, KEY, page_mac=OTHER_MAC)
    made.execute("CREATE TABLE t (v BLOB)")
    made.executemany("INSERT INTO t VALUES (?)", [(os.urandom(100),) for _ in range(100)])
    made.close()
    capfd.readouterr()

    db = Database(path, KEY, name="test")
    wal = Path(f"{path}-wal")
    try:
        assert db.writer.page_mac == OTHER_MAC
        rows = [(os.urandom(1000),) for _ in range(50)]
        for _ in range(8):  # ~400 KiB of WAL in all, past the limit at each sync
            db.writer.run_sync(lambda conn: conn.executemany("INSERT INTO t VALUES (?)", rows))
        assert db.reader().execute("SELECT count(*) FROM t").fetchone()[0] == 500
        deadline = time.monotonic() + 10
        while wal.stat().st_size > 64 * 1024:  # rewound by the first write after a fold
            assert time.monotonic() < deadline, "the checkpoint thread never folded the WAL"
            time.sleep(0.02)
            db.writer.run_sync(lambda conn: conn.execute(ONE_ROW_LESS))
        assert db.checkpoint()
        kept = db.reader().execute("SELECT count(*) FROM t").fetchone()[0]
    finally:
        db.close()
    assert "hmac check failed" not in capfd.readouterr().err, "the probe's failed try was logged"

    assert not _opens_with(path, PAGE_MAC)
    again = connect(path, KEY, page_mac=OTHER_MAC)
    try:
        assert again.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert again.execute("SELECT count(*) FROM t").fetchone()[0] == kept
    finally:
        again.close()


def test_a_wrong_key_is_told_as_before_and_logged(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The probe quiets SQLCipher's log for its first try only: a key that opens neither way is
    still logged by SQLCipher, and refused as a wrong key."""
    path = tmp_path / "keyed.db"
    connect(path, KEY).execute("CREATE TABLE t (v TEXT)").connection.close()
    capfd.readouterr()
    with pytest.raises(DatabaseLockedError, match="wrong key"):
        page_mac_of(path, os.urandom(32))
    assert "hmac check failed" in capfd.readouterr().err


def test_no_file_yet_takes_this_processors_mac(tmp_path: Path) -> None:
    assert page_mac_of(tmp_path / "none.db", KEY) == PAGE_MAC
    assert storage.connections.PAGE_MAC in (SHA256_PAGES, SHA512_PAGES)


def test_connect_finds_the_mac_of_a_file_itself(tmp_path: Path) -> None:
    path = tmp_path / "older.db"
    connect(path, KEY, page_mac=OTHER_MAC).execute("CREATE TABLE t (v TEXT)").connection.close()
    conn = connect(path, KEY)
    try:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    finally:
        conn.close()


def test_a_data_dir_made_on_another_processor_opens_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Both databases, through `Store` (whose start reads and writes the directory's checks),
    which quiets SQLCipher's log around its opens too: the probe's own quieting nests in it
    rather than waiting on it."""
    data = tmp_path / "data"
    with monkeypatch.context() as there:
        there.setattr(storage.connections, "PAGE_MAC", OTHER_MAC)
        made = Store(data, KeyStore.create(data / "keys.json"))
        made.data.writer.run_sync(lambda conn: conn.execute("CREATE TABLE t (v TEXT)"))
        made.close()
    capfd.readouterr()

    store = Store(data, KeyStore.load(data / "keys.json"))
    try:
        assert store.data.writer.page_mac == OTHER_MAC
        store.data.writer.run_sync(lambda conn: conn.execute("INSERT INTO t VALUES ('kept')"))
        assert store.data.reader().execute("SELECT v FROM t").fetchall() == [("kept",)]
    finally:
        store.close()
    assert "hmac check failed" not in capfd.readouterr().err
