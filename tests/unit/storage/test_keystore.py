"""The key store: mode 0600 from the first byte, never overwritten, never silently created at a
configured location, and a malformed file is a KeyStoreError (exit 2 from the CLI)."""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.runtime import Runtime, load_keys
from gateway.settings import Settings
from storage.crypto import DecryptionError
from storage.keys import DEV_WARNING, KeyStore, KeyStoreError
from storage.store import open_keystore

CLI = str(Path(sys.executable).with_name("consent-gateway"))


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_created_with_mode_0600_and_dev_warning(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "keys.json"
    keys = KeyStore.create(path)
    assert _mode(path) == 0o600
    raw = json.loads(path.read_text())
    assert raw["warning"] == DEV_WARNING
    assert raw["kek_active"] == "kek-1"
    assert keys.keyring.active == "kek-1"


def test_mode_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        KeyStore.create(tmp_path / "keys.json")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "keys.json") == 0o600


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    KeyStore.create(path)
    original = path.read_bytes()
    rotating = tmp_path / "keys.json.tmp"  # a rotation's file, being written under the lock
    rotating.write_bytes(b"{}")
    with pytest.raises(FileExistsError):
        KeyStore.create(path)
    assert path.read_bytes() == original
    # Refused before anything is written, and nobody else's file touched: a create aimed at an
    # existing store deleted the rotation's `.tmp`, and two creators each deleted the other's.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json", "keys.json.tmp"]


