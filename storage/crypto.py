"""Field encryption: a safe layer of `seal`/`open` over AES-256-GCM.

Callers never see nonces, versions or key ids. Two kinds of key live here:

* `FieldCipher` — one subject's data key. Every personal field is sealed with it and with
  associated data naming table, column, row and subject (`field_aad`), so a ciphertext copied
  to another row, column or subject fails to open.
* `Keyring` — the key-encryption keys (KEKs) that wrap data keys. A wrapped key names the
  KEK id that wrapped it, so KEKs can rotate while old wraps still open.

Every failure to open raises the same detail-free `DecryptionError`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "WRAP_PREFIX_SQL",
    "DecryptionError",
    "FieldCipher",
    "KeyedHash",
    "Keyring",
    "field_aad",
    "new_data_key",
    "wrapping_key_id",
]

_FIELD_VERSION = b"\x01"
_WRAP_VERSION = b"\x01"

# A wrapped data key begins with the id of the key-encryption key that wrapped it
# (`Keyring.wrap`: a version byte, the id's length in one byte, the id). This is that
# prefix in SQL, over the column named by `{column}`; SQLite has no byte-to-integer function, so the
# length byte is read through its two hex digits (instr() is a digit's value, 0 for "0").
WRAP_PREFIX_SQL = (
    "substr({column}, 1, 2 "
    "+ 16 * instr('123456789ABCDEF', substr(hex(substr({column}, 2, 1)), 1, 1)) "
    "+ instr('123456789ABCDEF', substr(hex(substr({column}, 2, 1)), 2, 1)))"
)


def wrapping_key_id(wrapped: bytes) -> str:
    """The id of the key-encryption key that wrapped `wrapped` (or of which it is the prefix, as
    `WRAP_PREFIX_SQL` cuts it), whether or not a keyring holds that key; read, not checked."""
    return wrapped[2 : 2 + wrapped[1]].decode(errors="replace") if len(wrapped) > 1 else ""


_NONCE = 12
KEY_BYTES = 32


class DecryptionError(Exception):
    """A ciphertext did not open: wrong key, wrong associated data, or tampered bytes."""

    def __init__(self) -> None:
        super().__init__("ciphertext could not be opened")


def new_data_key() -> bytes:
    return os.urandom(KEY_BYTES)


def field_aad(table: str, column: str, row_id: str, subject_id: str) -> bytes:
    """Associated data binding a field to its place; `|` cannot occur in our ids or names."""
    return f"cgw1|{table}|{column}|{row_id}|{subject_id}".encode()


class FieldCipher:
    """One subject's data key: seal and open that subject's fields, and fingerprint values.

    The fingerprint key is derived from the data key, so fingerprints (used to find a device
    token registered twice) die with the data key on erasure.
    """

    __slots__ = ("_aead", "_data_key", "_mac")

    def __init__(self, data_key: bytes) -> None:
        if len(data_key) != KEY_BYTES:
            raise ValueError("data key must be 32 bytes")
        # Both made on first use: a subject is looked up for every push, but its fields are sealed
        # or opened only for some (not for a dry run, a rejected push, a transactional push's
        # state), and the AES context is most of a cipher's making (1.05 against 0.22 µs).
        self._aead: AESGCM | None = None
        self._data_key = data_key
        self._mac: KeyedHash | None = None  # most subjects never need it

    def _keyed(self) -> AESGCM:
        if self._aead is None:
            self._aead = AESGCM(self._data_key)
        return self._aead

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return _FIELD_VERSION + nonce + self._keyed().encrypt(nonce, plaintext, aad)

    def open(self, ciphertext: bytes, aad: bytes) -> bytes:
        if len(ciphertext) < 1 + _NONCE + 16 or ciphertext[:1] != _FIELD_VERSION:
            raise DecryptionError
        nonce, body = ciphertext[1 : 1 + _NONCE], ciphertext[1 + _NONCE :]
        try:
            return self._keyed().decrypt(nonce, body, aad)
        except InvalidTag:
            raise DecryptionError from None

    def fingerprint(self, value: bytes) -> bytes:
        if self._mac is None:
            key = HKDF(SHA256(), 32, salt=None, info=b"cgw fingerprint v1").derive(self._data_key)
            self._mac = KeyedHash(key)
        return self._mac.digest(value)


class KeyedHash:
    """HMAC-SHA256 under one key, with a fixed prefix to every message, keyed once: copying the
    keyed state costs less than keying it again for each message, and a durable push takes three.
    `cryptography`'s HMAC, whose copy costs half the standard library's (0.9 against 1.9 µs a
    digest); the same MAC, so pseudonyms and stored hashes are unchanged."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes, prefix: bytes = b"") -> None:
        self._keyed = HMAC(key, SHA256())
        self._keyed.update(prefix)

    def digest(self, message: bytes) -> bytes:
        mac = self._keyed.copy()
        mac.update(message)
        return mac.finalize()


