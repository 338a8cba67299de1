"""Ledger verification during a rolling restart after a signing-key rotation.

The key store is replaced (a new signing key, the old one retired) while processes run; each
takes the new key up within a second (tests/api/test_signing_key_taken_up.py), or at its
restart. A process that has not looked yet meets the latest checkpoint signed by a key it does
not know: it reads the key store's public keys again before judging, and a key the store does
not list either is `unknown_key`, not the tamper alarm `bad_signature`. Here the running process
does not look at the key store while the test runs."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock, Headers
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Litestar
from litestar.testing import TestClient

import gateway.app
from gateway.runtime import Runtime
from gateway.settings import Settings

Client = TestClient[Litestar]
Json = dict[str, Any]
CLI = Path(sys.executable).with_name("consent-gateway")
CONSENT = {"granted": True, "notice_version": "v1"}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture(autouse=True)
def not_looking(monkeypatch: pytest.MonkeyPatch) -> None:
    """The running process as one that has not yet looked at the key store since the rotation."""
    monkeypatch.setattr(gateway.app, "SIGNING_KEY_LOOK_SECONDS", 3600.0)


def deploy_new_signing_key(keystore: Path, *, retire_old: bool) -> None:
    """The operator's rotation: a new signing key, the old one's `x` retired (or left out by
    mistake), the other keys unchanged, the file replaced atomically."""
    stored = json.loads(keystore.read_text())
    old = Ed25519PrivateKey.from_private_bytes(_unb64(stored["signing_key"]))
    stored["signing_key"] = _b64(Ed25519PrivateKey.generate().private_bytes_raw())
    stored["retired_signing_keys"] = [_b64(old.public_key().public_bytes_raw())] if retire_old else []
    staged = keystore.with_name("keys.staged.json")
    staged.write_text(json.dumps(stored))
    os.replace(staged, keystore)


def verify(client: Client, auditor: Headers) -> Json:
    response = client.get("/v1/audit/ledger/verify", headers=auditor)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


def checkpoint_by_a_restarted_process(client: Client, settings: Settings, clock: FakeClock) -> str:
    """A second process on the same data dir, started after the rotation, signs a checkpoint."""
    restarted = Runtime(settings, clock)
    try:
        assert client.blocking_portal.call(restarted.audit.ledger.checkpoint).tree_size == 2
        return restarted.signer.kid
    finally:
        restarted.close()


def test_a_process_not_yet_restarted_verifies_a_checkpoint_signed_by_the_new_key(
    client: Client,
    runtime: Runtime,
    settings: Settings,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    user, auditor = as_user("alice"), as_key("audit:read")
    assert client.put("/v1/me/consents/marketing", json=CONSENT, headers=user).status_code == 200
    assert client.get("/v1/audit/ledger/checkpoint", headers=auditor).status_code == 200
    deploy_new_signing_key(runtime.keys.path, retire_old=True)
    assert client.put("/v1/me/consents/marketing", json=CONSENT, headers=user).status_code == 200

    new_kid = checkpoint_by_a_restarted_process(client, settings, clock)

    assert new_kid != runtime.signer.kid
    verdict = verify(client, auditor)
    assert (verdict["ok"], verdict["checkpoint_tree_size"], verdict["checkpoint_problem"]) == (True, 2, None)


def test_a_checkpoint_by_a_key_the_store_does_not_list_is_an_unknown_key(
    client: Client,
    runtime: Runtime,
    settings: Settings,
    clock: FakeClock,
    data_dir: Path,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    user, auditor = as_user("alice"), as_key("audit:read")
    assert client.put("/v1/me/consents/marketing", json=CONSENT, headers=user).status_code == 200
    assert client.get("/v1/audit/ledger/checkpoint", headers=auditor).status_code == 200

    deploy_new_signing_key(runtime.keys.path, retire_old=False)  # the key in use is left out

    verdict = verify(client, auditor)  # this process still knows its own key
    assert (verdict["ok"], verdict["checkpoint_problem"]) == (True, None)
    runtime.store.data.checkpoint()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGW_")}
    command = [str(CLI), "audit", "verify", "--data-dir", str(data_dir)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert (report["ok"], report["checkpoint_tree_size"], report["checkpoint_problem"]) == (
        False,
        1,
        "unknown_key",
    )
    # `audit export` signs a checkpoint and the export: with a key that leaves what was signed
    # unverifiable it is refused, as a start is, and signs nothing (it wrote an export nobody
    # could verify, and a checkpoint that failed the ledger's verification).
    out = data_dir.parent / "export.jws"
    command = [str(CLI), "audit", "export", "--data-dir", str(data_dir), "--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "retired_signing_keys" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()
    conn = runtime.store.data.reader()
    assert conn.execute("SELECT count(*) FROM checkpoints").fetchone() == (1,)
