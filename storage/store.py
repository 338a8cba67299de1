"""Opens everything storage needs, in order: key store, both databases, migrations."""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from storage import b64url, ledger
from storage.connections import Connection, quiet_cipher_log
from storage.crypto import DecryptionError, KeyedHash, wrapping_key_id
from storage.db import Database
from storage.directory import SubjectDirectory, SubjectKey, opens
from storage.failures import StorageBusyError, StorageFullError, is_corrupt
from storage.keys import KeyStore, KeyStoreError, SigningKey, locked
from storage.migrations import DATA_MIGRATIONS, DIRECTORY_MIGRATIONS, require_migrated
from storage.migrations import migrate as apply_migrations
from storage.pseudonyms import Pseudonymizer
from storage.repositories import audit, devices

__all__ = [
    "DATA_FILE", "DIRECTORY_FILE", "DataDirError", "Store", "check_pair", "existing_data", "open_keystore",
]  # fmt: skip

log = logging.getLogger("storage.store")

T = TypeVar("T")
_ERASED_MEANWHILE_TRIES = 3

DATA_FILE = "gateway.db"
DIRECTORY_FILE = "subjects.db"


def open_keystore(path: Path, *, create: bool) -> tuple[KeyStore, bool]:
    """Load the key store; when `create` and there is none yet, make dev keys. Returns (store, created).

    Dev keys live next to the data (`path.parent` is the data dir), and never for databases that
    are already there: those were written under other keys — a production key store whose
    CGW_KEYSTORE_FILE was forgotten — which new keys cannot open, and the data would look lost."""
    if path.exists() or not create:
        return KeyStore.load(path), False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Looked at again under the key store's lock: `serve` and `worker` started together on a new
    # data dir both found no store, and the one that lost the race to create it stopped.
    with locked(path):
        if path.exists():
            return KeyStore.load(path), False
        if found := existing_data(path.parent):
            raise KeyStoreError(
                f"no key store at {path}, but {path.parent} already holds {found}: "
                "set CGW_KEYSTORE_FILE to the key store it was written with"
            )
        return KeyStore.create(path), True


def existing_data(data_dir: Path) -> str | None:
    """The first database file found in `data_dir`, or None when it holds none."""
    return next((name for name in (DATA_FILE, DIRECTORY_FILE) if (data_dir / name).exists()), None)


class DataDirError(Exception):
    """The data dir holds one of the two databases without the other."""


def check_pair(data_dir: Path) -> None:
    """Refuse (`DataDirError`) a data dir holding one database without the other. Opening it would
    make a new, empty one in its place without a word: without gateway.db the ledger starts again
    at event 1 (and `audit verify` finds it clean), without subjects.db every data key is gone.
    Looked at under the data dir's lock, as `Store` opens it: a gateway starting for the first
    time has made one database and not yet the other."""
    if not data_dir.is_dir():
        return  # no data dir, so no database without the other
    with _locked_dir(data_dir):
        _check_pair(data_dir)


def _check_pair(data_dir: Path) -> None:
    found = [name for name in (DATA_FILE, DIRECTORY_FILE) if (data_dir / name).exists()]
    if len(found) == 1:
        (there,) = found
        missing = DIRECTORY_FILE if there == DATA_FILE else DATA_FILE
        raise DataDirError(
            f"{there} exists but {missing} is missing in {data_dir}: restore both from one backup "
            "(only an empty data dir gets new databases)"
        )