def test_created_whole_where_the_file_system_has_no_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vfat, some network and FUSE mounts refuse `link`: the store is then written in place, as
    it was before it was linked into place, rather than no store at all."""

    def no_links(*_: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "keys.json"
    made = KeyStore.create(path)
    assert KeyStore.load(path).database_key == made.database_key
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]


def test_load_round_trips_every_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    created = KeyStore.create(path)
    loaded = KeyStore.load(path)
    assert loaded.pseudonym_key == created.pseudonym_key
    assert loaded.database_key == created.database_key
    assert loaded.directory_key == created.directory_key
    assert loaded.jwt_dev_secret == created.jwt_dev_secret
    assert loaded.signing.kid == created.signing.kid
    wrapped = created.keyring.wrap(b"d" * 32, b"aad")
    assert loaded.keyring.unwrap(wrapped, b"aad") == b"d" * 32


def test_keys_are_distinct_and_full_length(tmp_path: Path) -> None:
    keys = KeyStore.create(tmp_path / "keys.json")
    secrets = [keys.pseudonym_key, keys.database_key, keys.directory_key]
    assert all(len(k) == 32 for k in secrets)
    assert len(set(secrets)) == 3
    assert len(keys.jwt_dev_secret) >= 32
    assert KeyStore.create(tmp_path / "other.json").database_key != keys.database_key


def test_add_kek_persists_atomically_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    keys = KeyStore.create(path)
    assert keys.add_kek() == "kek-2"
    assert _mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]
    assert json.loads(path.read_text())["kek_active"] == "kek-2"
    assert KeyStore.load(path).keyring.key_ids == ("kek-1", "kek-2")


def test_a_leftover_temporary_file_or_link_lends_the_store_neither_its_mode_nor_its_target(
    tmp_path: Path,
) -> None:
    """The rotation's temporary file was opened as found: a leftover one readable by all made the
    key store so at the rename, and a link there was written through."""
    path = tmp_path / "keys.json"
    store = KeyStore.create(path)
    leftover = tmp_path / "keys.json.tmp"
    leftover.write_bytes(b"an editor's backup")
    leftover.chmod(0o644)
    store.add_kek()
    assert _mode(path) == 0o600
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"not the key store's")
    leftover.symlink_to(elsewhere)
    store.add_kek()
    assert _mode(path) == 0o600
    assert elsewhere.read_bytes() == b"not the key store's"
    assert not path.is_symlink()
    assert KeyStore.load(path).keyring.key_ids == ("kek-1", "kek-2", "kek-3")


def test_open_keystore_creates_only_when_asked(tmp_path: Path) -> None:
    missing = tmp_path / "keys.json"
    with pytest.raises(KeyStoreError, match="no key store"):
        open_keystore(missing, create=False)
    assert not missing.exists()
    _, created = open_keystore(missing, create=True)
    assert created
    _, created_again = open_keystore(missing, create=True)
    assert not created_again


def test_configured_keystore_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    configured = tmp_path / "secrets" / "keys.json"
    settings = Settings(data_dir=tmp_path / "data", keystore_file=configured, worker_enabled=False)
    with pytest.raises(KeyStoreError, match="no key store"):
        load_keys(settings)
    with pytest.raises(KeyStoreError):
        Runtime(settings)
    assert not configured.exists()
    assert not (tmp_path / "data" / "keys.json").exists()  # nor created at the default place


def test_default_location_is_created_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", worker_enabled=False)
    keys = load_keys(settings)
    assert keys.path == tmp_path / "data" / "keys.json"
    assert _mode(keys.path) == 0o600


def test_cli_with_a_missing_configured_keystore_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    configured = tmp_path / "keys.json"
    env = {"CGW_KEYSTORE_FILE": str(configured), "CGW_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([CLI, "token", "someone"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert str(configured) in done.stderr
    assert not configured.exists()


def test_serve_names_a_missing_configured_keystore_before_making_the_data_dir(tmp_path: Path) -> None:
    """`serve` made the data dir first, then said "no key store at ..." without naming the
    variable."""
    configured, data_dir = tmp_path / "keys.json", tmp_path / "data"
    env = {"CGW_KEYSTORE_FILE": str(configured), "CGW_DATA_DIR": str(data_dir)}
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = str(free.getsockname()[1])
    done = subprocess.run([CLI, "serve", "--port", port], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        f"consent-gateway: configuration error: CGW_KEYSTORE_FILE: no key store at {configured}"
    )
    assert not data_dir.exists()
    assert not configured.exists()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _set(field: str, value: str) -> Callable[[dict[str, Any]], object]:
    return lambda doc: doc.update({field: value})


def _edit(change: Callable[[dict[str, Any]], object]) -> Callable[[bytes], bytes]:
    def apply(original: bytes) -> bytes:
        doc = json.loads(original)
        change(doc)
        return json.dumps(doc).encode()

    return apply


MALFORMED: list[Any] = [
    pytest.param(lambda raw: b"", id="empty"),
    pytest.param(lambda raw: b"not json", id="not-json"),
    pytest.param(lambda raw: raw[: len(raw) // 2], id="truncated"),
    pytest.param(lambda raw: b"[]", id="array"),
    pytest.param(_edit(lambda d: d.pop("database_key")), id="missing-field"),
    pytest.param(_edit(lambda d: d.update(extra="x")), id="unknown-field"),
    pytest.param(_edit(lambda d: d.update(version="1")), id="wrong-type"),
    pytest.param(_edit(lambda d: d.update(kek_active="kek-9")), id="active-kek-missing"),
    pytest.param(_edit(lambda d: d["kek"].update({"kek-1": _b64(b"short")})), id="short-kek"),
    pytest.param(_edit(lambda d: d.update(signing_key=_b64(b"short"))), id="short-signing-key"),
    pytest.param(_edit(lambda d: d.update(pseudonym_key="%%%not base64%%%")), id="bad-base64"),
    *(
        pytest.param(_edit(_set(field, value)), id=label)
        for label, field, value in (
            ("short-pseudonym-key", "pseudonym_key", _b64(b"short")),
            ("short-database-key", "database_key", _b64(b"short")),
            ("long-database-key", "database_key", _b64(b"k" * 33)),
            ("short-directory-key", "directory_key", _b64(b"short")),
            ("short-jwt-dev-secret", "jwt_dev_secret", "short"),
        )
    ),
]


@pytest.mark.parametrize("mangle", MALFORMED)
def test_malformed_file_is_a_keystore_error(tmp_path: Path, mangle: Callable[[bytes], bytes]) -> None:
    path = tmp_path / "keys.json"
    KeyStore.create(path)
    path.write_bytes(mangle(path.read_bytes()))
    with pytest.raises(KeyStoreError, match="malformed"):
        KeyStore.load(path)


@pytest.mark.parametrize(
    ("field", "named"),
    [
        ("pseudonym_key", "pseudonym_key"),
        ("database_key", "database_key"),
        ("directory_key", "directory_key"),
        ("signing_key", "signing_key"),
        ("kek", "kek[kek-1]"),
    ],
)
def test_a_key_that_does_not_decode_is_named(tmp_path: Path, field: str, named: str) -> None:
    """Every damaged key was "malformed: Incorrect padding", the operator left to guess which."""
    path = tmp_path / "keys.json"
    KeyStore.create(path)
    stored = json.loads(path.read_text())
    holder, name = (stored["kek"], "kek-1") if field == "kek" else (stored, field)
    holder[name] = "*" + holder[name]  # one character no base64 has: one too many for its padding
    path.write_text(json.dumps(stored))
    with pytest.raises(KeyStoreError, match=rf"malformed: {re.escape(named)}: not base64url"):
        KeyStore.load(path)


def test_cli_with_a_malformed_keystore_exits_2_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    KeyStore.create(data / "keys.json")
    (data / "keys.json").write_text("{}")
    done = subprocess.run(
        [CLI, "audit", "verify", "--data-dir", str(data)], env={}, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "malformed" in done.stderr


def test_rotations_at_once_keep_every_key(tmp_path: Path) -> None:
    """Four stores over one file (threads standing in for requests and processes) rotating at
    once: every key any of them made is in the file, so whatever it wrapped opens after a restart.
    Each used to pick the same next id and write the same temporary file."""
    path = tmp_path / "keys.json"
    KeyStore.create(path)
    stores = [KeyStore.load(path) for _ in range(4)]
    start = threading.Barrier(len(stores))
    wrapped: dict[int, bytes] = {}

    def rotate(i: int) -> None:
        start.wait()
        stores[i].add_kek()
        wrapped[i] = stores[i].keyring.wrap(b"k" * 32, b"aad")

    threads = [threading.Thread(target=rotate, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    restarted = KeyStore.load(path)
    assert restarted.keyring.key_ids == ("kek-1", "kek-2", "kek-3", "kek-4", "kek-5")
    assert all(restarted.keyring.unwrap(w, b"aad") == b"k" * 32 for w in wrapped.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]


def test_a_store_learns_a_key_another_process_added(tmp_path: Path) -> None:
    """A separate worker loaded the keys before `serve` rotated: unwrapping a data key wrapped
    under the new key-encryption key reads the file again instead of failing every round."""
    path = tmp_path / "keys.json"
    serve, worker = KeyStore.create(path), KeyStore.load(path)
    serve.add_kek()
    rewrapped = serve.keyring.wrap(b"d" * 32, b"aad")
    assert worker.keyring.unwrap(rewrapped, b"aad") == b"d" * 32
    assert worker.keyring.active == "kek-2"
    with pytest.raises(DecryptionError):  # an unknown id still fails, after one more look
        worker.keyring.unwrap(rewrapped.replace(b"kek-2", b"kek-7"), b"aad")


def test_a_wrap_after_another_process_rotated_uses_the_new_key(tmp_path: Path) -> None:
    """Regression: a second process re-read the key store only to unwrap a key it lacked, so it
    went on wrapping new subjects' data keys under the key a rotation had retired (and that the
    operator would then remove, losing them; or that had leaked)."""
    path = tmp_path / "keys.json"
    KeyStore.create(path)
    rotating, other = KeyStore.load(path), KeyStore.load(path)
    assert other.keyring.key_id_of(other.keyring.wrap(b"k" * 32, b"aad")) == "kek-1"

    new = rotating.add_kek()

    wrapped = other.keyring.wrap(b"k" * 32, b"aad")
    assert new == "kek-2" == other.keyring.key_id_of(wrapped)
    assert rotating.keyring.unwrap(wrapped, b"aad") == b"k" * 32


@pytest.mark.parametrize("mode", [0o666, 0o602, 0o646])
def test_a_key_store_anyone_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    """Any local user could swap its signing key or a key-encryption key; it was served."""
    path = tmp_path / "keys.json"
    KeyStore.create(path)
    path.chmod(mode)
    with pytest.raises(
        KeyStoreError, match=rf"is writable by anyone \(mode 0{mode:o}\): make it the gateway's own"
    ):
        KeyStore.load(path)
    path.chmod(0o644)  # readable by others, as a secret mounted by an orchestrator may be: loads
    assert KeyStore.load(path).path == path


@pytest.mark.parametrize("mode", [0o620, 0o660, 0o670])
def test_a_key_store_its_group_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    """Any member of its group could swap its signing key or add a key-encryption key: a review
    found one of mode 0660 served without a word, where 0666 was refused."""
    path = tmp_path / "keys.json"
    KeyStore.create(path)
    path.chmod(mode)
    with pytest.raises(
        KeyStoreError, match=rf"is writable by its group \(mode 0{mode:o}\): make it the gateway's own"
    ):
        KeyStore.load(path)
    path.chmod(0o640)  # readable by its group, as a secret mounted for a group is: loads
    assert KeyStore.load(path).path == path


def test_a_key_store_replaced_by_another_lends_no_key_encryption_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another deployment's store put in place of this one's while serving (a wrong secret
    mounted): its active key-encryption key was taken up at the next wrap, so new subjects' data
    keys were wrapped under a key this deployment's own store lacks, and lost once it was put
    back. The process keeps wrapping under its own active key, and says so once."""
    path, other = tmp_path / "keys.json", tmp_path / "other" / "keys.json"
    other.parent.mkdir()
    KeyStore.create(path)
    own = path.read_bytes()
    serving = KeyStore.load(path)
    foreign = KeyStore.create(other)
    foreign.add_kek()
    foreign.add_kek()  # "kek-3", an id this deployment has not used
    os.replace(other, path)

    with caplog.at_level(logging.ERROR, logger="storage.keys"):
        wrapped = [serving.keyring.wrap(b"k" * 32, b"aad") for _ in range(3)]
    assert {serving.keyring.key_id_of(w) for w in wrapped} == {"kek-1"}
    assert serving.keyring.key_ids == ("kek-1",)
    assert len([r for r in caplog.records if "replaced by another" in r.getMessage()]) == 1

    # Its own store put back, then rotated by another process of this deployment: taken up.
    other.write_bytes(own)
    other.chmod(0o600)
    os.replace(other, path)
    new = KeyStore.load(path).add_kek()
    assert new == "kek-2"
    assert serving.keyring.key_id_of(serving.keyring.wrap(b"k" * 32, b"aad")) == "kek-2"


