"""Field encryption, key wrapping, key rotation and crypto-shredding.

Unit level (FieldCipher / Keyring), storage level (KeyStore.add_kek + SubjectDirectory.rewrap_all
on a real SQLCipher store, then a restart), API level (POST /v1/admin/keys/rotate-encryption, then
a second app on the same data dir) and erasure (no key still held opens an erased subject's data,
not even in a copy of the data file taken before the erasure).
"""

from __future__ import annotations

import hashlib
import hmac
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.clock import system_clock
from gateway.settings import Settings
from storage import ledger
from storage.connections import connect
from storage.crypto import DecryptionError, FieldCipher, KeyedHash, Keyring, field_aad, new_data_key
from storage.directory import SubjectKey
from storage.keys import KeyStore
from storage.repositories import devices, locations
from storage.store import DATA_FILE, DIRECTORY_FILE, Store

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
AAD = field_aad("devices", "token", "dev_1", "s_1")


# -- FieldCipher ------------------------------------------------------------------------------


@pytest.mark.parametrize("plaintext", [b"", b"x", b"fcm-token-" * 400, "设备令牌".encode()])
def test_round_trip(plaintext: bytes) -> None:
    cipher = FieldCipher(new_data_key())
    sealed = cipher.seal(plaintext, AAD)
    # A byte or two can turn up in random ciphertext by chance; eight cannot, in practice.
    assert plaintext not in sealed or len(plaintext) < 8
    assert cipher.open(sealed, AAD) == plaintext


def test_same_plaintext_seals_differently_each_time() -> None:
    cipher = FieldCipher(new_data_key())
    assert cipher.seal(b"token", AAD) != cipher.seal(b"token", AAD)


@pytest.mark.parametrize(
    ("label", "other_aad"),
    [
        ("other row", field_aad("devices", "token", "dev_2", "s_1")),
        ("other column", field_aad("devices", "fingerprint", "dev_1", "s_1")),
        ("other table", field_aad("locations", "token", "dev_1", "s_1")),
        ("other subject", field_aad("devices", "token", "dev_1", "s_2")),
        ("no aad", b""),
    ],
)
def test_associated_data_mismatch_fails_with_the_one_error(label: str, other_aad: bytes) -> None:
    cipher = FieldCipher(new_data_key())
    sealed = cipher.seal(b"secret token", AAD)
    with pytest.raises(DecryptionError) as caught:
        cipher.open(sealed, other_aad)
    assert type(caught.value) is DecryptionError
    assert str(caught.value) == "ciphertext could not be opened", label


def test_other_key_fails_with_the_one_error() -> None:
    sealed = FieldCipher(new_data_key()).seal(b"secret token", AAD)
    with pytest.raises(DecryptionError) as caught:
        FieldCipher(new_data_key()).open(sealed, AAD)
    assert str(caught.value) == "ciphertext could not be opened"


