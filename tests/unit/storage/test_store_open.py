"""What `Store` refuses to open: half a data dir, a database a newer version migrated, and (for the
commands that change nothing) a database not yet migrated to this version.

Each was opened without a word: a missing database was made anew and empty (the ledger restarted
at event 1, or every data key was gone), a newer schema was used as if it were this one's, and
`audit verify` migrated the files it was checking.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.db import connect
from storage.keys import KeyStore
from storage.migrations import DATA_MIGRATIONS, DIRECTORY_MIGRATIONS, SchemaError, migrate
from storage.store import DATA_FILE, DIRECTORY_FILE, DataDirError, Store


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    Store(data, KeyStore.create(data / "keys.json")).close()
    return data


def _keys(data: Path) -> KeyStore:
    return KeyStore.load(data / "keys.json")


def _file_key(data: Path, name: str) -> bytes:
    keys = _keys(data)
    return keys.database_key if name == DATA_FILE else keys.directory_key


@pytest.mark.parametrize(("missing", "kept"), [(DATA_FILE, DIRECTORY_FILE), (DIRECTORY_FILE, DATA_FILE)])
def test_one_database_without_the_other_is_refused_not_made_anew(
    data_dir: Path, missing: str, kept: str
) -> None:
    for suffix in ("", "-wal", "-shm"):
        (data_dir / f"{missing}{suffix}").unlink(missing_ok=True)
    with pytest.raises(DataDirError, match=f"^{kept} exists but {missing} is missing in "):
        Store(data_dir, _keys(data_dir))
    assert not (data_dir / missing).exists()


def test_an_empty_data_dir_gets_both_databases(tmp_path: Path) -> None:
    data = tmp_path / "data"
    Store(data, KeyStore.create(data / "keys.json")).close()
    assert (data / DATA_FILE).is_file()
    assert (data / DIRECTORY_FILE).is_file()


@pytest.mark.parametrize("name", [DATA_FILE, DIRECTORY_FILE])
def test_a_database_migrated_by_a_newer_version_is_refused(data_dir: Path, name: str) -> None:
    conn = connect(data_dir / name, _file_key(data_dir, name))
    conn.execute("INSERT INTO _migrations VALUES ('0099_from_the_future', '2030-01-01')")
    conn.close()
    for migrating in (True, False):
        with pytest.raises(
            SchemaError, match=rf"^{name} was migrated by a newer version \(0099_from_the_future\)"
        ):
            Store(data_dir, _keys(data_dir), migrate=migrating)


def test_migrate_refuses_a_newer_database_before_touching_it(tmp_path: Path) -> None:
    conn = connect(tmp_path / DATA_FILE, b"k" * 32)
    migrate(conn, DATA_MIGRATIONS)
    with pytest.raises(SchemaError, match=r"gateway\.db was migrated by a newer version \(0013_"):
        migrate(conn, DATA_MIGRATIONS[:-1])
    conn.close()


def test_without_migrating_a_pending_migration_is_refused_and_not_applied(tmp_path: Path) -> None:
    data = tmp_path / "data"
    keys = KeyStore.create(data / "keys.json")
    last = DATA_MIGRATIONS[-1][0]
    for name, key, steps in (
        (DATA_FILE, keys.database_key, DATA_MIGRATIONS[:-1]),
        (DIRECTORY_FILE, keys.directory_key, DIRECTORY_MIGRATIONS),
    ):
        conn = connect(data / name, key)
        migrate(conn, steps)
        conn.close()
    with pytest.raises(SchemaError, match=rf"^gateway\.db has migrations pending \({last}\)"):
        Store(data, keys, migrate=False)
    conn = connect(data / DATA_FILE, keys.database_key)
    assert conn.execute("SELECT count(*) FROM _migrations WHERE name = ?", (last,)).fetchone() == (0,)
    conn.close()
    Store(data, keys).close()  # a start applies it
    Store(data, keys, migrate=False).close()  # and then the audit commands open it