class Store:
    def __init__(
        self, data_dir: Path, keys: KeyStore, *, migrate: bool = True, signs: bool | None = None
    ) -> None:
        """Opens both databases and applies pending migrations; with `migrate=False` (commands
        that change nothing) a database not at this version is refused instead (`SchemaError`).
        `signs`: the process signs (receipts, checkpoints), so its signing key is checked; by
        default a process that migrates does. `audit export` signs without migrating; `audit
        verify` neither, and reports what a wrong key leaves unverifiable instead."""
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds both databases
        self.data_dir = data_dir
        self.damaged_page_errors = 0  # since start: each is an error `after_failure` was told of
        self._damage_lock = threading.Lock()
        self._damage_noted: weakref.WeakSet[BaseException] = weakref.WeakSet()
        self.keys = keys
        self.pseudonyms = Pseudonymizer(keys.pseudonym_key)
        self.device_tags = KeyedHash(_derived(keys.pseudonym_key, b"device token tags"))
        with quiet_cipher_log(), _locked_dir(data_dir):
            _check_pair(data_dir)
            # A unit of either writer may read the other database too (the directory, inside a
            # push's unit): a damaged page it meets renews the readers of both.
            renew = self.after_failure
            self.data = Database(data_dir / DATA_FILE, keys.database_key, name="data", on_damaged_page=renew)
            try:
                self._directory_db = Database(
                    data_dir / DIRECTORY_FILE, keys.directory_key, name="directory", on_damaged_page=renew
                )
            except BaseException:
                self.data.close()
                raise
        prepare = apply_migrations if migrate else require_migrated
        try:
            for db, steps in ((self.data, DATA_MIGRATIONS), (self._directory_db, DIRECTORY_MIGRATIONS)):
                db.writer.run_alone(partial(prepare, migrations=steps))
            self._require_wrapping_keys(tidy=migrate)
            self.directory = SubjectDirectory(self._directory_db, keys.keyring)
            self._require_pseudonym_key(record=migrate)
            if migrate if signs is None else signs:
                self._require_signing_key(record=migrate)
        except BaseException:
            self.close()
            raise
        self._keystore_seen: tuple[int, int, int, int] | None = None  # last found to hold our keys
        # None: the first look reads the file, which may have been replaced since `keys` were read.
        self._signing_seen: tuple[int, int, int, int] | None = None

    def _require_wrapping_keys(self, *, tidy: bool) -> None:
        """Refuse (`KeyStoreError`) a key store lacking a key-encryption key that wraps data keys
        here, or holding one by its id that does not open them (one character of it changed):
        the gateway started and said it was ready, then failed every request of those subjects
        (500, a `DecryptionError` each). Read from `wrapping_keys`, a few rows however many
        subjects there are, and one data key under each, found at once for a key in use; a key
        listed there that no data key uses any more (a rotation re-wrapped them all) has its row
        dropped (when `tidy`), so that it is looked for once."""
        listed = self._directory_db.writer.run_alone(_listed_wrapping_keys)
        samples = self._directory_db.writer.run_alone(partial(_samples, prefixes=listed))
        if lacking := [wrapping_key_id(prefix) for prefix in samples if not _has_key(self.keys, prefix)]:
            raise KeyStoreError(
                f"the key store {self.keys.path} lacks {', '.join(lacking)}, which wraps data keys in "
                f"{DIRECTORY_FILE}: set CGW_KEYSTORE_FILE to the key store {self.data_dir} was written with"
            )
        keyring = self.keys.keyring
        if wrong := [
            wrapping_key_id(prefix) for prefix, sample in samples.items() if not opens(keyring, *sample)
        ]:
            raise KeyStoreError(
                f"{', '.join(wrong)} in the key store {self.keys.path} does not open the data keys it "
                f"wrapped in {DIRECTORY_FILE}: set CGW_KEYSTORE_FILE to the key store {self.data_dir} "
                "was written with"
            )
        if tidy and (stale := [prefix for prefix in listed if prefix not in samples]):
            self._directory_db.writer.run_sync(partial(_drop_unused, prefixes=stale))

    def _require_pseudonym_key(self, *, record: bool) -> None:
        """Refuse (`KeyStoreError`) a key store whose pseudonym key is not the one the subject refs
        here were made with: every user would be a subject unknown, and what they did meanwhile
        stranded under refs the right key never makes again. The first start (when `record`)
        keeps what it is checked against; before that, a registered device's tag is checked (the
        tag key is derived from the pseudonym key): a directory from before the check, upgraded
        with a wrong key store, took that key for good and refused the right one after."""
        check = _derived(self.keys.pseudonym_key, b"pseudonym key check")
        stored = self._directory_db.writer.run_alone(partial(_stored_check, name="pseudonym_key"))
        if stored is None:
            agrees = self._device_tags_agree()
            if agrees and record:
                self._directory_db.writer.run_sync(partial(_record_check, name="pseudonym_key", value=check))
                # read again: another process may have kept its own first
                stored = self._directory_db.writer.run_alone(partial(_stored_check, name="pseudonym_key"))
            elif not agrees:
                stored = b""  # not this key, refused below
        if stored is not None and not hmac.compare_digest(stored, check):
            raise KeyStoreError(
                f"the pseudonym key in the key store {self.keys.path} is not the one {DIRECTORY_FILE} "
                f"was written with: set CGW_KEYSTORE_FILE to the key store {self.data_dir} was written with"
            )

    def _device_tags_agree(self) -> bool:
        """Whether a live subject's registered device has the tag this store's tag key makes of
        its token: the one value kept before `key_checks` that tells the pseudonym key (True when
        none reads: no device, only erased subjects' devices left for a pending erasure, rows
        tampered with)."""
        for subject_id, device_id, platform, sealed, tag in self.data.reader().execute(_TAGGED_DEVICES):
            try:
                key = self.directory.by_subject_ids([str(subject_id)]).get(str(subject_id))
                if key is None:
                    continue
                token = devices.open_token(key, str(device_id), sealed)
            except (DecryptionError, UnicodeDecodeError):
                continue
            return hmac.compare_digest(devices.token_tag(self.device_tags, str(platform), token), tag)
        return True

    def _newest_signer(self) -> bytes | None:
        """The `kid` of the newest signature kept here: the newest checkpoint's, or a consent
        receipt's after it (only an auditor's request signs a checkpoint; every consent change
        signs a receipt; a checkpoint over N events is signed after event N). A row that does not
        read (an erased subject's receipt, a tampered one) is passed over; None when nothing
        signed reads."""
        conn = self.data.reader()
        checkpoint = audit.latest_checkpoint(conn) if audit.checkpoints_readable(conn) else None
        signed_at, kid = -1, None
        if checkpoint is not None and checkpoint.sound:
            signed_at, kid = checkpoint.tree_size, _protected_kid(checkpoint.jws.split(".")[0])
        for seq, subject_id, body in conn.execute(_NEWEST_RECEIPTS):
            if seq <= signed_at:
                break
            try:
                key = self.directory.by_subject_ids([str(subject_id)]).get(str(subject_id))
                if key is None:
                    continue
                parts = msgspec.json.decode(key.cipher.open(body, ledger.body_aad(seq, str(subject_id))))
            except (DecryptionError, msgspec.DecodeError):
                continue
            if (receipt_kid := _receipt_kid(parts)) is not None:
                return receipt_kid
        return kid

    def _require_signing_key(self, *, record: bool) -> None:
        """Refuse (`KeyStoreError`) a key store whose signing key neither is nor retires the one
        the last start here signed with: JWKS publishes the current and retired keys, so no
        receipt or checkpoint signed before would verify (the ledger's verification fails), and
        what it signed meanwhile would not once the right key store is back. A new key deployed
        with the old one retired (SECURITY.md) becomes the one checked against (when `record`)."""
        signing = self.keys.signing
        if signing.kid in self._directory_db.writer.run_alone(_retired_kids):
            raise KeyStoreError(_signed_here_before(self.keys.path, signing.kid))
        kept = self._directory_db.writer.run_alone(partial(_stored_check, name="signing_kid"))
        # Kept since `key_checks`; before, the newest signature kept here tells it.
        stored = kept if kept is not None else self._newest_signer()
        if stored is not None and stored.decode() not in {signing.kid, *(key.kid for key in signing.retired)}:
            if stored.decode() in {key.x for key in signing.retired}:  # 32 bytes too: it loads
                raise KeyStoreError(
                    f"retired_signing_keys in the key store {self.keys.path} lists the old key's kid "
                    f"{stored.decode()}: list its x instead, the public key of its JWK as the JWKS served it"
                )
            raise KeyStoreError(
                f"the signing key in the key store {self.keys.path} neither is nor retires the one "
                f"{self.data_dir} was signed with: set CGW_KEYSTORE_FILE to the key store it was written "
                "with, or list the old key under retired_signing_keys"
            )
        if record and kept != signing.kid.encode():
            replaced = None if kept is None else kept.decode()
            self._directory_db.writer.run_sync(partial(_keep_signing_kid, kid=signing.kid, replaced=replaced))

    async def take_up_signing_key(self) -> SigningKey | None:
        """The key store's signing key, taken up: when the file changed since last looked at and
        now holds a signing key other than the one in use, or other retired keys, and would still
        read what this process wrote (`_holds`: among other things, its signing key retires the
        one in use). Recorded first in the directory as the key this data dir is signed with, so
        that a start on a key store that does not list it is refused (`_require_signing_key`)
        before anything it signs is left unverifiable. None otherwise: unchanged, or a store a
        start would refuse, which is not taken (it would leave what this process signed
        unverifiable), or a file that does not read as a key store, each said in the log once and
        by readiness (`keystore_unready`). On the event loop, not in a thread a shutdown would
        leave running: a `stat`, and on a change a read of the file and of the directory's few
        wrapping keys. A look the directory fails (busy, full) is made again next time."""
        stamp = _file_stamp(self.keys.path)
        if stamp is None or stamp == self._signing_seen:
            return None
        try:
            on_disk = KeyStore.load(self.keys.path)
        except KeyStoreError as exc:  # said once for this file; a rewrite that mends it is a new stamp
            self._signing_seen = stamp
            log.error("the key store's keys not taken up", extra={"reason": str(exc)})
            return None
        wrapping = {wrapping_key_id(prefix) for prefix in _listed_wrapping_keys(self._directory_db.reader())}
        in_use, offered = self.keys.signing, on_disk.signing
        if not _holds(on_disk, self.keys, wrapping):
            self._signing_seen = stamp
            log.error("the key store's keys not taken up", extra={"reason": _why_not_taken(in_use, offered)})
            return None
        if _published(offered) == _published(in_use):
            self._signing_seen = stamp
            return None
        if offered.kid != in_use.kid:
            try:
                await self._directory_db.writer.run(
                    partial(_keep_signing_kid, kid=offered.kid, replaced=in_use.kid)
                )
            except KeyStoreError as exc:  # a key retired here before: not taken, said once
                self._signing_seen = stamp
                log.error("the key store's keys not taken up", extra={"reason": str(exc)})
                return None
        self.keys.signing = offered
        self._signing_seen = stamp
        return offered

    async def unready(self) -> list[str]:
        """Each database that would not keep a write now, as "<file> <why>" (`Database.unready`)."""
        found = []
        for db in (self.data, self._directory_db):
            why = await db.unready()
            if why is not None:
                found.append(f"{db.path.name} {why}")
        return found

    def keystore_unready(self) -> str | None:
        """Why the key store file no longer holds the keys in use ("missing", "unreadable",
        "replaced"), or None. The next start reads them from there: without them it cannot open the
        databases or unwrap the data keys. A rotation replaces the file too, keeping them (and a
        secret mount may swap it), so the content is compared, not the inode; it is read again
        only when the file changed."""
        path = self.keys.path
        try:
            status = os.stat(path)
        except FileNotFoundError:
            return "missing"
        except OSError:
            return "unreadable"
        stamp = (status.st_dev, status.st_ino, status.st_mtime_ns, status.st_size)
        if stamp == self._keystore_seen:
            return None
        try:
            on_disk = KeyStore.load(path)
        except (KeyStoreError, OSError):
            return "unreadable"
        directory = self._directory_db.reader()
        wrapping = {wrapping_key_id(prefix) for prefix in _listed_wrapping_keys(directory)}
        if not _holds(on_disk, self.keys, wrapping) or on_disk.signing.kid in _retired_kids(directory):
            return "replaced"
        self._keystore_seen = stamp
        return None

    def rotation_unfinished(self) -> bool:
        """Whether data keys are still wrapped under a key-encryption key that is not the active
        one: a rotation cut short (a crash, an unwrap that failed mid-pass) or a directory restored
        from before one. A finished rotation leaves only the active key listed."""
        listed = self._directory_db.writer.run_alone(_listed_wrapping_keys)
        old = [prefix for prefix in listed if wrapping_key_id(prefix) != self.keys.keyring.active]
        return bool(old) and bool(self._directory_db.writer.run_alone(partial(_samples, prefixes=old)))

    def forget_unused_wrapping_keys(self) -> None:
        """After a rotation re-wrapped every data key: the key-encryption keys no data key uses
        any more leave `wrapping_keys`, so that readiness and the next start no longer ask the
        key store for them (SECURITY.md says to remove them once the rotation has finished)."""
        listed = self._directory_db.writer.run_alone(_listed_wrapping_keys)
        if old := [prefix for prefix in listed if wrapping_key_id(prefix) != self.keys.keyring.active]:
            self._directory_db.writer.run_sync(partial(_drop_unused, prefixes=old))

    def after_failure(self, exc: BaseException) -> None:
        """What an unexpected error leaves to mend: a corrupt page (`storage.failures.is_corrupt`) met by
        a read of either database, which the error does not name, renews both databases' readers.
        Told by the writers too (`Writer._mend`), before they run anything again."""
        if not is_corrupt(exc):
            return
        with self._damage_lock:
            if exc in self._damage_noted:  # told by the writer, then by the request it failed
                return
            self._damage_noted.add(exc)
            self.damaged_page_errors += 1
        for db in (self.data, self._directory_db):
            db.renew_readers()
        log.error("corrupt page: a read failed its check; read connections reopened")

    async def write_as(
        self,
        subject_ref: str,
        now: datetime,
        fn: Callable[[Connection, SubjectKey], T],
        *,
        must_exist: Exception | None = None,
    ) -> T:
        """`fn` in a data writer unit, for the live subject of `subject_ref` (made if there is none,
        unless `must_exist` is given: then that is raised instead, for a write that can only be
        about something the subject already has, a complaint about a push of theirs: a subject
        made for it would outlive the refusal, an erased user brought back by a 404).

        A process trusts its cached key of a subject for a second (`SubjectDirectory`), so a write
        through it just after an erasure made through another process would land under the erased
        subject's id after the erasure's cleanup, and stay: a device's token tag, a consent's
        columns, a ledger event after `subject.erased`. So the unit first asks the directory,
        past the cache, whether the subject still holds (`holds`); if not, the entry is dropped
        and the write made again for whoever the ref is now, a new subject if the user came back
        (as `ensure_from_loop` does when the erasure ran in this process)."""
        for _ in range(_ERASED_MEANWHILE_TRIES):
            if must_exist is None:
                key = await self.directory.ensure_from_loop(subject_ref, now)
            elif (found := self.directory.resolve(subject_ref)) is not None:
                key = found
            else:
                raise must_exist
            try:
                return await self.data.writer.run(partial(self._as_live, key, fn))
            except _ErasedMeanwhile:
                self.directory.forget(subject_ref)
        raise StorageBusyError("the subject was erased again while this write was made for it")

    def _as_live(self, key: SubjectKey, fn: Callable[[Connection, SubjectKey], T], conn: Connection) -> T:
        if not self.directory.holds(key.subject_id):
            raise _ErasedMeanwhile
        return fn(conn, key)

    async def durable(self) -> None:
        """Once every commit so far, in both databases, is on disk (see `storage.wal`)."""
        await self.data.writer.durable()
        await self._directory_db.writer.durable()

    def failure(self) -> OSError | None:
        """A failed sync in either database. Final: only a new process, whose WAL recovery reads
        what really reached the disk, can write again (see `storage.wal.Syncer`)."""
        return self.data.writer.failure or self._directory_db.writer.failure

    def read_only(self) -> str | None:
        """The name of a database file that refuses writes for want of permission (a file or a
        volume made read-only). SQLite opens such a file read-only without a word, and reads
        work, so a server started on it answered ready until its first write. Found by a write
        that changes nothing (`_write_nothing`): it needs write access, and leaves the file and
        its WAL as they were. A full disk is not reported: such a write needs no room. Nor is a
        file another process holds the write lock of: that one can write it."""
        for db in (self.data, self._directory_db):
            try:
                db.writer.run_sync(_write_nothing)
            except StorageFullError:
                if db.writer.refused_as == "read-only":
                    return db.path.name
            except StorageBusyError:
                continue
        return None

    def close(self) -> None:
        self.data.close()
        self._directory_db.close()


