"""Opens everything storage needs, in order: key store, both databases, migrations."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from storage.db import Database
from storage.directory import SubjectDirectory
from storage.keys import KeyStore
from storage.migrations import DATA_MIGRATIONS, DIRECTORY_MIGRATIONS, migrate
from storage.pseudonyms import Pseudonymizer

__all__ = ["Store", "open_keystore"]

DATA_FILE = "gateway.db"
DIRECTORY_FILE = "subjects.db"


def open_keystore(path: Path, *, create: bool) -> tuple[KeyStore, bool]:
    """Load the key store; when `create` and there is none yet, make dev keys. Returns (store, created)."""
    if path.exists() or not create:
        return KeyStore.load(path), False
    return KeyStore.create(path), True


class Store:
    def __init__(self, data_dir: Path, keys: KeyStore) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.keys = keys
        self.pseudonyms = Pseudonymizer(keys.pseudonym_key)
        self.data = Database(data_dir / DATA_FILE, keys.database_key, name="data")
        self._directory_db = Database(data_dir / DIRECTORY_FILE, keys.directory_key, name="directory")
        for db, steps in ((self.data, DATA_MIGRATIONS), (self._directory_db, DIRECTORY_MIGRATIONS)):
            db.writer.run_alone(partial(migrate, migrations=steps))
        self.directory = SubjectDirectory(self._directory_db, keys.keyring)

    async def durable(self) -> None:
        """Once every commit so far, in both databases, is on disk (see `storage.db`)."""
        await self.data.writer.durable()
        await self._directory_db.writer.durable()

    def failure(self) -> OSError | None:
        """A failed sync in either database. Final: only a new process, whose WAL recovery reads
        what really reached the disk, can write again (see `storage.db._Syncer`)."""
        return self.data.writer.failure or self._directory_db.writer.failure

    def close(self) -> None:
        self.data.close()
        self._directory_db.close()
