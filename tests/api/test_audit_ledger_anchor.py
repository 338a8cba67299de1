"""Audit API: the ledger held to the gateway's own signed checkpoints.

A ledger cut short, or rewritten and re-chained by whoever holds the database key, is still a
sound hash chain. Verification (`GET /v1/audit/ledger/verify`, `consent-gateway audit verify`)
compares the ledger with the latest stored signed checkpoint too, and no new checkpoint is signed
over a history that does not extend it."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import FakeClock, Headers
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem, grow_ledger

from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.signing import Signer
from storage import ledger
from storage.connections import Connection
from storage.keys import SigningKey

Client = TestClient[Litestar]
Json = dict[str, Any]
CLI = Path(sys.executable).with_name("consent-gateway")


@pytest.fixture
def auditor(as_key: Callable[..., Headers]) -> Headers:
    return as_key("audit:read")


def get(client: Client, path: str, auditor: Headers) -> Json:
    response = client.get(f"/v1/audit{path}", headers=auditor)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


def tamper(runtime: Runtime, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Raw SQL on the data database, after dropping the append-only triggers."""

    def unit(conn: Connection) -> None:
        for table in ("ledger", "checkpoints"):
            conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        for sql, params in statements:
            conn.execute(sql, params)

    runtime.store.data.writer.run_sync(unit)


def rechain_from(runtime: Runtime, start: int) -> None:
    """What an attacker with the database key does after editing rows: recompute every link."""

    def unit(conn: Connection) -> None:
        prev = ledger.GENESIS
        for event in list(ledger.events(conn)):
            if event.seq >= start:
                record = msgspec.structs.replace(event, prev_hash=prev)
                digest = hashlib.sha256(record.canonical()).digest()
                conn.execute(
                    "UPDATE ledger SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, event.seq)
                )
                prev = digest
            else:
                prev = event.hash

    runtime.store.data.writer.run_sync(unit)


def rewrite_second_event(runtime: Runtime) -> None:
    """A withdrawal turned into a grant, the chain recomputed: the chain alone holds."""
    tamper(runtime, ("UPDATE ledger SET kind = 'consent.given' WHERE seq = 2", ()))
    rechain_from(runtime, 2)


def test_verify_without_a_checkpoint_reports_none(client: Client, as_user: Any, auditor: Headers) -> None:
    grow_ledger(client, as_user("alice"), 2)
    result = get(client, "/ledger/verify", auditor)
    assert (result["ok"], result["checkpoint_tree_size"], result["checkpoint_problem"]) == (True, None, None)
    get(client, "/ledger/checkpoint", auditor)
    grow_ledger(client, as_user("alice"), 1)  # growth after a checkpoint is fine
    result = get(client, "/ledger/verify", auditor)
    assert (result["ok"], result["checkpoint_tree_size"], result["checkpoint_problem"]) == (True, 2, None)


def test_a_truncated_ledger_fails_against_the_signed_checkpoint(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers
) -> None:
    grow_ledger(client, as_user("alice"), 5)
    assert get(client, "/ledger/checkpoint", auditor)["tree_size"] == 5
    tamper(runtime, ("DELETE FROM ledger WHERE seq = 5", ()))
    result = get(client, "/ledger/verify", auditor)
    assert result["ok"] is False
    assert result["first_invalid_seq"] is None  # the chain itself is sound: 4 good events
    assert (result["events"], result["checkpoint_tree_size"]) == (4, 5)
    assert result["checkpoint_problem"] == "ledger_shorter"


def test_a_rewritten_and_rechained_ledger_fails_against_the_signed_checkpoint(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers
) -> None:
    grow_ledger(client, as_user("alice"), 5)
    get(client, "/ledger/checkpoint", auditor)
    rewrite_second_event(runtime)
    result = get(client, "/ledger/verify", auditor)
    assert (result["ok"], result["first_invalid_seq"], result["events"]) == (False, None, 5)
    assert (result["checkpoint_tree_size"], result["checkpoint_problem"]) == (5, "root_differs")


def test_a_checkpoint_with_a_bad_signature_fails(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers
) -> None:
    grow_ledger(client, as_user("alice"), 3)
    checkpoint = get(client, "/ledger/checkpoint", auditor)
    header, _, signature = checkpoint["jws"].split(".")
    claims = {
        "type": "consent-gateway/ledger-checkpoint", "tree_size": 3,
        "root_hash": "00" * 32, "at": checkpoint["at"],
    }  # fmt: skip
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    forged = f"{header}.{payload}.{signature}"  # our kid, other claims: the signature does not hold
    tamper(runtime, ("UPDATE checkpoints SET jws = ? WHERE tree_size = 3", (forged,)))
    result = get(client, "/ledger/verify", auditor)
    assert (result["ok"], result["checkpoint_problem"]) == (False, "bad_signature")