def test_a_store_with_this_ones_keys_but_another_key_encryption_key_lends_none(tmp_path: Path) -> None:
    """The same database, directory and pseudonym keys, but `kek-1` made anew and a `kek-2`
    active: a store this process's data keys do not open is not its own rotated."""
    path = tmp_path / "keys.json"
    KeyStore.create(path)
    serving = KeyStore.load(path)
    forged = json.loads(path.read_bytes())
    fresh = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    forged["kek"] = {"kek-1": fresh, "kek-2": fresh}
    forged["kek_active"] = "kek-2"
    staged = tmp_path / "staged.json"
    staged.write_text(json.dumps(forged))
    staged.chmod(0o600)
    os.replace(staged, path)

    wrapped = serving.keyring.wrap(b"k" * 32, b"aad")
    assert serving.keyring.key_id_of(wrapped) == "kek-1"
    assert serving.keyring.key_ids == ("kek-1",)


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o604, True), (0o640, False), (0o600, False)])
def test_a_key_store_anyone_may_read_is_served_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int, warned: bool
) -> None:
    """Any local user could read every key: served (a mounted secret may be so where no other
    user is), but not without a word."""
    path = tmp_path / "prod-keys.json"
    KeyStore.create(path)
    path.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="gateway"):
        assert load_keys(Settings(data_dir=tmp_path / "data", keystore_file=path)).path == path
    said = [r for r in caplog.records if r.getMessage() == "the key store is readable by anyone"]
    assert bool(said) is warned
