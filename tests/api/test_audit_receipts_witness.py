"""Consent receipts as witnesses of the ledger (`audit verify --export F --receipt R`).

A saved checkpoint is a witness only an auditor keeps. Every user is given one too: the receipt
of each consent change holds the hash of the ledger's event before its own, so the history up to
it is signed into a document the user keeps. Whoever holds the database key can rewrite the
history, re-chain it and have the gateway sign checkpoints and exports over the forgery; they
cannot make the receipts already given hold another hash.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import FakeClock, Headers
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Litestar
from litestar.testing import TestClient
from support import tamper

from gateway.runtime import Runtime
from gateway.schemas.me import ConsentReceipt
from gateway.services.export_check import verify_export
from gateway.signing import Signer
from storage import ledger
from storage.keys import SigningKey

Client = TestClient[Litestar]
CLI = Path(sys.executable).with_name("consent-gateway")
T0 = datetime.fromisoformat("2026-11-23T10:00:00+00:00")


@pytest.fixture
def auditor(as_key: Callable[..., Headers]) -> Headers:
    return as_key("audit:read")


def consent(client: Client, headers: Headers, granted: bool, clock: FakeClock, hour: int) -> dict[str, Any]:
    """A marketing consent change at 10:00 + `hour`: the consent route's answer."""
    clock.now = T0.replace(hour=10 + hour)
    answer = client.put(
        "/v1/me/consents/marketing", headers=headers, json={"granted": granted, "notice_version": "v1"}
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def export(client: Client, auditor: Headers, **window: str) -> str:
    answer = client.get("/v1/audit/export", headers=auditor, params=window)
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["jws"]
    return token


def test_a_receipt_holds_the_hash_of_the_history_before_its_event(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], auditor: Headers, clock: FakeClock
) -> None:
    first = consent(client, as_user("alice"), True, clock, 0)
    second = consent(client, as_user("bob"), True, clock, 1)
    events = list(ledger.events(runtime.store.data.reader()))
    assert (
        [e.seq for e in events] == [first["receipt"]["ledger_seq"], second["receipt"]["ledger_seq"]] == [1, 2]
    )
    assert events[0].hash == events[1].prev_hash
    assert first["receipt"]["ledger_prev_hash"] == ledger.GENESIS[:16].hex()
    assert second["receipt"]["ledger_prev_hash"] == events[0].hash[:16].hex()
    report = verify_export(
        export(client, auditor), runtime.signer.public_keys(), receipts=[first["jws"], second["jws"]]
    )
    assert (report.ok, report.problem) == (True, None)
    assert report.checked[-1] == "receipts"


def test_a_history_rewritten_before_a_receipt_is_caught_by_it(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], auditor: Headers, clock: FakeClock
) -> None:
    alice, bob = as_user("alice"), as_user("bob")
    consent(client, alice, True, clock, 0)  # seq 1
    consent(client, bob, False, clock, 1)  # seq 2: bob withdraws
    kept = consent(client, alice, False, clock, 2)  # seq 3: alice's receipt, which she keeps
    # Whoever holds the database key: bob's withdrawal gone, the checkpoints with it, and the
    # history after it written again by the gateway itself, each event as it was but bob's.
    tamper(
        runtime,
        "DROP TRIGGER ledger_no_delete",
        "DROP TRIGGER checkpoints_no_delete",
        "DELETE FROM checkpoints",
        "DELETE FROM ledger WHERE seq >= 2",
    )
    consent(client, bob, True, clock, 1)  # seq 2: "bob never withdrew"
    again = consent(client, alice, False, clock, 2)  # seq 3, as alice's was
    assert {k: v for k, v in again["receipt"].items() if k not in ("receipt_id", "ledger_prev_hash")} == {
        k: v for k, v in kept["receipt"].items() if k not in ("receipt_id", "ledger_prev_hash")
    }
    forged = export(client, auditor)
    keys = runtime.signer.public_keys()
    assert verify_export(forged, keys).ok  # alone, the forgery holds together
    assert verify_export(forged, keys, receipts=[again["jws"]]).ok  # and with its own receipts
    report = verify_export(forged, keys, receipts=[again["jws"], kept["jws"]])
    assert (report.ok, report.problem) == (
        False,
        "receipt 2: the history before its event (seq 3) is not the one it was signed after: rewritten",
    )


