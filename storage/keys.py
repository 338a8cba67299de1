"""The key store: one JSON file, mode 0600, kept apart from the data files.

It holds the root secrets — the key-encryption keyring, the pseudonymization key, the keys
of the two SQLCipher databases, the Ed25519 signing key and (dev only) the HS256 secret that
`consent-gateway token` signs user tokens with — and the public halves of retired signing keys
(`retired_signing_keys`, each the `x` of its JWK), which stay in `/.well-known/jwks.json` so what
they signed (checkpoints, exports, receipts) still verifies after the signing key is rotated.
Per-subject data keys are not here: they are wrapped by the keyring and stored in the subject
directory database.

In production point `CGW_KEYSTORE_FILE` at a secret mount; on a first run without one the
gateway creates dev keys next to the data and says so loudly.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from storage import b64url
from storage.crypto import KEY_BYTES, Keyring

__all__ = ["KEPT_APART", "KeyStore", "KeyStoreError", "PublicSigningKey", "SigningKey", "locked"]

DEV_WARNING = "DEVELOPMENT KEYS created by consent-gateway: never use them in production"
KEPT_APART = "consent-gateway key store: keep it secret (mode 0600), apart from the data and its backups"
log = logging.getLogger(__name__)
# The ids rotations give. ASCII digits only (`int` takes other scripts' digits too), at most 18.
_KEK_ID = re.compile(r"kek-([0-9]{1,18})")


class KeyStoreError(Exception):
    """The key store is missing, unreadable or malformed."""


class _File(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    warning: str
    kek_active: str
    kek: dict[str, str]
    pseudonym_key: str
    database_key: str
    directory_key: str
    signing_key: str
    jwt_dev_secret: str
    created_at: str
    retired_signing_keys: list[str] = []  # absent from stores written before it: nothing retired


def _unb64(text: str, field: str) -> bytes:
    """The field is named when it does not decode: a key store holds half a dozen secrets, and
    "Incorrect padding" alone left an operator to guess which one a stray character broke."""
    try:
        return b64url.decode(text)
    except ValueError:
        raise ValueError(f"{field}: not base64url") from None


class PublicSigningKey:
    """An Ed25519 public key as published; `kid` is the RFC 7638 JWK thumbprint."""

    def __init__(self, public: Ed25519PublicKey) -> None:
        self.public = public
        self.x = b64url.encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw))
        canonical = f'{{"crv":"Ed25519","kty":"OKP","x":"{self.x}"}}'.encode()
        self.kid = b64url.encode(hashlib.sha256(canonical).digest())

    @classmethod
    def from_x(cls, x: str) -> PublicSigningKey:
        """From a JWK's `x` (base64url of the 32 raw bytes); ValueError if it is not one."""
        return cls(Ed25519PublicKey.from_public_bytes(_exact_public(_unb64(x, "x"))))

    def jwk(self) -> dict[str, str]:
        return {"kty": "OKP", "crv": "Ed25519", "x": self.x, "kid": self.kid, "alg": "EdDSA", "use": "sig"}


class SigningKey(PublicSigningKey):
    """The gateway's Ed25519 key, and the retired public keys whose signatures still count."""

    def __init__(self, private: Ed25519PrivateKey, retired: tuple[PublicSigningKey, ...] = ()) -> None:
        super().__init__(private.public_key())
        self.private = private
        self.retired = tuple({key.kid: key for key in retired if key.kid != self.kid}.values())