def test_every_single_byte_flip_is_detected() -> None:
    cipher = FieldCipher(new_data_key())
    sealed = cipher.seal(b"0123456789", AAD)
    for index in range(len(sealed)):
        for bit in (0x01, 0x80):
            tampered = bytearray(sealed)
            tampered[index] ^= bit
            with pytest.raises(DecryptionError):
                cipher.open(bytes(tampered), AAD)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda b: b[:-1], id="truncated-tag"),
        pytest.param(lambda b: b[:12], id="shorter-than-nonce"),
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: b + b"\x00", id="extended"),
        pytest.param(lambda b: b"\x02" + b[1:], id="unknown-version"),
    ],
)
def test_malformed_ciphertexts_fail_with_the_one_error(mangle: Callable[[bytes], bytes]) -> None:
    cipher = FieldCipher(new_data_key())
    with pytest.raises(DecryptionError):
        cipher.open(mangle(cipher.seal(b"payload", AAD)), AAD)


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_data_keys_must_be_256_bits(size: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        FieldCipher(b"k" * size)


def test_fingerprint_is_keyed() -> None:
    key = new_data_key()
    assert FieldCipher(key).fingerprint(b"tok") == FieldCipher(key).fingerprint(b"tok")
    assert FieldCipher(key).fingerprint(b"tok") != FieldCipher(new_data_key()).fingerprint(b"tok")


@hypothesis.settings(max_examples=200, deadline=None)  # `settings` is the app's fixture here
@hypothesis.given(st.binary(min_size=1, max_size=64), st.binary(max_size=24), st.binary(max_size=200))
def test_keyed_hash_is_hmac_sha256_of_prefix_and_message(key: bytes, prefix: bytes, message: bytes) -> None:
    """Pseudonyms, idempotency and push fingerprints and device tags are stored: a `KeyedHash`
    must stay HMAC-SHA256(key, prefix + message) whichever library computes it."""
    expected = hmac.new(key, prefix + message, hashlib.sha256).digest()
    assert KeyedHash(key, prefix).digest(message) == expected


def test_keyed_hash_shared_across_threads_gives_each_its_own_digest() -> None:
    keyed = KeyedHash(b"k" * 32, b"push|")
    messages = [str(i).encode() for i in range(4000)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        digests = list(pool.map(keyed.digest, messages))
    assert digests == [hmac.new(b"k" * 32, b"push|" + m, hashlib.sha256).digest() for m in messages]


# -- Keyring ------------------------------------------------------------------------------------


def test_keyring_wrap_round_trip_and_aad_binding() -> None:
    ring = Keyring({"kek-1": new_data_key()}, "kek-1")
    data_key = new_data_key()
    wrapped = ring.wrap(data_key, b"subject-a")
    assert data_key not in wrapped
    assert ring.key_id_of(wrapped) == "kek-1"
    assert ring.unwrap(wrapped, b"subject-a") == data_key
    with pytest.raises(DecryptionError):
        ring.unwrap(wrapped, b"subject-b")


def test_keyring_rotation_keeps_old_wraps_openable() -> None:
    ring = Keyring({"kek-1": new_data_key()}, "kek-1")
    data_key = new_data_key()
    old = ring.wrap(data_key, b"s")
    ring.add("kek-2", new_data_key())
    assert ring.active == "kek-2"
    assert ring.key_ids == ("kek-1", "kek-2")
    new = ring.wrap(data_key, b"s")
    assert ring.key_id_of(new) == "kek-2"
    assert ring.unwrap(old, b"s") == ring.unwrap(new, b"s") == data_key


def test_keyring_refuses_a_reused_id_or_a_short_key() -> None:
    ring = Keyring({"kek-1": new_data_key()}, "kek-1")
    with pytest.raises(ValueError, match="unused id"):
        ring.add("kek-1", new_data_key())
    with pytest.raises(ValueError, match="32-byte"):
        ring.add("kek-2", b"short")
    with pytest.raises(ValueError, match="active key id"):
        Keyring({"kek-1": new_data_key()}, "kek-9")


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: b"\x09" + b[1:], id="unknown-version"),
        pytest.param(lambda b: b[:2] + b"kek-7"[: b[1]] + b[2 + b[1] :], id="unknown-kid"),
        pytest.param(lambda b: b[:-1], id="truncated"),
        pytest.param(lambda b: b[: 2 + b[1] + 5], id="no-body"),
        pytest.param(lambda b: b[:-1] + bytes([b[-1] ^ 1]), id="flipped-tag"),
    ],
)
def test_tampered_wraps_fail_with_the_one_error(mangle: Callable[[bytes], bytes]) -> None:
    ring = Keyring({"kek-1": new_data_key()}, "kek-1")
    with pytest.raises(DecryptionError):
        ring.unwrap(mangle(ring.wrap(new_data_key(), b"s")), b"s")


def test_a_wrap_from_another_keyring_does_not_open() -> None:
    mine = Keyring({"kek-1": new_data_key()}, "kek-1")
    theirs = Keyring({"kek-1": new_data_key()}, "kek-1")
    with pytest.raises(DecryptionError):
        mine.unwrap(theirs.wrap(new_data_key(), b"s"), b"s")


