"""A signing key deployed while serving is taken up by every running process, not at each one's
restart.

The operator replaces the key store with a new signing key and the old one's `x` under
`retired_signing_keys`. Each process looks at the key store every `SIGNING_KEY_LOOK_SECONDS`
and, once the new store would still read what it wrote, signs with the new key and publishes it
first in its JWKS. Before, a process not restarted signed with the retired key and served a JWKS
without the new one, so behind a load balancer a receipt signed by a restarted process did not
verify against the JWKS of one not yet restarted. A key store a start would refuse (the key in
use not retired) is not taken. The in-process tests look every 50 ms; the real servers run with
the default.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FakeClock, Headers
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jws
from joserfc.jwk import KeySet
from litestar import Litestar
from litestar.testing import TestClient
from support import Server, serve_process

import gateway.app
import gateway.runtime
import storage.connections
from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings
from storage.keys import KeyStore, KeyStoreError, PublicSigningKey
from storage.store import DIRECTORY_FILE

Client = TestClient[Litestar]
Json = dict[str, Any]
CONSENT = {"granted": True, "notice_version": "v1"}
LOOK_SECONDS = 0.05
SLACK_SECONDS = 10.0  # for a loaded machine: that it happens is checked, not how fast

jose_eddsa = pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def deploy_new_signing_key(keystore: Path, *, retire_old: bool, retired_kid: bool = False) -> str:
    """The operator's rotation, the file replaced atomically; returns the key store as it was.
    `retired_kid`: the old key's JWK `kid` pasted where its `x` belongs."""
    before = keystore.read_text()
    stored = json.loads(before)
    old = Ed25519PrivateKey.from_private_bytes(_unb64(stored["signing_key"])).public_key()
    stored["signing_key"] = _b64(Ed25519PrivateKey.generate().private_bytes_raw())
    stored["retired_signing_keys"] = [_b64(old.public_bytes_raw())] if retire_old else []
    if retired_kid:
        stored["retired_signing_keys"] = [PublicSigningKey(old).kid]
    replace_atomically(keystore, json.dumps(stored))
    return before


def replace_atomically(keystore: Path, text: str) -> None:
    """As SECURITY.md says to: written beside, then renamed over the old file."""
    staged = keystore.with_name("keys.staged.json")
    staged.write_text(text)
    staged.chmod(0o600)
    os.replace(staged, keystore)


def kid_of(token: str) -> str:
    kid: str = json.loads(_unb64(token.split(".")[0]))["kid"]
    return kid


def published(get: Callable[..., Any]) -> list[str]:
    answer = get("/.well-known/jwks.json")
    assert answer.status_code == 200, answer.text
    return [key["kid"] for key in answer.json()["keys"]]


def first_published_within(get: Callable[..., Any], not_kid: str, seconds: float) -> list[str]:
    """The JWKS's kids once its first key is no longer `not_kid`, or as they are after `seconds`."""
    deadline = time.monotonic() + seconds
    kids = published(get)
    while kids[0] == not_kid and time.monotonic() < deadline:
        time.sleep(0.02)
        kids = published(get)
    return kids


def receipt(put: Callable[..., Any], headers: Headers) -> str:
    answer = put("/v1/me/consents/marketing", json=CONSENT, headers=headers)
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["jws"]
    return token


@pytest.fixture
def quick_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway.app, "SIGNING_KEY_LOOK_SECONDS", LOOK_SECONDS)


@pytest.fixture
def serving(quick_looks: None, settings: Settings, clock: FakeClock) -> Iterator[tuple[Client, Runtime]]:
    with TestClient(create_app(settings, clock)) as client:
        yield client, client.app.state.runtime


@jose_eddsa
def test_a_new_signing_key_is_taken_up_while_serving(
    quick_looks: None, settings: Settings, clock: FakeClock
) -> None:
    with TestClient(create_app(settings, clock)) as client:
        runtime: Runtime = client.app.state.runtime
        alice = {"Authorization": f"Bearer {runtime.user_tokens.mint('alice', clock())}"}
        old_kid = kid_of(receipt(client.put, alice))

        old_store = deploy_new_signing_key(runtime.keys.path, retire_old=True)

        kids = first_published_within(client.get, old_kid, SLACK_SECONDS)
        assert kids[0] != old_kid, "the new signing key was not taken up"
        assert kids[1:] == [old_kid]  # the retired key stays published, after the current one
        token = receipt(client.put, alice)
        assert kid_of(token) == kids[0]
        jwks = KeySet.import_key_set(client.get("/.well-known/jwks.json").json())
        jws.deserialize_compact(token, jwks, algorithms=["EdDSA"])
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        _, secret = runtime.api_keys.create_sync("auditor", ("audit:read",))
        verdict = client.get("/v1/audit/ledger/verify", headers={"Authorization": f"Bearer {secret}"})
        assert (verdict.json()["ok"], verdict.json()["checkpoint_problem"]) == (True, None)

    # The directory now names the new key: a start on the key store from before, which does not
    # list it, is refused rather than leaving the receipt just signed unverifiable.
    settings.keystore_path.write_text(old_store)
    with pytest.raises(KeyStoreError, match="retired_signing_keys"):
        Runtime(settings, clock)


