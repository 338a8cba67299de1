"""The key store file is durable before `create` or `add_kek` returns: its bytes are fsynced, and
then, once it has its final name, the directory that holds the name. Without that, a power cut
could bring back the old keys.json while data keys re-wrapped under the new KEK are already
committed in the database, and those could never be unwrapped.

A power cut cannot be simulated here; `os.fsync` is wrapped only to record what each call was
given and what the directory held at that moment, then does the real fsync."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage.keys import KeyStore

REAL_FSYNC = os.fsync


@dataclass(frozen=True)
class Fsync:
    is_directory: bool
    inode: int
    names: tuple[str, ...]  # the directory's entries when the fsync ran
    active_kek: str | None  # `kek_active` of keys.json then, None if it did not exist


def _recording(directory: Path, calls: list[Fsync]) -> Callable[[int], None]:
    def fsync(fd: int) -> None:
        keys = directory / "keys.json"
        active = json.loads(keys.read_text())["kek_active"] if keys.exists() else None
        info = os.fstat(fd)
        names = tuple(sorted(p.name for p in directory.iterdir()))
        calls.append(Fsync(stat.S_ISDIR(info.st_mode), info.st_ino, names, active))
        REAL_FSYNC(fd)

    return fsync


def _directory_syncs(calls: list[Fsync], directory: Path) -> list[Fsync]:
    inode = directory.stat().st_ino
    return [call for call in calls if call.is_directory and call.inode == inode]


def test_create_fsyncs_the_directory_once_the_file_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Fsync] = []
    monkeypatch.setattr(os, "fsync", _recording(tmp_path, calls))
    KeyStore.create(tmp_path / "keys.json")
    assert calls, "nothing was fsynced"
    assert not calls[0].is_directory  # the file's bytes first
    synced = _directory_syncs(calls, tmp_path)
    assert synced, "the key store's directory was never fsynced"
    assert synced[-1] == calls[-1]  # the last thing done
    assert synced[-1].active_kek == "kek-1"


def test_add_kek_fsyncs_the_directory_after_the_replace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = KeyStore.create(tmp_path / "keys.json")
    calls: list[Fsync] = []
    monkeypatch.setattr(os, "fsync", _recording(tmp_path, calls))
    assert keys.add_kek() == "kek-2"
    synced = _directory_syncs(calls, tmp_path)
    assert synced, "the key store's directory was never fsynced after the rotation"
    last = synced[-1]
    assert last == calls[-1]  # nothing left to sync when add_kek returns
    # after the replace: the new file holds the name, the temporary one is gone
    assert last.names == ("keys.json",)
    assert last.active_kek == "kek-2"
