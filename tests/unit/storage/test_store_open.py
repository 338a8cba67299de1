"""What `Store` refuses to open: half a data dir, a database a newer version migrated, (for the
commands that change nothing) a database not yet migrated to this version, and a key store lacking
a key-encryption key that wraps data keys.

Each was opened without a word: a missing database was made anew and empty (the ledger restarted
at event 1, or every data key was gone), a newer schema was used as if it were this one's, and
`audit verify` migrated the files it was checking.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from storage import ledger
from storage.connections import Connection, connect
from storage.failures import DatabaseLockedError
from storage.keys import KeyStore, KeyStoreError
from storage.migrations import DATA_MIGRATIONS, DIRECTORY_MIGRATIONS, SchemaError, migrate
from storage.repositories import devices
from storage.store import DATA_FILE, DIRECTORY_FILE, DataDirError, Store, check_pair


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


def test_the_pair_is_checked_as_a_first_start_finishes_not_halfway(tmp_path: Path) -> None:
    """`token` and the audit commands check the pair of a data dir a gateway may be setting up:
    mid-way it holds one database, under the lock `Store` takes to make both."""
    (tmp_path / DATA_FILE).touch()
    outcome: list[BaseException | None] = []

    def check() -> None:
        try:
            check_pair(tmp_path)
            outcome.append(None)
        except DataDirError as exc:
            outcome.append(exc)

    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as `Store` holds it while it makes the databases
        checker = threading.Thread(target=check)
        checker.start()
        checker.join(timeout=0.5)  # long enough for a check that does not wait to have refused
        (tmp_path / DIRECTORY_FILE).touch()
    finally:
        os.close(fd)
    checker.join()
    assert outcome == [None]


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
    newest = re.escape(DATA_MIGRATIONS[-1][0])
    with pytest.raises(SchemaError, match=rf"gateway\.db was migrated by a newer version \({newest}\)"):
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


def _subject(data: Path, ref: str) -> None:
    store = Store(data, _keys(data))
    try:
        store.directory.ensure(ref, datetime.now(UTC))
    finally:
        store.close()


def _keystore_with_keks(data: Path, target: Path, keks: dict[str, str], active: str) -> KeyStore:
    """A copy of the data dir's key store with these key-encryption keys (ids to keys or to the
    id of the original key to reuse), every other key the same."""
    raw = json.loads((data / "keys.json").read_text())
    raw["kek"] = {kid: raw["kek"].get(source, source) for kid, source in keks.items()}
    raw["kek_active"] = active
    target.write_text(json.dumps(raw))
    return KeyStore.load(target)


def test_a_key_store_lacking_a_key_that_wraps_data_keys_is_refused(data_dir: Path, tmp_path: Path) -> None:
    """It started and said it was ready, then answered 500 to every request of those subjects."""
    _subject(data_dir, "ref_1")
    other = _keystore_with_keks(data_dir, tmp_path / "other.json", {"kek-7": "kek-1"}, "kek-7")
    with pytest.raises(KeyStoreError, match=r"lacks kek-1, which wraps data keys in subjects\.db"):
        Store(data_dir, other)
    with pytest.raises(KeyStoreError, match="lacks kek-1"):
        Store(data_dir, other, migrate=False)


def _rotated_with_one_subject(data_dir: Path) -> None:
    """`ref_1` made, then every data key re-wrapped under a new `kek-2` (kept in the key store)."""
    _subject(data_dir, "ref_1")
    keys = _keys(data_dir)
    store = Store(data_dir, keys)
    keys.add_kek()
    assert store.directory.rewrap_all() == 1
    store.close()


def _wrapping_keys(store: Store) -> list[bytes]:
    conn = store._directory_db.reader()
    return [bytes(p) for (p,) in conn.execute("SELECT prefix FROM wrapping_keys")]


def test_a_key_no_data_key_uses_any_more_may_go(data_dir: Path, tmp_path: Path) -> None:
    """After a rotation re-wrapped every data key, the old key-encryption key is not needed."""
    _rotated_with_one_subject(data_dir)
    kept = _keystore_with_keks(data_dir, tmp_path / "kept.json", {"kek-2": "kek-2"}, "kek-2")
    Store(data_dir, kept).close()
    reopened = Store(data_dir, kept)
    try:
        assert reopened.directory.resolve("ref_1") is not None
        assert _wrapping_keys(reopened) == [b"\x01\x05kek-2"]
    finally:
        reopened.close()


def test_the_key_check_reads_one_data_key_per_key_on_a_healthy_start(data_dir: Path) -> None:
    """A million subjects must not slow a start: the check reads `wrapping_keys` and, for each key
    listed, the first data key it finds under it, not every subject."""
    for n in range(3):
        _subject(data_dir, f"ref_{n}")
    store = Store(data_dir, _keys(data_dir))
    try:
        statements: list[str] = []
        store._directory_db.writer._conn.set_trace_callback(statements.append)
        store._require_wrapping_keys(tidy=True)
        store._directory_db.writer._conn.set_trace_callback(None)
    finally:
        store.close()
    assert statements[0] == "SELECT prefix FROM wrapping_keys"
    assert len(statements) == 2
    assert statements[1].startswith("SELECT subject_id, wrapped_key FROM subjects WHERE ")
    assert statements[1].endswith(" LIMIT 1")


def _damaged(data: Path, target: Path, field: str, kid: str | None = None) -> KeyStore:
    """A copy of the data dir's key store with one character of a key changed: the same ids,
    another key."""
    raw = json.loads((data / "keys.json").read_text())
    holder, name = (raw["kek"], kid) if kid is not None else (raw, field)
    value = holder[name]
    holder[name] = ("B" if value[0] == "A" else "A") + value[1:]
    target.write_text(json.dumps(raw))
    return KeyStore.load(target)


def test_a_key_store_whose_key_encryption_key_was_changed_is_refused(data_dir: Path, tmp_path: Path) -> None:
    """It held `kek-1` by its id, started, said it was ready, and answered 500 to every request of
    the subjects whose data keys `kek-1` wrapped."""
    _subject(data_dir, "ref_1")
    damaged = _damaged(data_dir, tmp_path / "damaged.json", "kek", kid="kek-1")
    for migrating in (True, False):
        with pytest.raises(KeyStoreError, match=r"kek-1 in the key store .* does not open the data keys"):
            Store(data_dir, damaged, migrate=migrating)
    Store(data_dir, _keys(data_dir)).close()  # the right one still opens it


def test_a_key_store_whose_pseudonym_key_was_changed_is_refused(data_dir: Path, tmp_path: Path) -> None:
    """It started and made every user a new subject: consents read as never given, and what was
    done meanwhile was left under refs the right key never makes again."""
    _subject(data_dir, "ref_1")
    damaged = _damaged(data_dir, tmp_path / "damaged.json", "pseudonym_key")
    for migrating in (True, False):
        with pytest.raises(KeyStoreError, match=r"the pseudonym key in the key store .* is not the one"):
            Store(data_dir, damaged, migrate=migrating)
    store = Store(data_dir, _keys(data_dir))
    try:
        assert store.directory.resolve("ref_1") is not None
    finally:
        store.close()


def test_a_key_store_whose_signing_key_was_changed_is_refused(data_dir: Path, tmp_path: Path) -> None:
    """It started and said it was ready; JWKS no longer held the key every earlier receipt and
    checkpoint was signed with, so none verified and the ledger's verification failed."""
    damaged = _damaged(data_dir, tmp_path / "damaged.json", "signing_key")
    with pytest.raises(KeyStoreError, match=r"the signing key in the key store .* neither is nor"):
        Store(data_dir, damaged)
    Store(data_dir, damaged, migrate=False).close()  # `audit verify` reports what does not verify
    Store(data_dir, _keys(data_dir)).close()