def _write_nothing(conn: Connection) -> None:
    """A write transaction that changes no page: refused by a read-only file, free elsewhere."""
    conn.execute("DELETE FROM _migrations WHERE 0")


class _ErasedMeanwhile(Exception):
    """The subject a write was for was erased, through another process, before the write ran."""


@contextlib.contextmanager
def _locked_dir(data_dir: Path) -> Iterator[None]:
    """An exclusive `flock` on the data dir while its databases are checked and opened: two
    processes starting on an empty dir must not see each other's first file alone (one database
    without the other, which `check_pair` refuses). Released when the descriptor closes."""
    fd = os.open(data_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _derived(pseudonym_key: bytes, purpose: bytes) -> bytes:
    """A value for `purpose` derived from the pseudonym key, so stable as subject refs are (it is
    never rotated): the key of device tokens' keyed names (`devices.token_tag`), the key check.
    By HKDF, with the pseudonym key as the input keying material: an HMAC under the pseudonym key
    of a fixed label is what a subject ref of that label as a `user_id` holds, which an auditor
    can have the gateway compute and log."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"cgw", info=purpose).derive(pseudonym_key)


def _stored_check(conn: Connection, name: str) -> bytes | None:
    row = conn.execute("SELECT value FROM key_checks WHERE name = ?", (name,)).fetchone()
    return None if row is None else bytes(row[0])


def _record_check(conn: Connection, name: str, value: bytes) -> None:
    conn.execute("INSERT OR IGNORE INTO key_checks (name, value) VALUES (?, ?)", (name, value))


# A live subject's device is looked for among the first hundred: an erasure's cleanup of
# `gateway.db` may be pending (finished once the store is open), its devices still there.
# Blobs cast as such, integers as integers: a row tampered with reads as something, or not at all.
_TAGGED_DEVICES = (
    "SELECT subject_id, device_id, platform, CAST(token AS BLOB), CAST(token_tag AS BLOB) FROM devices "
    "WHERE token_tag IS NOT NULL LIMIT 100"
)
_NEWEST_RECEIPTS = (
    "SELECT seq, subject_id, CAST(body AS BLOB) FROM ledger WHERE typeof(seq) = 'integer' "
    "AND kind IN ('consent.given', 'consent.withdrawn') AND body IS NOT NULL ORDER BY seq DESC LIMIT 100"
)


def _receipt_kid(parts: object) -> bytes | None:
    """The `kid` of a stored receipt: `SignedParts` (its `kid`, or that of its protected header
    segment), or the whole compact JWS that receipts were kept as before it (`{"receipt", "jws"}`)."""
    if not isinstance(parts, dict):
        return None
    if isinstance(kid := parts.get("kid"), str):
        return kid.encode()
    if "protected" in parts:
        return _protected_kid(parts["protected"])
    jws = parts.get("jws")
    return _protected_kid(jws.split(".")[0]) if isinstance(jws, str) else None


def _protected_kid(segment: object) -> bytes | None:
    """The `kid` of a JWS's protected header segment, if it reads as one."""
    if not isinstance(segment, str):
        return None
    try:
        header = json.loads(b64url.decode(segment))
        kid = header.get("kid") if isinstance(header, dict) else None
        return kid.encode() if isinstance(kid, str) else None
    except (ValueError, RecursionError):  # bad base64 or JSON, a lone surrogate
        return None


def _file_stamp(path: Path) -> tuple[int, int, int, int] | None:
    """What tells a replaced or rewritten file from the one read before, without reading it."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino, status.st_mtime_ns, status.st_size


def _why_not_taken(in_use: SigningKey, offered: SigningKey) -> str:
    if in_use.kid in {key.kid for key in (offered, *offered.retired)}:
        return "it would not open what this process wrote (a key other than the signing key changed)"
    if in_use.kid in {key.x for key in offered.retired}:
        return f"retired_signing_keys lists the key in use by its kid {in_use.kid}: list its x instead"
    return f"its signing key neither is nor retires the one in use, {in_use.kid}: list it as retired"


def _published(key: SigningKey) -> tuple[str, ...]:
    """The kids a signing key puts in the JWKS, current first."""
    return (key.kid, *(retired.kid for retired in key.retired))


def _keep_signing_kid(conn: Connection, kid: str, replaced: str | None) -> None:
    """`kid` as the key this data dir is signed with from now, and `replaced`, the one before, as
    retired for good: a key store restored from before a rotation (after a leak, say) put the
    retired key back to signing, and the one it replaced, listed as retired, made that pass."""
    retired = _retired_kids(conn)
    if kid in retired:
        raise KeyStoreError(_signed_here_before(None, kid))
    if replaced is not None and replaced != kid:
        _set_check(conn, "retired_signing_kids", " ".join(sorted({*retired, replaced})).encode())
    _set_check(conn, "signing_kid", kid.encode())


def _retired_kids(conn: Connection) -> set[str]:
    """The kids of the keys this data dir was signed with and which a later key replaced."""
    value = _stored_check(conn, "retired_signing_kids")
    return set() if value is None else set(value.decode().split())


def _signed_here_before(path: Path | None, kid: str) -> str:
    where = "" if path is None else f" in the key store {path}"
    return (
        f"the signing key{where} ({kid}) was replaced here before, and a retired key does not sign "
        "again: deploy a new signing key, with this one under retired_signing_keys"
    )


def _set_check(conn: Connection, name: str, value: bytes) -> None:
    conn.execute(
        "INSERT INTO key_checks (name, value) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (name, value),
    )


def _listed_wrapping_keys(conn: Connection) -> list[bytes]:
    return [bytes(prefix) for (prefix,) in conn.execute("SELECT prefix FROM wrapping_keys")]


def _has_key(keys: KeyStore, prefix: bytes) -> bool:
    """Whether the keyring holds the key named by a wrapped key's `prefix` (it reloads the key
    store first, should another process have rotated since it was read)."""
    try:
        keys.keyring.key_id_of(prefix)
    except DecryptionError:
        return False
    return True


_SAMPLE = "SELECT subject_id, wrapped_key FROM subjects WHERE substr(wrapped_key, 1, ?) = ? LIMIT 1"


def _samples(conn: Connection, prefixes: list[bytes]) -> dict[bytes, tuple[str, bytes]]:
    """A subject id and its wrapped data key under each prefix some data key still begins with:
    a scan of subjects each, stopping at the first."""
    found = {}
    for prefix in prefixes:
        row = conn.execute(_SAMPLE, (len(prefix), prefix)).fetchone()
        if row is not None:
            found[prefix] = (str(row[0]), bytes(row[1]))
    return found


def _drop_unused(conn: Connection, prefixes: list[bytes]) -> None:
    for prefix in prefixes:  # looked for again inside the transaction: a data key may be new
        if not conn.execute(_SAMPLE, (len(prefix), prefix)).fetchone():
            conn.execute("DELETE FROM wrapping_keys WHERE prefix = ?", (prefix,))


def _holds(on_disk: KeyStore, used: KeyStore, wrapping: set[str]) -> bool:
    """Whether a start from `on_disk` would read what `used` wrote: the same keys
    (`KeyStore.same_keys`); every key-encryption key that wraps data keys (`wrapping`, by id),
    while one a finished rotation left unused may be gone; and the signing key in use as its
    current key or a retired one. A signing-key rotation retires the old key; what it signed
    still verifies, so the process signing with it is still fine until it restarts."""
    signing = {on_disk.signing.kid, *(key.kid for key in on_disk.signing.retired)}
    there = on_disk.keyring.fingerprints
    return used.same_keys(on_disk) and used.signing.kid in signing and wrapping <= there.keys()