# -- storage: rotation on a real store -----------------------------------------------------------


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_dir: Path) -> Iterator[Store]:
    keys = KeyStore.create(store_dir / "keys.json")
    opened = Store(store_dir, keys)
    yield opened
    opened.close()


def _seal_some(store: Store, subject: SubjectKey, token: str) -> tuple[str, int]:
    """A device token, a location and a ledger event for `subject`; (device id, ledger seq)."""

    def unit(conn: Any) -> tuple[str, int]:
        device_id = devices.insert(
            conn, subject, "fcm", token, devices.token_tag(store.device_tags, "fcm", token), NOW
        )
        locations.put(conn, subject, "wtw3sj", NOW)
        event = ledger.append(
            conn,
            at=NOW,
            subject=subject,
            kind="consent.given",
            actor="user",
            source="test",
            purpose="marketing",
            notice_version="v1",
            content=b'{"token":"' + token.encode() + b'"}',
        )
        return device_id, event.seq

    result: tuple[str, int] = store.data.writer.run_sync(unit)
    return result


def _wrapped_key_ids(store_dir: Path, keys: KeyStore) -> dict[str, str]:
    conn = connect(store_dir / DIRECTORY_FILE, keys.directory_key)
    try:
        rows = conn.execute("SELECT subject_ref, wrapped_key FROM subjects").fetchall()
    finally:
        conn.close()
    return {ref: keys.keyring.key_id_of(bytes(wrapped)) for ref, wrapped in rows}


def _read_back(store: Store, subject_ref: str, seq: int) -> tuple[list[str], tuple[str, str] | None, bytes]:
    subject = store.directory.resolve(subject_ref)
    assert subject is not None
    conn = store.data.reader()
    tokens = [d.token for d in devices.list_for(conn, subject)]
    event = next(ledger.events_between(conn, seq, seq))
    body = event.open_body(subject)
    assert body is not None
    return tokens, locations.get(conn, subject), body


def test_rotation_rewraps_data_keys_and_old_ciphertexts_still_open(store_dir: Path) -> None:
    store = Store(store_dir, KeyStore.create(store_dir / "keys.json"))
    refs = ["sub_" + c * 52 for c in "abc"]
    sealed = {ref: _seal_some(store, store.directory.ensure(ref, NOW), f"tok-{ref[-4:]}") for ref in refs}
    before = {ref: _read_back(store, ref, seq) for ref, (_, seq) in sealed.items()}
    assert set(_wrapped_key_ids(store_dir, store.keys).values()) == {"kek-1"}

    kid = store.keys.add_kek()
    assert kid == "kek-2"
    assert store.directory.rewrap_all(batch=2) == len(refs)  # batches smaller than the table
    assert set(_wrapped_key_ids(store_dir, store.keys).values()) == {"kek-2"}
    assert store.directory.rewrap_all() == 0  # idempotent

    # a fresh process (new cache, key store read from disk) unwraps under the new KEK
    store.close()
    reopened = Store(store_dir, KeyStore.load(store_dir / "keys.json"))
    try:
        assert reopened.keys.keyring.active == "kek-2"
        assert reopened.keys.keyring.key_ids == ("kek-1", "kek-2")
        for ref, (_, seq) in sealed.items():
            assert _read_back(reopened, ref, seq) == before[ref]
        assert ledger.verify(reopened.data.reader()).ok
    finally:
        reopened.close()


def test_rotated_key_store_stays_private_and_keeps_old_keks(store: Store, store_dir: Path) -> None:
    path = store_dir / "keys.json"
    old_wrap = store.keys.keyring.wrap(b"k" * 32, b"aad")
    store.keys.add_kek()
    store.keys.add_kek()
    assert path.stat().st_mode & 0o777 == 0o600
    assert not list(store_dir.glob("keys.json.tmp*"))
    loaded = KeyStore.load(path)
    assert loaded.keyring.active == "kek-3"
    assert loaded.keyring.unwrap(old_wrap, b"aad") == b"k" * 32


