"""`keystore create --out FILE` makes the key store an operator keeps apart from the data.

There was no way to make one but to copy the dev store a first run leaves in the data dir, which
the banner says never to use in production. The store made here is fresh, 0600, never written
over an existing file, and serves: a gateway on an empty data dir opens with it.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest
from support import serve_process

from storage.keys import DEV_WARNING, KeyStore

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("consent-gateway"))
SECRET = "s" * 40


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env or {}, capture_output=True, text=True, timeout=60)


def test_a_key_store_made_apart_serves_a_new_gateway_and_is_never_written_over(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "cgw-keys.json"
    made = _run("keystore", "create", "--out", str(path))
    assert made.returncode == 0, made.stderr
    assert made.stdout == ""  # nothing secret printed
    assert "set CGW_KEYSTORE_FILE to it" in made.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keys = KeyStore.load(path)
    assert json.loads(path.read_text())["warning"] != DEV_WARNING

    before = path.read_bytes()
    again = _run("keystore", "create", "--out", str(path))
    assert (again.returncode, path.read_bytes()) == (2, before)
    assert "never overwritten" in again.stderr
    assert _run("keystore", "create", "--out", "").returncode == 2
    inside = tmp_path / "data" / "keys.json"  # where the data's copies and backups would carry it
    refused = _run("keystore", "create", "--out", str(inside), env={"CGW_DATA_DIR": str(tmp_path / "data")})
    assert (refused.returncode, inside.exists()) == (2, False)
    assert "inside the data dir" in refused.stderr
    assert "DEVELOPMENT KEYS" not in refused.stderr

    data = tmp_path / "data"
    data.mkdir()
    env = {"CGW_KEYSTORE_FILE": str(path), "CGW_JWT_SECRET": SECRET, "CGW_DATA_DIR": str(data)}
    key = _run("keys", "create", "--name", "ops", "--scope", "admin", env=env)
    assert key.returncode == 0, key.stderr
    assert key.stdout.startswith("cgw_")
    assert "DEVELOPMENT KEYS" not in key.stderr
    assert not (data / "keys.json").exists()  # the data dir holds no key store
    listed = _run("keys", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "ops" in listed.stdout
    assert KeyStore.load(path).database_key == keys.database_key


def test_a_backup_taken_and_restored_as_the_readme_says_serves_the_same_state(tmp_path: Path) -> None:
    """README, "Running it for real": a key store made apart, a user token made as an identity
    service would (PyJWT), a backup of both databases and their WAL with every process stopped,
    restored into another data dir: the user's consent and preferences are there, and the
    ledger verifies."""
    keystore = tmp_path / "secrets" / "cgw-keys.json"
    assert _run("keystore", "create", "--out", str(keystore)).returncode == 0
    settings = {"CGW_KEYSTORE_FILE": str(keystore), "CGW_JWT_SECRET": SECRET, "CGW_WORKER_ENABLED": "false"}
    token = jwt.encode(
        {"sub": "user-42", "aud": "consent-gateway", "exp": int(time.time()) + 900}, SECRET, "HS256"
    )
    user = {"Authorization": f"Bearer {token}"}
    first, second = tmp_path / "data", tmp_path / "restored"
    with serve_process(first, tmp_path / "first.stderr", settings) as server:
        consent = {"granted": True, "notice_version": "2026-12"}
        assert (
            httpx.put(f"{server.base}/v1/me/consents/marketing", json=consent, headers=user).status_code
            == 200
        )
        quiet = {"quiet_hours": {"start": "22:30", "end": "07:15"}}
        assert httpx.patch(f"{server.base}/v1/me/preferences", json=quiet, headers=user).status_code == 200
        before = httpx.get(f"{server.base}/v1/me/preferences", headers=user).json()
        server.stop()
    second.mkdir(mode=0o700)
    for name in ("gateway.db", "subjects.db", "gateway.db-wal", "subjects.db-wal"):
        if (first / name).exists():
            shutil.copy2(first / name, second / name)
    with serve_process(second, tmp_path / "second.stderr", settings) as server:
        after = httpx.get(f"{server.base}/v1/me/preferences", headers=user).json()
        verified = server.cli("audit", "verify")
        server.stop()
    assert after == before
    assert after["consents"]["marketing"]["granted"] is True
    assert verified.returncode == 0, verified.stderr