class KeyStore:
    def __init__(self, path: Path, data: _File) -> None:
        self.path = path
        self._seen = _stamp(path)
        self.keyring = Keyring(_keks(data), data.kek_active, reload=self._changed_keks)
        self.pseudonym_key = _exact(_unb64(data.pseudonym_key, "pseudonym_key"), "pseudonym_key")
        self.database_key = _exact(_unb64(data.database_key, "database_key"), "database_key")
        self.directory_key = _exact(_unb64(data.directory_key, "directory_key"), "directory_key")
        if len(data.jwt_dev_secret) < 32:
            raise ValueError("jwt_dev_secret must be at least 32 characters")
        try:
            retired = tuple(PublicSigningKey.from_x(x) for x in data.retired_signing_keys)
        except ValueError as exc:
            raise ValueError(f"retired_signing_keys: {exc}") from None
        private = Ed25519PrivateKey.from_private_bytes(_unb64(data.signing_key, "signing_key"))
        if PublicSigningKey(private.public_key()).kid in {key.kid for key in retired}:
            # Dropped from the list, it signed on: a leaked key listed as retired stays in use.
            raise ValueError("retired_signing_keys lists the signing key itself: a retired key does not sign")
        self.signing = SigningKey(private, retired)
        self.jwt_dev_secret = data.jwt_dev_secret

    @classmethod
    def load(cls, path: Path) -> KeyStore:
        """Refuses a key store others may write (mode `o+w` or `g+w`): any local user, or any
        member of its group, could swap its signing key or a key-encryption key, and one was
        served with no word said."""
        try:
            raw = path.read_bytes()
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise KeyStoreError(f"no key store at {path}") from None
        except OSError as exc:  # a directory, no permission, an I/O error: still one line, exit 2
            raise KeyStoreError(f"cannot read the key store {path}: {exc.strerror or exc}") from None
        if mode & (stat.S_IWOTH | stat.S_IWGRP):
            who = "anyone" if mode & stat.S_IWOTH else "its group"
            raise KeyStoreError(
                f"the key store {path} is writable by {who} (mode {stat.S_IMODE(mode):04o}): "
                "make it the gateway's own (chmod 600)"
            )
        try:
            data = msgspec.json.decode(raw, type=_File)
            return cls(path, data)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            raise KeyStoreError(f"key store {path} is malformed: {exc}") from None

    @classmethod
    def create(cls, path: Path, warning: str = DEV_WARNING) -> KeyStore:
        """Create fresh keys (dev keys unless `warning` says otherwise); refuses to overwrite an
        existing store."""
        data = _File(
            version=1,
            warning=warning,
            kek_active="kek-1",
            kek={"kek-1": b64url.encode(os.urandom(KEY_BYTES))},
            pseudonym_key=b64url.encode(os.urandom(KEY_BYTES)),
            database_key=b64url.encode(os.urandom(KEY_BYTES)),
            directory_key=b64url.encode(os.urandom(KEY_BYTES)),
            signing_key=b64url.encode(Ed25519PrivateKey.generate().private_bytes_raw()),
            jwt_dev_secret=secrets.token_urlsafe(48),
            created_at=datetime.now(UTC).isoformat(),
        )
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(path, msgspec.json.format(msgspec.json.encode(data)), exclusive=True)
        return cls(path, data)

    def add_kek(self) -> str:
        """Add a new key-encryption key, make it active and persist atomically; returns its id.

        Under an exclusive lock on the key store's directory, from the file as it is then: two rotations
        at once (a double click, two processes) each read the other's key instead of both writing
        a different `kek-2`, one of which would be lost with every data key wrapped under it."""
        with locked(self.path):
            current = _read(self.path)
            kid = _next_kek_id(current.kek)
            key = os.urandom(KEY_BYTES)
            data = msgspec.structs.replace(
                current, kek={**current.kek, kid: b64url.encode(key)}, kek_active=kid
            )
            _write_private(self.path, msgspec.json.format(msgspec.json.encode(data)), exclusive=False)
            self._seen = _stamp(self.path)
            self.keyring.merge(_keks(data), kid)  # the same keyring object everyone holds
        return kid

    def same_keys(self, other: KeyStore) -> bool:
        """Whether `other` holds this store's keys, rotated maybe: the same database, directory and
        pseudonym keys, and the same key under each key-encryption key id both hold (a store whose
        `kek-1` was made anew holds another key under the same name, and opens none it wrapped)."""
        mine, theirs = self.keyring.fingerprints, other.keyring.fingerprints
        return (self.database_key, self.directory_key, self.pseudonym_key) == (
            other.database_key,
            other.directory_key,
            other.pseudonym_key,
        ) and all(theirs[kid] == mark for kid, mark in mine.items() if kid in theirs)

    def _changed_keks(self) -> tuple[dict[str, bytes], str] | None:
        """The keyring's reload: the file's key-encryption keys if it changed since last read and
        still holds this store's keys (`same_keys`). Another deployment's store put in its place (a
        wrong secret mounted) had its active key taken up, and new subjects' data keys wrapped
        under a key the right store lacks: they were lost once it was put back."""
        stamp = _stamp(self.path)
        if stamp == self._seen:
            return None
        try:
            data = _read(self.path)
            on_disk = KeyStore(self.path, data)
        except (KeyStoreError, ValueError):
            return None
        self._seen = stamp
        if not self.same_keys(on_disk):
            log.error(
                "the key store was replaced by another: its key-encryption keys are not taken up",
                extra={"path": str(self.path), "advice": "put this deployment's key store back"},
            )
            return None
        return _keks(data), data.kek_active


