"""What `Store` refuses to open: half a data dir.

It was opened without a word: a missing database was made anew and empty (the ledger restarted
at event 1, or every data key was gone).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.keys import KeyStore
from storage.store import DATA_FILE, DIRECTORY_FILE, DataDirError, Store


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    Store(data, KeyStore.create(data / "keys.json")).close()
    return data


def _keys(data: Path) -> KeyStore:
    return KeyStore.load(data / "keys.json")


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