def test_a_subject_created_during_rotation_gets_the_new_kek(store: Store, store_dir: Path) -> None:
    store.directory.ensure("sub_" + "a" * 52, NOW)
    store.keys.add_kek()
    store.directory.ensure("sub_" + "b" * 52, NOW)
    assert _wrapped_key_ids(store_dir, store.keys) == {"sub_" + "a" * 52: "kek-1", "sub_" + "b" * 52: "kek-2"}
    assert store.directory.rewrap_all() == 1


# -- storage: crypto-shredding -------------------------------------------------------------------


def _every_cipher_still_held(store: Store, store_dir: Path) -> list[FieldCipher]:
    """Every 32-byte key anyone still holds: live subjects' data keys and every root key."""
    keys = store.keys
    conn = connect(store_dir / DIRECTORY_FILE, keys.directory_key)
    try:
        rows = conn.execute("SELECT subject_id, wrapped_key FROM subjects").fetchall()
    finally:
        conn.close()
    held = [keys.keyring.unwrap(bytes(w), f"cgw1|subjects|wrapped_key|{sid}".encode()) for sid, w in rows]
    roots = [
        keys.pseudonym_key,
        keys.database_key,
        keys.directory_key,
        keys.signing.private.private_bytes_raw(),
    ]
    return [FieldCipher(k) for k in held + [r for r in roots if len(r) == 32]]


def test_erased_subjects_ciphertexts_cannot_be_opened_with_any_key_still_held(
    store: Store, store_dir: Path, tmp_path: Path
) -> None:
    victim_ref, other_ref = "sub_" + "v" * 52, "sub_" + "o" * 52
    victim = store.directory.ensure(victim_ref, NOW)
    other = store.directory.ensure(other_ref, NOW)
    device_id, seq = _seal_some(store, victim, "victim-device-token")
    _seal_some(store, other, "other-device-token")
    store.data.checkpoint()
    copy = tmp_path / "copy-before-erasure.db"
    shutil.copyfile(store_dir / DATA_FILE, copy)  # an attacker's backup, taken before erasure

    assert store.directory.erase(victim_ref, NOW) == victim.subject_id
    assert store.directory.resolve(victim_ref) is None
    assert store.directory.status(victim_ref) == "erased"

    conn = connect(copy, store.keys.database_key)
    try:
        token = bytes(
            conn.execute("SELECT token FROM devices WHERE device_id = ?", (device_id,)).fetchone()[0]
        )
        place = bytes(
            conn.execute(
                "SELECT geohash FROM locations WHERE subject_id = ?", (victim.subject_id,)
            ).fetchone()[0]
        )
        body = bytes(conn.execute("SELECT body FROM ledger WHERE seq = ?", (seq,)).fetchone()[0])
    finally:
        conn.close()
    sealed = [
        (token, field_aad("devices", "token", device_id, victim.subject_id)),
        (place, field_aad("locations", "geohash", victim.subject_id, victim.subject_id)),
        (body, ledger.body_aad(seq, victim.subject_id)),
    ]
    # the test is meaningful: the destroyed key did open them
    opened = [victim.cipher.open(c, a) for c, a in sealed]
    assert opened[0] == b"victim-device-token"
    assert opened[2].startswith(b'{"token":')

    held = _every_cipher_still_held(store, store_dir)
    assert len(held) >= 4  # the other subject's key and the root keys
    for cipher in held:
        for ciphertext, aad in sealed:
            with pytest.raises(DecryptionError):
                cipher.open(ciphertext, aad)

    # nothing left in the directory links the old internal id back to the ref
    assert store.directory.refs_for([victim.subject_id]) == {}
    assert store.directory.refs_for([other.subject_id]) == {other.subject_id: other_ref}
    # and the ledger still verifies: its chain is over ciphertexts
    assert ledger.verify(store.data.reader()).ok


def test_an_erased_subject_that_returns_gets_a_new_key(store: Store) -> None:
    ref = "sub_" + "r" * 52
    first = store.directory.ensure(ref, NOW)
    sealed = first.cipher.seal(b"old life", AAD)
    store.directory.erase(ref, NOW)
    second = store.directory.ensure(ref, NOW)
    assert second.subject_id != first.subject_id
    assert store.directory.status(ref) == "active"
    with pytest.raises(DecryptionError):
        second.cipher.open(sealed, AAD)