def _next_kek_id(taken: Collection[str]) -> str:
    """`kek-<n>`, one past the largest n among ids of that form; other ids are skipped, not parsed.

    The store names keys however its operator did (`primary`, `hsm-2024`): those load and serve,
    so a rotation must not fail on them either (it answered 500 parsing `primary` as a number),
    and refusing such a store at load would stop a gateway that runs today."""
    numbers = [int(match[1]) for kid in taken if (match := _KEK_ID.fullmatch(kid))]
    number = 1 + max(numbers, default=0)
    while f"kek-{number}" in taken:  # only past 18 digits, which `_KEK_ID` leaves out
        number += 1
    return f"kek-{number}"


def _keks(data: _File) -> dict[str, bytes]:
    return {kid: _unb64(key, f"kek[{kid}]") for kid, key in data.kek.items()}


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_mtime_ns, status.st_ino


def _read(path: Path) -> _File:
    try:
        return msgspec.json.decode(path.read_bytes(), type=_File)
    except (OSError, msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise KeyStoreError(f"key store {path} cannot be read: {exc}") from None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive `flock` for a read-modify-write of the key store, or its creation, across
    threads (each call opens its own descriptor) and processes. On the directory, not the file:
    the file is replaced by a rename, and a lock on the old one would not exclude a writer that
    opened the new one."""
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _exact_public(raw: bytes) -> bytes:
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 JWK's `x` is 32 bytes, not {len(raw)}")
    return raw


def _exact(key: bytes, name: str) -> bytes:
    if len(key) != KEY_BYTES:
        raise ValueError(f"{name} must be {KEY_BYTES} bytes")
    return key


def _write_private(path: Path, content: bytes, *, exclusive: bool) -> None:
    """Write with mode 0600 from the first byte and give it its name whole: replacing the file
    there, or only where there is none when `exclusive`. A process loading the store meanwhile
    (a `worker` started with `serve`) finds no file or all of it, never a part-written one.

    Durable before it returns: the file's bytes are fsynced, and then its directory, which holds
    the name. Without the directory's fsync a power cut can bring back the old file (or none)
    while the data keys re-wrapped under a new KEK are already committed in the database:
    they could never be unwrapped again."""
    if exclusive:
        _create_whole(path, content)
    else:
        # Made anew, never reused: a leftover `.tmp` (an editor's, a backup's) kept its own mode
        # when opened, 0644 say, and the key store took it at the rename; a link there was
        # followed. The callers hold the store's lock, so no other writer uses the name meanwhile.
        target = path.with_name(path.name + ".tmp")
        target.unlink(missing_ok=True)
        _write_new(target, content)
        try:
            os.replace(target, path)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    _fsync_directory(path.parent)


# A file system without hard links (vfat, some network and FUSE mounts) refuses `link` thus.
_NO_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def _create_whole(path: Path, content: bytes) -> None:
    """A new store, linked into place from a file of a name no other writer can take (not the
    rotation's `.tmp`, which two creators shared: each unlinked the other's, and one came back
    with keys that were not the ones on disk). FileExistsError where a store is, before anything
    is written. Where the file system has no hard links, written in place under its own name as
    before: a reader may then see it part-written, and says the store is malformed."""
    if path.exists() or path.is_symlink():
        raise FileExistsError(errno.EEXIST, "a key store is there already", str(path))
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600
    staged = Path(name)
    try:
        _write_fd(fd, content)
        try:
            os.link(staged, path)  # FileExistsError where a store came meanwhile: never overwritten
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            _write_new(path, content)
    finally:
        staged.unlink(missing_ok=True)


def _write_new(path: Path, content: bytes) -> None:
    """`content` in a file made here, 0600 from the first byte; none left part-written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        _write_fd(fd, content)
    except BaseException:
        # Ours, and part-written (a full disk): not left for the next start or an operator to find.
        path.unlink(missing_ok=True)
        raise


def _write_fd(fd: int, content: bytes) -> None:
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_directory(directory: Path) -> None:
    """Make a file's creation or replacement in `directory` durable (POSIX keeps names there)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