def test_a_receipt_must_be_the_gateways_and_its_event_this_consent(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], auditor: Headers, clock: FakeClock
) -> None:
    alice = as_user("alice")
    given = consent(client, alice, True, clock, 0)  # seq 1
    consent(client, alice, False, clock, 1)  # seq 2
    token = export(client, auditor)
    keys = runtime.signer.public_keys()
    receipt = msgspec.json.decode(msgspec.json.encode(given["receipt"]), type=ConsentReceipt)

    def signed(changed: ConsentReceipt, signer: Signer = runtime.signer) -> str:
        return signer.sign_parts(changed).compact()

    stranger = Signer(SigningKey(Ed25519PrivateKey.generate()))
    cases = {
        "not a consent receipt signed by the gateway: Not enough segments": "not-a-jws",
        "not a consent receipt signed by the gateway: signed by a key that is not ours": signed(
            receipt, stranger
        ),
        "the ledger's event at seq 1 is not this consent": signed(
            msgspec.structs.replace(receipt, state="withdrawn")
        ),
        "the ledger's event at seq 2 is not this consent": signed(
            msgspec.structs.replace(receipt, ledger_seq=2, ledger_prev_hash=msgspec.UNSET)
        ),
        "cannot tell: its event (seq 9) is not in this export (seq 1 to 2)": signed(
            msgspec.structs.replace(receipt, ledger_seq=9)
        ),
    }
    for expected, receipt_token in cases.items():
        problem = verify_export(token, keys, receipts=[receipt_token]).problem
        assert problem is not None
        assert problem.startswith(f"receipt 1: {expected}"), problem
    # A receipt signed before receipts held the ledger's hash is checked by its event alone; one
    # that held all 256 bits of it, by all of them.
    older = signed(msgspec.structs.replace(receipt, ledger_prev_hash=msgspec.UNSET))
    assert verify_export(token, keys, receipts=[older]).ok
    whole = signed(msgspec.structs.replace(receipt, ledger_prev_hash=ledger.GENESIS.hex()))
    assert verify_export(token, keys, receipts=[whole]).ok
    cut = signed(msgspec.structs.replace(receipt, ledger_prev_hash=ledger.GENESIS.hex()[:20]))
    assert verify_export(token, keys, receipts=[cut]).problem == (
        "receipt 1: the history before its event (seq 1) is not the one it was signed after: rewritten"
    )


def test_a_window_cannot_tell_the_history_a_receipt_witnesses(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], auditor: Headers, clock: FakeClock
) -> None:
    """A window's chain starts at its first event's own link, which nothing ties to the events
    before it: bob's withdrawal turned into a grant in place (no re-chaining), before the window,
    would go unseen by a window that holds alice's receipt and its link. Only the whole ledger
    tells, and it does: the chain breaks there."""
    alice, bob = as_user("alice"), as_user("bob")
    consent(client, alice, True, clock, 0)  # seq 1
    consent(client, bob, False, clock, 1)  # seq 2
    kept = consent(client, alice, False, clock, 2)  # seq 3
    assert client.get("/v1/audit/ledger/checkpoint", headers=auditor).status_code == 200  # signed: 3 events
    tamper(runtime, "DROP TRIGGER ledger_no_update", "UPDATE ledger SET kind = 'consent.given' WHERE seq = 2")
    keys = runtime.signer.public_keys()
    window = export(client, auditor, **{"from": "2026-11-23T12:00:00Z"})
    assert verify_export(window, keys).ok  # the window alone holds together
    assert verify_export(window, keys, receipts=[kept["jws"]]).problem == (
        "receipt 1: cannot tell: it witnesses the history before its event (seq 3), and this export "
        "starts at seq 3; export the ledger from its start"
    )
    assert (
        verify_export(export(client, auditor), keys, receipts=[kept["jws"]]).problem
        == "hash chain breaks at seq 2"
    )


def test_cli_checks_receipts_as_users_keep_them(
    client: Client,
    runtime: Runtime,
    as_user: Callable[[str], Headers],
    auditor: Headers,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    alice = as_user("alice")
    answer = consent(client, alice, True, clock, 0)
    consent(client, as_user("bob"), True, clock, 1)
    consent(client, alice, False, clock, 2)
    (tmp_path / "answer.json").write_text(json.dumps(answer))
    (tmp_path / "receipt.jws").write_text(answer["jws"] + "\n")
    data_export = client.get("/v1/me/export", headers=alice)
    assert data_export.status_code == 200, data_export.text
    assert len(data_export.json()["receipts"]) == 2
    (tmp_path / "my-data.json").write_text(data_export.text)
    (tmp_path / "export.jws").write_text(export(client, auditor))
    (tmp_path / "jwks.json").write_text(client.get("/.well-known/jwks.json").text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGW_")}
    base = [
        str(CLI),
        "audit",
        "verify",
        "--export",
        str(tmp_path / "export.jws"),
        "--jwks",
        str(tmp_path / "jwks.json"),
    ]
    receipts = [
        arg
        for name in ("answer.json", "receipt.jws", "my-data.json")
        for arg in ("--receipt", str(tmp_path / name))
    ]
    done = subprocess.run(base + receipts, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stderr) == (0, ""), done.stdout + done.stderr
    assert json.loads(done.stdout)["checked"][-1] == "receipts"

    (tmp_path / "other.json").write_text('{"receipt": {}}')
    (tmp_path / "none.json").write_text('{"receipts": []}')
    bad = [str(CLI), "audit", "verify", "--receipt", str(tmp_path / "receipt.jws")]
    for command, status, said in (
        ([*base, "--receipt", str(tmp_path / "other.json")], 2, "--receipt"),
        ([*base, "--receipt", str(tmp_path / "none.json")], 2, "holds no receipt: nothing to check"),
        (bad, 2, "--receipt is only for checking an --export file"),
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == status, done.stdout + done.stderr
        assert said in done.stderr