# -- API: rotate-encryption, then a restart on the same data dir ---------------------------------


def _export_without_clock(client: TestClient[Litestar], headers: dict[str, str]) -> dict[str, Any]:
    response = client.get("/v1/me/export", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    body.pop("exported_at")
    return body


def test_api_rotation_keeps_every_field_readable_before_and_after_restart(settings: Settings) -> None:
    app = create_app(settings)
    with TestClient(app) as client:
        runtime = app.state.runtime
        user = {"Authorization": f"Bearer {runtime.user_tokens.mint('rotating-user', system_clock())}"}
        _, admin_key = runtime.api_keys.create_sync("ops", ("admin",))
        admin = {"Authorization": f"Bearer {admin_key}"}
        for purpose in ("marketing", "location"):
            answer = client.put(
                f"/v1/me/consents/{purpose}", json={"granted": True, "notice_version": "v1"}, headers=user
            )
            assert answer.status_code == 200, answer.text
        token = b"apns-rotation-token-1".hex()  # an APNs token is hex digits
        assert (
            client.post("/v1/me/devices", json={"platform": "apns", "token": token}, headers=user).status_code
            == 201
        )
        assert (
            client.put("/v1/me/location", json={"lat": 31.2304, "lon": 121.4737}, headers=user).status_code
            == 200
        )
        before = _export_without_clock(client, user)
        assert before["devices"][0]["token"] == token
        assert before["location"]["geohash"] == "wtw3sj"
        assert len(before["receipts"]) == 2

        denied = client.post("/v1/admin/keys/rotate-encryption", headers=user)
        assert denied.status_code == 403
        rotated = client.post("/v1/admin/keys/rotate-encryption", headers=admin)
        assert rotated.status_code == 200, rotated.text
        assert rotated.json() == {"active_kek_id": "kek-2", "rewrapped": 1}
        assert _export_without_clock(client, user) == before
        assert _wrapped_key_ids(settings.data_dir, runtime.keys) == {before["subject_ref"]: "kek-2"}

    restarted = create_app(settings)
    with TestClient(restarted) as client:
        runtime = restarted.state.runtime
        assert runtime.keys.keyring.active == "kek-2"
        user = {"Authorization": f"Bearer {runtime.user_tokens.mint('rotating-user', system_clock())}"}
        assert _export_without_clock(client, user) == before
        again = client.post("/v1/admin/keys/rotate-encryption", headers=admin)
        assert again.status_code == 200, again.text
        assert again.json() == {"active_kek_id": "kek-3", "rewrapped": 1}
        assert _export_without_clock(client, user) == before


def test_two_rotation_requests_at_once_both_hold_after_restart(settings: Settings) -> None:
    """A double click on rotate: both answer, with different keys, and the user's fields still
    open after a restart (two rotations used to write two different `kek-2`s, one lost)."""
    app = create_app(settings)
    with TestClient(app) as client:
        runtime = app.state.runtime
        user = {"Authorization": f"Bearer {runtime.user_tokens.mint('double-click', system_clock())}"}
        _, admin_key = runtime.api_keys.create_sync("ops", ("admin",))
        admin = {"Authorization": f"Bearer {admin_key}"}
        consent = {"granted": True, "notice_version": "v1"}
        assert client.put("/v1/me/consents/marketing", json=consent, headers=user).status_code == 200
        device = {"platform": "apns", "token": b"apns-double-click-token".hex()}
        assert client.post("/v1/me/devices", json=device, headers=user).status_code == 201
        before = _export_without_clock(client, user)
        with ThreadPoolExecutor(2) as pool:
            answers = list(
                pool.map(lambda _: client.post("/v1/admin/keys/rotate-encryption", headers=admin), "ab")
            )
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        assert sorted(a.json()["active_kek_id"] for a in answers) == ["kek-2", "kek-3"]
    restarted = create_app(settings)
    with TestClient(restarted) as client:
        token = restarted.state.runtime.user_tokens.mint("double-click", system_clock())
        assert _export_without_clock(client, {"Authorization": f"Bearer {token}"}) == before