def test_a_new_signing_key_deployed_with_the_old_one_retired_is_taken(data_dir: Path, tmp_path: Path) -> None:
    """README and SECURITY.md: a new `signing_key`, the old one's `x` under
    `retired_signing_keys`. It becomes the key checked against: the old key store is then refused."""
    raw = json.loads((data_dir / "keys.json").read_text())
    old = Ed25519PrivateKey.from_private_bytes(_unb64(raw["signing_key"]))
    raw["signing_key"] = _b64(Ed25519PrivateKey.generate().private_bytes_raw())
    raw["retired_signing_keys"] = [_b64(old.public_key().public_bytes_raw())]
    (tmp_path / "new.json").write_text(json.dumps(raw))
    new = KeyStore.load(tmp_path / "new.json")
    Store(data_dir, new).close()
    with pytest.raises(KeyStoreError, match="was replaced here before"):
        Store(data_dir, _keys(data_dir))


def test_a_key_replaced_here_does_not_sign_again_even_listing_its_successor_as_retired(
    data_dir: Path, tmp_path: Path
) -> None:
    """A key store from before a rotation (after a leak, say), edited to retire the new key: it
    put the retired key back to signing, and every check passed, the last signer being retired."""
    raw = json.loads((data_dir / "keys.json").read_text())
    old_key = raw["signing_key"]
    old = Ed25519PrivateKey.from_private_bytes(_unb64(old_key))
    successor = Ed25519PrivateKey.generate()
    raw["signing_key"] = _b64(successor.private_bytes_raw())
    raw["retired_signing_keys"] = [_b64(old.public_key().public_bytes_raw())]
    (tmp_path / "new.json").write_text(json.dumps(raw))
    Store(data_dir, KeyStore.load(tmp_path / "new.json")).close()
    raw["signing_key"] = old_key
    raw["retired_signing_keys"] = [_b64(successor.public_key().public_bytes_raw())]
    (tmp_path / "back.json").write_text(json.dumps(raw))
    with pytest.raises(
        KeyStoreError, match="was replaced here before, and a retired key does not sign again"
    ):
        Store(data_dir, KeyStore.load(tmp_path / "back.json"))