def test_a_checkpoint_signed_by_a_key_not_ours_fails_as_an_unknown_key(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers
) -> None:
    grow_ledger(client, as_user("alice"), 3)
    checkpoint = get(client, "/ledger/checkpoint", auditor)
    claims = {
        "type": "consent-gateway/ledger-checkpoint", "tree_size": 3,
        "root_hash": checkpoint["root_hash"], "at": checkpoint["at"],
    }  # fmt: skip
    forged = Signer(SigningKey(Ed25519PrivateKey.generate())).sign(claims)
    tamper(runtime, ("UPDATE checkpoints SET jws = ? WHERE tree_size = 3", (forged,)))
    result = get(client, "/ledger/verify", auditor)  # neither this process nor its key store knows it
    assert (result["ok"], result["checkpoint_problem"]) == (False, "unknown_key")


def test_a_document_of_ours_that_names_no_type_is_no_checkpoint(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers
) -> None:
    """Signed with our own key, the claims of a checkpoint but no `type`: with a default type it
    was taken for one, where `type` is what keeps any other signed document from passing."""
    grow_ledger(client, as_user("alice"), 3)
    checkpoint = get(client, "/ledger/checkpoint", auditor)
    claims = {"tree_size": 3, "root_hash": checkpoint["root_hash"], "at": checkpoint["at"]}
    untyped = runtime.signer.sign(claims)
    tamper(runtime, ("UPDATE checkpoints SET jws = ? WHERE tree_size = 3", (untyped,)))
    result = get(client, "/ledger/verify", auditor)
    assert (result["ok"], result["checkpoint_problem"]) == (False, "bad_signature")


def test_no_checkpoint_is_signed_over_a_forged_history(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers
) -> None:
    alice = as_user("alice")
    grow_ledger(client, alice, 5)
    saved = get(client, "/ledger/checkpoint", auditor)
    rewrite_second_event(runtime)
    grow_ledger(client, alice, 2)
    refused = client.get("/v1/audit/ledger/checkpoint", headers=auditor)
    assert_problem(refused, 409, "checkpoint")
    assert_problem(client.get("/v1/audit/export", headers=auditor), 409, "checkpoint")
    assert runtime.store.data.reader().execute("SELECT max(tree_size) FROM checkpoints").fetchone()[0] == 5
    assert get(client, "/ledger/verify", auditor)["checkpoint_tree_size"] == saved["tree_size"]


def test_truncated_then_regrown_is_refused_too(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers
) -> None:
    alice = as_user("alice")
    grow_ledger(client, alice, 5)
    get(client, "/ledger/checkpoint", auditor)
    tamper(runtime, ("DELETE FROM ledger WHERE seq > 3", ()))
    assert get(client, "/ledger/checkpoint", auditor)["tree_size"] == 5  # the latest signed one
    grow_ledger(client, alice, 3)
    assert_problem(client.get("/v1/audit/ledger/checkpoint", headers=auditor), 409, "checkpoint")


Running = Callable[[], AbstractContextManager[tuple[Client, Runtime]]]


@pytest.fixture
def restartable(settings: Settings, clock: FakeClock) -> Running:
    """Starts the gateway on the same data dir, as a new process would (a fresh in-memory tree)."""

    @contextmanager
    def running() -> Iterator[tuple[Client, Runtime]]:
        with TestClient(create_app(settings, clock)) as client:
            yield client, client.app.state.runtime

    return running


def _auditor_and_user(runtime: Runtime) -> tuple[Headers, Headers]:
    _, secret = runtime.api_keys.create_sync("auditor", ("audit:read",))
    user = {"Authorization": f"Bearer {runtime.user_tokens.mint('alice', runtime.clock())}"}
    return {"Authorization": f"Bearer {secret}"}, user


def test_after_a_restart_the_rebuilt_tree_is_checked_and_a_sound_one_signed(
    restartable: Running,
) -> None:
    with restartable() as (client, runtime):
        auditor, alice = _auditor_and_user(runtime)
        grow_ledger(client, alice, 5)
        get(client, "/ledger/checkpoint", auditor)
    with restartable() as (client, runtime):  # a sound ledger: rebuilt, checked, extended, signed
        auditor, alice = _auditor_and_user(runtime)
        grow_ledger(client, alice, 2)
        assert get(client, "/ledger/checkpoint", auditor)["tree_size"] == 7
        rewrite_second_event(runtime)
    with restartable() as (client, runtime):  # rewritten while down: refused on the rebuild
        auditor, alice = _auditor_and_user(runtime)
        grow_ledger(client, alice, 1)
        assert_problem(client.get("/v1/audit/ledger/checkpoint", headers=auditor), 409, "checkpoint")


def test_cli_audit_verify_checks_the_signed_checkpoint(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers, data_dir: Path
) -> None:
    grow_ledger(client, as_user("alice"), 5)
    get(client, "/ledger/checkpoint", auditor)
    tamper(runtime, ("DELETE FROM ledger WHERE seq = 5", ()))
    runtime.store.data.checkpoint()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGW_")}
    command = [str(CLI), "audit", "verify", "--data-dir", str(data_dir)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert (report["ok"], report["first_invalid_seq"]) == (False, None)
    assert (report["checkpoint_tree_size"], report["checkpoint_problem"]) == (5, "ledger_shorter")
