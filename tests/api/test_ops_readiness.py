"""`/readyz` says ready only when a write would be kept: the database files and the key store on
disk must still be the ones this process opened. A process whose data dir was removed keeps
its deleted files open and would go on accepting writes that vanish at the next start.
(A full disk is in test_storage_full.py, a failed fsync in test_storage_failure.py.)"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from conftest import Headers
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Litestar
from litestar.testing import TestClient

from gateway.runtime import Runtime
from storage.keys import KeyStore

Client = TestClient[Litestar]
CONSENT = {"granted": True, "notice_version": "v1"}


def _ready(client: Client) -> tuple[int, dict[str, str]]:
    answer = client.get("/readyz")
    checks: dict[str, str] = answer.json()["checks"]
    return answer.status_code, checks


def test_a_removed_data_dir_is_not_ready(
    client: Client, data_dir: Path, as_user: Callable[[str], Headers]
) -> None:
    user = as_user("removed-dir-user")
    assert client.put("/v1/me/consents/marketing", json=CONSENT, headers=user).status_code == 200
    assert _ready(client) == (200, {"keys": "ok", "database": "ok"})

    shutil.rmtree(data_dir)

    assert _ready(client) == (503, {"keys": "missing", "database": "gateway.db missing, subjects.db missing"})
    assert client.get("/healthz").status_code == 200  # a restart would not bring the data back


def test_a_write_after_the_data_dir_is_removed_is_refused_not_answered_as_kept(
    client: Client, data_dir: Path, as_user: Callable[[str], Headers]
) -> None:
    """Regression: the writer committed into the deleted files and the sync found no WAL to sync
    ("nothing written yet"), so a consent was answered 200 and was gone at the next start."""
    user = as_user("removed-dir-user")
    assert client.put("/v1/me/consents/marketing", json=CONSENT, headers=user).status_code == 200

    shutil.rmtree(data_dir)

    refused = client.put("/v1/me/consents/personalization", json=CONSENT, headers=user)
    assert refused.status_code == 503, refused.text
    assert "may not have been kept" in refused.json()["detail"]
    assert client.get("/healthz").status_code == 503  # this process can keep nothing any more


def test_a_write_after_the_wal_is_removed_is_refused_not_answered_as_kept(
    client: Client, data_dir: Path, as_user: Callable[[str], Headers]
) -> None:
    """The sync thread took a missing WAL for "nothing written yet", so a commit into the removed
    one was answered 200 and gone after a crash."""
    user = as_user("removed-wal-user")
    assert client.put("/v1/me/consents/marketing", json=CONSENT, headers=user).status_code == 200

    (data_dir / "gateway.db-wal").unlink()

    refused = client.put("/v1/me/consents/location", json=CONSENT, headers=user)
    assert refused.status_code == 503, refused.text
    assert client.get("/healthz").status_code == 503


def test_a_replaced_database_file_is_not_ready(client: Client, data_dir: Path) -> None:
    assert _ready(client)[0] == 200
    copy = data_dir / "copy.db"
    shutil.copyfile(data_dir / "subjects.db", copy)
    os.replace(copy, data_dir / "subjects.db")

    assert _ready(client) == (503, {"keys": "ok", "database": "subjects.db replaced"})


def test_a_key_store_with_other_keys_is_not_ready_but_a_rotated_one_is(
    client: Client, runtime: Runtime, data_dir: Path, as_key: Callable[..., Headers]
) -> None:
    rotated = client.post("/v1/admin/keys/rotate-encryption", headers=as_key("admin"))
    assert rotated.status_code == 200, rotated.text  # the key store file is replaced, keys kept
    assert _ready(client) == (200, {"keys": "ok", "database": "ok"})

    other = KeyStore.create(data_dir / "other-keys.json")
    os.replace(other.path, runtime.keys.path)

    assert _ready(client) == (503, {"keys": "replaced", "database": "ok"})


def test_a_key_store_whose_kek_was_made_anew_under_the_same_id_is_not_ready(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers]
) -> None:
    """Regression: readiness compared key-encryption key ids only, so a store with a new `kek-1`
    (every other key the same) read ready, and after the restart no wrapped data key opened."""
    assert (
        client.put("/v1/me/consents/marketing", json=CONSENT, headers=as_user("kek-user")).status_code == 200
    )
    stored = json.loads(runtime.keys.path.read_text())
    stored["kek"] = {kid: _b64(os.urandom(32)) for kid in stored["kek"]}
    staged = runtime.keys.path.with_name("keys.staged.json")
    staged.write_text(json.dumps(stored))
    os.replace(staged, runtime.keys.path)

    assert _ready(client) == (503, {"keys": "replaced", "database": "ok"})


def _without_kek(keystore: Path, kid: str) -> None:
    stored = json.loads(keystore.read_text())
    del stored["kek"][kid]
    staged = keystore.with_name("keys.staged.json")
    staged.write_text(json.dumps(stored))
    os.replace(staged, keystore)


def test_removing_the_key_a_finished_rotation_left_unused_stays_ready(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], as_key: Callable[..., Headers]
) -> None:
    """SECURITY.md: remove old key-encryption keys once a rotation has finished. Doing so made
    every running process answer 503 "replaced" until restarted, though a restart was fine."""
    assert client.put("/v1/me/consents/marketing", json=CONSENT, headers=as_user("ada")).status_code == 200
    rotated = client.post("/v1/admin/keys/rotate-encryption", headers=as_key("admin"))
    assert rotated.status_code == 200, rotated.text

    _without_kek(runtime.keys.path, "kek-1")

    assert _ready(client) == (200, {"keys": "ok", "database": "ok"})


def test_removing_a_key_that_still_wraps_data_keys_is_not_ready(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers]
) -> None:
    """A second key made active by hand, the first removed with no rotation: ada's data key is
    still under `kek-1`, which the next start would refuse to do without."""
    assert client.put("/v1/me/consents/marketing", json=CONSENT, headers=as_user("ada")).status_code == 200
    stored = json.loads(runtime.keys.path.read_text())
    stored["kek"]["kek-2"] = _b64(os.urandom(32))
    stored["kek_active"] = "kek-2"
    runtime.keys.path.write_text(json.dumps(stored))
    _without_kek(runtime.keys.path, "kek-1")

    assert _ready(client) == (503, {"keys": "replaced", "database": "ok"})


def _deploy_signing_key(keystore: Path, *, retire_old: bool) -> None:
    """A signing-key rotation as README and SECURITY.md describe it: a new `signing_key`, the old
    one's JWK `x` under `retired_signing_keys` (or not, by mistake), the other keys unchanged,
    the file replaced atomically."""
    stored = json.loads(keystore.read_text())
    old = Ed25519PrivateKey.from_private_bytes(_unb64(stored["signing_key"]))
    stored["signing_key"] = _b64(Ed25519PrivateKey.generate().private_bytes_raw())
    stored["retired_signing_keys"] = [_b64(old.public_key().public_bytes_raw())] if retire_old else []
    staged = keystore.with_name("keys.staged.json")
    staged.write_text(json.dumps(stored))
    os.replace(staged, keystore)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_a_signing_key_rotation_that_retires_the_key_in_use_stays_ready(
    client: Client, runtime: Runtime
) -> None:
    assert _ready(client)[0] == 200

    _deploy_signing_key(runtime.keys.path, retire_old=True)

    # The next start signs with the new key and still verifies what this one signed.
    assert _ready(client) == (200, {"keys": "ok", "database": "ok"})


def test_a_new_signing_key_that_drops_the_key_in_use_is_not_ready(client: Client, runtime: Runtime) -> None:
    assert _ready(client)[0] == 200

    _deploy_signing_key(runtime.keys.path, retire_old=False)

    # What this process signed would no longer verify after a restart.
    assert _ready(client) == (503, {"keys": "replaced", "database": "ok"})