def test_a_signing_key_listed_among_its_own_retired_keys_is_refused(data_dir: Path, tmp_path: Path) -> None:
    """It was dropped from the list and signed on: a leaked key an operator listed as retired
    without deploying a new one stayed in use."""
    raw = json.loads((data_dir / "keys.json").read_text())
    signing = Ed25519PrivateKey.from_private_bytes(_unb64(raw["signing_key"]))
    raw["retired_signing_keys"] = [_b64(signing.public_key().public_bytes_raw())]
    (tmp_path / "self.json").write_text(json.dumps(raw))
    with pytest.raises(KeyStoreError, match="lists the signing key itself: a retired key does not sign"):
        KeyStore.load(tmp_path / "self.json")


def test_a_retired_key_listed_by_its_kid_is_refused_saying_so(data_dir: Path, tmp_path: Path) -> None:
    """A kid is 32 bytes of base64url too, so it loads as a public key that verifies nothing:
    the operator pasted the JWK's `kid` where its `x` belongs."""
    raw = json.loads((data_dir / "keys.json").read_text())
    old_kid = _keys(data_dir).signing.kid
    raw["signing_key"] = _b64(Ed25519PrivateKey.generate().private_bytes_raw())
    raw["retired_signing_keys"] = [old_kid]
    (tmp_path / "new.json").write_text(json.dumps(raw))
    with pytest.raises(KeyStoreError, match=f"lists the old key's kid {old_kid}: list its x instead"):
        Store(data_dir, KeyStore.load(tmp_path / "new.json"))


def _as_before_key_checks(
    data: Path, *, checkpoint: bool = True, old_receipt: bool = False, checkpoint_kid: str | None = None
) -> None:
    """A data dir as the version before `key_checks` left it, upgraded: an erased subject whose
    device a pending cleanup has not removed yet, a live subject with a device and a consent
    receipt signed with the signing key, a checkpoint signed with it too (or none: only an
    auditor's request makes one), and no key check kept yet."""
    keys = _keys(data)
    store = Store(data, keys)
    try:
        now, tags = datetime.now(UTC), store.device_tags
        gone, live = (store.directory.ensure(ref, now) for ref in ("ref_gone", "ref_1"))
        header = _b64(json.dumps({"alg": "EdDSA", "kid": keys.signing.kid}).encode())
        receipt = json.dumps(
            {"receipt": {}, "jws": f"{header}.e30.c2ln"}  # as receipts were kept before SignedParts
            if old_receipt
            else {"protected": header, "document": {}, "signature": "c2ln"}
        ).encode()
        signer = _b64(json.dumps({"alg": "EdDSA", "kid": checkpoint_kid or keys.signing.kid}).encode())

        def before(conn: Connection) -> None:
            for key, token in ((gone, "relay-0"), (live, "relay-1")):
                devices.insert(conn, key, "webhook", token, devices.token_tag(tags, "webhook", token), now)
            ledger.append(
                conn, at=now, subject=live, kind="consent.given", actor="user", source="api", content=receipt
            )
            if checkpoint:
                conn.execute(
                    "INSERT INTO checkpoints (tree_size, root_hash, at, jws) VALUES (1, zeroblob(32), ?, ?)",
                    (now.isoformat(), f"{signer}.e30.c2ln"),
                )

        store.data.writer.run_sync(before)
        store._directory_db.writer.run_sync(
            lambda conn: (
                conn.execute("DELETE FROM key_checks"),
                conn.execute("DELETE FROM subjects WHERE subject_ref = 'ref_gone'"),
            )
        )
    finally:
        store.close()