def test_a_key_replaced_while_serving_is_not_taken_up_again(
    serving: tuple[Client, Runtime], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A key store from before the rotation, edited to list the new key as retired, retires the
    key in use: it was taken up, and the key replaced (a leaked one, say) signed again."""
    client, runtime = serving
    alice = {"Authorization": f"Bearer {runtime.user_tokens.mint('alice', clock())}"}
    old_kid = kid_of(receipt(client.put, alice))
    before = json.loads(deploy_new_signing_key(runtime.keys.path, retire_old=True))
    new_kid = first_published_within(client.get, old_kid, SLACK_SECONDS)[0]
    assert new_kid != old_kid, "the new signing key was not taken up"

    rotated = json.loads(runtime.keys.path.read_text())
    successor = Ed25519PrivateKey.from_private_bytes(_unb64(rotated["signing_key"])).public_key()
    back = before | {"retired_signing_keys": [_b64(successor.public_bytes_raw())]}
    with caplog.at_level(logging.ERROR, logger="storage.store"):
        replace_atomically(runtime.keys.path, json.dumps(back))
        time.sleep(3 * LOOK_SECONDS)
    assert kid_of(receipt(client.put, alice)) == new_kid
    said_so = [r for r in caplog.records if "not taken up" in r.getMessage()]
    assert "was replaced here before" in said_so[0].__dict__["reason"]
    ready = client.get("/readyz")  # the next start would refuse this key store
    assert (ready.status_code, "replaced" in ready.text) == (503, True), ready.text


@pytest.mark.parametrize(
    ("retired", "said"),
    [
        ("none", "neither is nor retires the one in use"),
        ("by kid", "lists the key in use by its kid"),
    ],
)
def test_a_key_store_that_does_not_retire_the_key_in_use_is_not_taken(
    serving: tuple[Client, Runtime],
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    retired: str,
    said: str,
) -> None:
    client, runtime = serving
    alice = {"Authorization": f"Bearer {runtime.user_tokens.mint('alice', clock())}"}
    old_kid = kid_of(receipt(client.put, alice))

    with caplog.at_level(logging.ERROR, logger="storage.store"):
        deploy_new_signing_key(runtime.keys.path, retire_old=False, retired_kid=retired == "by kid")
        kids = first_published_within(client.get, old_kid, 40 * LOOK_SECONDS)

    assert kids == [old_kid]
    assert kid_of(receipt(client.put, alice)) == old_kid
    ready = client.get("/readyz")
    assert ready.status_code == 503, ready.text
    assert "replaced" in ready.text
    said_so = [r for r in caplog.records if "not taken up" in r.getMessage()]
    assert len(said_so) == 1  # once for the file's change, not at every look
    assert said in said_so[0].__dict__["reason"]


def test_a_look_that_fails_is_looked_at_again(
    quick_looks: None,
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another process holds the directory's write lock as the new key is found, so recording it
    fails: the key is taken up at a later look, not forgotten with the file's change."""
    monkeypatch.setattr(storage.connections, "BUSY_TIMEOUT_MS", 20)
    with TestClient(create_app(settings, clock)) as client:
        runtime: Runtime = client.app.state.runtime
        [old_kid] = published(client.get)
        other = storage.connections.connect(
            runtime.store.data_dir / DIRECTORY_FILE, runtime.keys.directory_key
        )
        other.execute("BEGIN IMMEDIATE")
        try:
            with caplog.at_level(logging.WARNING, logger="gateway"):
                deploy_new_signing_key(runtime.keys.path, retire_old=True)
                deadline = time.monotonic() + SLACK_SECONDS
                while "taking up a new signing key failed" not in caplog.text and time.monotonic() < deadline:
                    time.sleep(0.02)
            assert "taking up a new signing key failed" in caplog.text
            assert published(client.get) == [old_kid]
        finally:
            other.execute("ROLLBACK")
            other.close()
        kids = first_published_within(client.get, old_kid, SLACK_SECONDS)
        assert kids[0] != old_kid, "a failed look left the new key for good"
        assert kids[1:] == [old_kid]


def test_a_key_store_that_does_not_read_is_said_once_and_its_mend_taken_up(
    serving: tuple[Client, Runtime], caplog: pytest.LogCaptureFixture
) -> None:
    client, runtime = serving
    [old_kid] = published(client.get)
    good = runtime.keys.path.read_text()
    with caplog.at_level(logging.ERROR, logger="storage.store"):
        replace_atomically(runtime.keys.path, good.replace('"signing_key"', '"signing_kee"'))
        time.sleep(40 * LOOK_SECONDS)  # forty looks at the same broken file
    said = [r for r in caplog.records if "not taken up" in r.getMessage()]
    assert len(said) == 1, [r.__dict__.get("reason") for r in said]
    assert "malformed" in said[0].__dict__["reason"]
    assert published(client.get) == [old_kid]

    replace_atomically(runtime.keys.path, good)
    deploy_new_signing_key(runtime.keys.path, retire_old=True)
    assert first_published_within(client.get, old_kid, SLACK_SECONDS)[1:] == [old_kid]


def test_a_key_store_replaced_as_the_process_starts_is_taken_up(
    quick_looks: None, monkeypatch: pytest.MonkeyPatch, settings: Settings, clock: FakeClock
) -> None:
    """Replaced after the keys were read and before the start was done: the first look reads the
    file, whatever it looked like at the start."""
    with TestClient(create_app(settings, clock)) as client:  # the first start: dev keys, recorded
        [old_kid] = published(client.get)
    read_at_start = gateway.runtime.load_keys

    def read_then_replaced(settings: Settings) -> KeyStore:
        keys = read_at_start(settings)
        deploy_new_signing_key(keys.path, retire_old=True)
        return keys

    monkeypatch.setattr(gateway.runtime, "load_keys", read_then_replaced)
    with TestClient(create_app(settings, clock)) as client:
        kids = first_published_within(client.get, old_kid, SLACK_SECONDS)
        assert kids[0] != old_kid, "the key store replaced during the start was never looked at"


def test_retired_keys_added_later_are_published(serving: tuple[Client, Runtime]) -> None:
    client, runtime = serving
    [kid] = published(client.get)
    stored = json.loads(runtime.keys.path.read_text())
    older = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    stored["retired_signing_keys"] = [_b64(older)]
    replace_atomically(runtime.keys.path, json.dumps(stored))

    deadline = time.monotonic() + SLACK_SECONDS
    while len(kids := published(client.get)) == 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert kids[0] == kid  # the signing key unchanged
    assert len(kids) == 2


@jose_eddsa
@pytest.mark.slow
def test_serve_processes_on_one_data_dir_sign_with_the_key_deployed(tmp_path: Path) -> None:
    """Two real servers; after the rotation a receipt one of them signs verifies against the
    JWKS the other publishes."""
    data_dir = tmp_path / "data"
    with (
        serve_process(data_dir, tmp_path / "first.stderr", {}) as first,
        serve_process(data_dir, tmp_path / "second.stderr", {}) as second,
        httpx.Client(base_url=first.base, timeout=10.0) as one,
        httpx.Client(base_url=second.base, timeout=10.0) as two,
    ):
        alice = _user(first, "alice")
        old_kid = kid_of(receipt(one.put, alice))

        deploy_new_signing_key(data_dir / "keys.json", retire_old=True)

        for http in (one, two):
            kids = first_published_within(http.get, old_kid, SLACK_SECONDS)
            assert kids[0] != old_kid, kids
            assert kids[1:] == [old_kid], kids
        token = receipt(one.put, alice)
        assert kid_of(token) == kids[0]
        jwks = KeySet.import_key_set(two.get("/.well-known/jwks.json").json())
        jws.deserialize_compact(token, jwks, algorithms=["EdDSA"])
        assert "signing with the key store's signing key" in first.stderr()
        second.stop()
        first.stop()


def _user(server: Server, user_id: str) -> Headers:
    minted = server.cli("token", user_id)
    assert minted.returncode == 0, minted.stderr
    return {"Authorization": f"Bearer {minted.stdout.strip()}"}
