"""Audit API across a signing-key rotation: a new key store is deployed with the old key's public
half under `retired_signing_keys`, and everything the old key signed keeps verifying — through
the served JWKS, the ledger check against stored checkpoints, and `audit verify --export`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock, Headers
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jws
from joserfc.jwk import KeySet
from litestar import Litestar
from litestar.testing import TestClient
from support import grow_ledger

from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings
from storage.keys import KeyStore, KeyStoreError

Client = TestClient[Litestar]
Json = dict[str, Any]
CLI = Path(sys.executable).with_name("consent-gateway")

jose_eddsa = pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")


@contextmanager
def running(settings: Settings, clock: FakeClock) -> Iterator[tuple[Client, Headers, Headers]]:
    with TestClient(create_app(settings, clock)) as client:
        runtime: Runtime = client.app.state.runtime
        _, secret = runtime.api_keys.create_sync("auditor", ("audit:read",))
        user = {"Authorization": f"Bearer {runtime.user_tokens.mint('alice', runtime.clock())}"}
        yield client, {"Authorization": f"Bearer {secret}"}, user


def get(client: Client, path: str, headers: Headers) -> Json:
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    return kid


def deploy_new_signing_key(keystore: Path, *, retire_old: bool) -> None:
    """What an operator does: a new key store, the same other keys, a new signing key, and the old
    key's `x` (copied from the served JWKS) under `retired_signing_keys`."""
    stored = json.loads(keystore.read_text())
    old = Ed25519PrivateKey.from_private_bytes(
        base64.urlsafe_b64decode(stored["signing_key"] + "=" * (-len(stored["signing_key"]) % 4))
    )
    old_x = base64.urlsafe_b64encode(old.public_key().public_bytes_raw()).decode().rstrip("=")
    new = Ed25519PrivateKey.generate().private_bytes_raw()
    stored["signing_key"] = base64.urlsafe_b64encode(new).decode().rstrip("=")
    stored["retired_signing_keys"] = [old_x] if retire_old else []
    keystore.write_text(json.dumps(stored))


@jose_eddsa
def test_what_a_retired_key_signed_still_verifies(
    settings: Settings, clock: FakeClock, data_dir: Path, tmp_path: Path
) -> None:
    with running(settings, clock) as (client, auditor, alice):
        grow_ledger(client, alice, 3)
        old_checkpoint = get(client, "/v1/audit/ledger/checkpoint", auditor)
        old_kid = get(client, "/.well-known/jwks.json", {})["keys"][0]["kid"]
    deploy_new_signing_key(settings.keystore_path, retire_old=True)
    with running(settings, clock) as (client, auditor, alice):
        jwks = get(client, "/.well-known/jwks.json", {})
        kids = [key["kid"] for key in jwks["keys"]]
        assert len(kids) == 2
        assert kids[1] == old_kid  # the current key first, then the retired one
        assert kids[0] != old_kid
        keys = KeySet.import_key_set({"keys": jwks["keys"]})
        jws.deserialize_compact(old_checkpoint["jws"], keys, algorithms=["EdDSA"])
        verdict = get(client, "/v1/audit/ledger/verify", auditor)
        assert (verdict["ok"], verdict["checkpoint_problem"]) == (True, None)
        export = get(client, "/v1/audit/export", auditor)["jws"]  # no growth: the old checkpoint
        assert kid_of(export) == kids[0]
        inner = json.loads(jws.deserialize_compact(export, keys, algorithms=["EdDSA"]).payload)
        assert kid_of(inner["checkpoint"]["jws"]) == old_kid
        jws.deserialize_compact(inner["checkpoint"]["jws"], keys, algorithms=["EdDSA"])
    out = tmp_path / "export.jws"
    out.write_text(export + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGW_")}
    command = [str(CLI), "audit", "verify", "--export", str(out), "--data-dir", str(data_dir)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["checked"] == [
        "signature", "checkpoint signature", "hash chain", "checkpoint root",
    ]  # fmt: skip


def test_a_key_store_without_retired_keys_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    created = KeyStore.create(path)
    stored = json.loads(path.read_text())
    del stored["retired_signing_keys"]  # as written before the field existed
    path.write_text(json.dumps(stored))
    loaded = KeyStore.load(path)
    assert (loaded.signing.kid, loaded.signing.retired) == (created.signing.kid, ())


@pytest.mark.parametrize("bad", ["not base64!", "AAAA", 7])
def test_a_malformed_retired_key_is_a_key_store_error(tmp_path: Path, bad: object) -> None:
    path = tmp_path / "keys.json"
    KeyStore.create(path)
    stored = json.loads(path.read_text())
    stored["retired_signing_keys"] = [bad]
    path.write_text(json.dumps(stored))
    with pytest.raises(KeyStoreError, match=r"malformed: .*retired_signing_keys"):
        KeyStore.load(path)