@pytest.mark.parametrize(("checkpoint", "old_receipt"), [(True, False), (False, False), (False, True)])
@pytest.mark.parametrize("field", ["pseudonym_key", "signing_key"])
def test_the_first_start_after_the_upgrade_checks_the_keys_against_what_is_there(
    data_dir: Path, tmp_path: Path, field: str, checkpoint: bool, old_receipt: bool
) -> None:
    """With no key check kept yet, the first start trusted any key store and kept its keys: a
    wrong one started (every user a new subject; no receipt or checkpoint verifying), and the
    right one was refused after. A live subject's device tag tells the pseudonym key (an erased
    subject's, left for a pending cleanup, tells nothing), the newest checkpoint or consent
    receipt the signing key."""
    _as_before_key_checks(data_dir, checkpoint=checkpoint, old_receipt=old_receipt)
    damaged = _damaged(data_dir, tmp_path / "damaged.json", field)
    with pytest.raises(KeyStoreError, match="pseudonym key" if field == "pseudonym_key" else "signing key"):
        Store(data_dir, damaged)
    store = Store(data_dir, _keys(data_dir))  # the right key store opens it, and keeps the checks
    try:
        kept = store._directory_db.reader().execute("SELECT name FROM key_checks ORDER BY name").fetchall()
        assert kept == [("pseudonym_key",), ("signing_kid",)]
    finally:
        store.close()


def test_a_checkpoint_over_the_newest_receipt_is_the_newer_signature(data_dir: Path) -> None:
    """A checkpoint over N events is signed after event N: here by a key this store neither holds
    nor retires, so the start is refused. Which signature counted was decided by the kids' order."""
    _as_before_key_checks(data_dir, checkpoint_kid="-another-key")
    with pytest.raises(KeyStoreError, match="neither is nor retires"):
        Store(data_dir, _keys(data_dir))


def test_a_dropped_checkpoints_table_does_not_stop_the_first_start_after_the_upgrade(data_dir: Path) -> None:
    """A verdict of `audit verify` (`checkpoints_missing`), never an error: the kid was read from
    the table unguarded, a traceback instead of a start."""
    _as_before_key_checks(data_dir)
    store = Store(data_dir, _keys(data_dir), migrate=False)
    store.data.writer.run_sync(lambda conn: conn.execute("DROP TABLE checkpoints"))
    store.close()
    Store(data_dir, _keys(data_dir)).close()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_a_key_kept_after_every_data_key_left_it_is_looked_for_once(data_dir: Path) -> None:
    """A rotation re-wrapped every data key, the old key stays in the key store: a start drops
    its row rather than scan every subject for it at each start."""
    _rotated_with_one_subject(data_dir)
    Store(data_dir, _keys(data_dir)).close()
    reopened = Store(data_dir, _keys(data_dir))
    try:
        assert _wrapping_keys(reopened) == [b"\x01\x05kek-2"]
    finally:
        reopened.close()


def test_only_a_wrong_key_is_told_as_one(tmp_path: Path) -> None:
    """A file SQLite could not open (here: its directory is gone; in the field, a directory or
    volume the process may not write, where the `-shm` cannot be made) was "wrong key or not a
    database", sending operators to their key store."""
    path = tmp_path / "gateway.db"
    connect(path, b"k" * 32).close()
    with pytest.raises(DatabaseLockedError, match="wrong key"):
        connect(path, b"w" * 32)
    missing = tmp_path / "gone" / "gateway.db"
    with pytest.raises(OSError, match="unable to open database file") as refused:
        connect(missing, b"k" * 32)
    assert str(missing) in str(refused.value)
    assert not isinstance(refused.value, DatabaseLockedError)