Reload = Callable[[], tuple[Mapping[str, bytes], str] | None]


def _print(key: bytes) -> bytes:
    return hashlib.sha256(b"cgw-kek-fingerprint|" + key).digest()


class Keyring:
    """Key-encryption keys by id; `wrap` always uses the active one.

    `reload`, if given, reads the keys again from where they are kept, or None if nothing changed
    there (one `stat`). Another process (a second `serve`, a `consent-gateway worker`) may have
    rotated since, so it is asked when a wrapped key names a key-encryption key this ring lacks,
    and before each wrap: a data key wrapped under the key a rotation retired would be lost
    when that key is removed, and would still be under it if the rotation was for a leak."""

    def __init__(self, keys: Mapping[str, bytes], active: str, reload: Reload | None = None) -> None:
        if active not in keys:
            raise ValueError("active key id is not in the keyring")
        if any(len(k) != KEY_BYTES for k in keys.values()):
            raise ValueError("key-encryption keys must be 32 bytes")
        self._keys = {kid: AESGCM(key) for kid, key in keys.items()}
        self._prints = {kid: _print(key) for kid, key in keys.items()}
        self.active = active
        self._reload = reload

    def add(self, kid: str, key: bytes) -> None:
        """Add a key and make it active; earlier keys stay to unwrap what they wrapped."""
        if len(key) != KEY_BYTES or kid in self._keys:
            raise ValueError("a new 32-byte key with an unused id is required")
        self._keys[kid] = AESGCM(key)
        self._prints[kid] = _print(key)
        self.active = kid

    def merge(self, keys: Mapping[str, bytes], active: str) -> None:
        """Take in keys another process added (ids are never reused, so known ones are skipped)."""
        for kid, key in keys.items():
            if kid not in self._keys and len(key) == KEY_BYTES:
                self._keys[kid] = AESGCM(key)
                self._prints[kid] = _print(key)
        if active in self._keys:
            self.active = active

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    @property
    def fingerprints(self) -> dict[str, bytes]:
        """A digest of each key by id: whether two rings hold the same keys, not just the same ids."""
        return dict(self._prints)

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        if self._reload is not None and (fresh := self._reload()) is not None:
            self.merge(*fresh)
        kid = self.active.encode()
        nonce = os.urandom(_NONCE)
        sealed = self._keys[self.active].encrypt(nonce, data_key, aad + b"|" + kid)
        return _WRAP_VERSION + bytes([len(kid)]) + kid + nonce + sealed

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        aead = self._keys[self.key_id_of(wrapped)]
        try:
            return aead.decrypt(*self._split(wrapped, aad))
        except InvalidTag:
            raise DecryptionError from None

    def key_id_of(self, wrapped: bytes) -> str:
        if len(wrapped) < 2 or wrapped[:1] != _WRAP_VERSION:
            raise DecryptionError
        kid = wrapping_key_id(wrapped)
        if kid not in self._keys and self._reload is not None and (fresh := self._reload()) is not None:
            self.merge(*fresh)
        if kid not in self._keys:
            raise DecryptionError
        return kid

    def _split(self, wrapped: bytes, aad: bytes) -> tuple[bytes, bytes, bytes]:
        kid_len = wrapped[1]
        kid = wrapped[2 : 2 + kid_len]
        rest = wrapped[2 + kid_len :]
        if len(rest) < _NONCE + 16:
            raise DecryptionError
        return rest[:_NONCE], rest[_NONCE:], aad + b"|" + kid
