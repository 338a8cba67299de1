"""Audit API, the integrity half: hash-chain verification against raw-SQL tampering, signed
checkpoints, Merkle proofs checked with `storage.merkle.verify_*`, and an auditor's saved
checkpoint catching a truncated ledger or a restored old backup that the chain alone cannot."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock, Headers
from joserfc import jws
from joserfc.jwk import KeySet
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem, grow_ledger

from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings
from storage import ledger, merkle
from storage.connections import Connection

Client = TestClient[Litestar]
Json = dict[str, Any]
CLI = Path(sys.executable).with_name("consent-gateway")

jose_eddsa = pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")


@pytest.fixture
def auditor(as_key: Callable[..., Headers]) -> Headers:
    return as_key("audit:read")


def get(client: Client, path: str, auditor: Headers, **params: Any) -> Json:
    response = client.get(f"/v1/audit{path}", headers=auditor, params=params)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


def tamper(runtime: Runtime, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Raw SQL on the data database, after dropping the ledger's append-only triggers."""

    def unit(conn: Connection) -> None:
        conn.execute("DROP TRIGGER IF EXISTS ledger_no_update")
        conn.execute("DROP TRIGGER IF EXISTS ledger_no_delete")
        for sql, params in statements:
            conn.execute(sql, params)

    runtime.store.data.writer.run_sync(unit)


def consistent(client: Client, auditor: Headers, saved: Json, current: Json) -> bool:
    proof = get(
        client,
        "/ledger/proof/consistency",
        auditor,
        **{"from": saved["tree_size"], "to": current["tree_size"]},
    )
    assert proof["second_root"] == current["root_hash"]
    return merkle.verify_consistency(
        saved["tree_size"], current["tree_size"], bytes.fromhex(saved["root_hash"]),
        bytes.fromhex(current["root_hash"]), [bytes.fromhex(h) for h in proof["proof"]],
    )  # fmt: skip


# -- verification --------------------------------------------------------------------------------


def test_verify_reports_a_sound_ledger(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers
) -> None:
    assert get(client, "/ledger/verify", auditor) == {
        "ok": True, "events": 0, "head_hash": "00" * 32, "first_invalid_seq": None,
        "checkpoint_tree_size": None, "checkpoint_problem": None, "consents_unbacked": 0,
    }  # fmt: skip
    grow_ledger(client, as_user("alice"), 3)
    head = ledger.head(runtime.store.data.reader())[1].hex()
    assert get(client, "/ledger/verify", auditor) == {
        "ok": True, "events": 3, "head_hash": head, "first_invalid_seq": None,
        "checkpoint_tree_size": None, "checkpoint_problem": None, "consents_unbacked": 0,
    }  # fmt: skip


def _row(runtime: Runtime, seq: int) -> tuple[Any, ...]:
    row: tuple[Any, ...] = (
        runtime.store.data.reader().execute("SELECT * FROM ledger WHERE seq = ?", (seq,)).fetchone()
    )
    return row


def _flip(runtime: Runtime) -> list[tuple[str, tuple[object, ...]]]:
    body = bytearray(_row(runtime, 3)[8])
    body[len(body) // 2] ^= 0x01
    return [("UPDATE ledger SET body = ? WHERE seq = 3", (bytes(body),))]


def _swap(runtime: Runtime) -> list[tuple[str, tuple[object, ...]]]:
    two, three = _row(runtime, 2), _row(runtime, 3)
    update = (
        "UPDATE ledger SET at = ?, subject_id = ?, kind = ?, purpose = ?, notice_version = ?, actor = ?, "
        "source = ?, body = ?, prev_hash = ?, hash = ? WHERE seq = ?"
    )
    return [(update, (*three[1:], 2)), (update, (*two[1:], 3))]


def _insert(runtime: Runtime) -> list[tuple[str, tuple[object, ...]]]:
    """A forged event slipped in as seq 4, correctly chained to seq 3; the later ones moved up."""
    moved = [_row(runtime, seq) for seq in (5, 4)]
    statements: list[tuple[str, tuple[object, ...]]] = [("DELETE FROM ledger WHERE seq >= 4", ())]
    for row in moved:
        statements.append(("INSERT INTO ledger VALUES (?,?,?,?,?,?,?,?,?,?,?)", (row[0] + 1, *row[1:])))
    three = _row(runtime, 3)
    forged = ledger.canonical_bytes(
        4, three[1], three[2], "consent.given", "marketing", "v1", "user", "forged", None, three[10]
    )
    statements.append(
        (
            "INSERT INTO ledger VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                4,
                three[1],
                three[2],
                "consent.given",
                "marketing",
                "v1",
                "user",
                "forged",
                None,
                three[10],
                hashlib.sha256(forged).digest(),
            ),
        )
    )
    return statements


def _plant_seq_0(runtime: Runtime) -> list[tuple[str, tuple[object, ...]]]:
    """A copy of the first event below it: verification named seq 1, a sound event, and every
    listing starts after seq 0, so nothing led an auditor to the planted row."""
    return [("INSERT INTO ledger VALUES (?,?,?,?,?,?,?,?,?,?,?)", (0, *_row(runtime, 1)[1:]))]


@pytest.mark.parametrize(
    ("how", "first_invalid"),
    [
        (_flip, 3),
        (lambda _: [("DELETE FROM ledger WHERE seq = 3", ())], 3),
        (_swap, 2),
        (_insert, 5),
        (_plant_seq_0, 0),
    ],
    ids=["byte-flip", "delete", "swap", "insert", "planted-seq-0"],
)
def test_verify_names_the_first_tampered_event(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers,
    how: Callable[[Runtime], list[tuple[str, tuple[object, ...]]]], first_invalid: int,
) -> None:  # fmt: skip
    grow_ledger(client, as_user("alice"), 5)
    tamper(runtime, *how(runtime))
    result = get(client, "/ledger/verify", auditor)
    assert result["ok"] is False
    assert result["first_invalid_seq"] == first_invalid


# Values of another type than the one written, stored behind the dropped triggers. The first
# keeps the body's very bytes (so its hash still holds): only the type tells it apart.
RETYPED = {
    "body-as-text": "UPDATE ledger SET body = CAST(body AS TEXT) WHERE seq = 2",
    "prev-hash-as-hex": "UPDATE ledger SET prev_hash = hex(prev_hash) WHERE seq = 2",
    "hash-as-text": "UPDATE ledger SET hash = CAST(hash AS TEXT) WHERE seq = 2",
    "actor-not-utf8": "UPDATE ledger SET actor = CAST(x'ff75736572' AS TEXT) WHERE seq = 2",
    "source-as-number": "UPDATE ledger SET source = 7 WHERE seq = 2",
}


@pytest.mark.parametrize("sql", RETYPED.values(), ids=RETYPED.keys())
def test_a_retyped_column_is_reported_not_raised(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers, sql: str
) -> None:
    """Verification once answered 500 here (`bytes(str)`, or text SQLite could not decode), and so
    did the event listing; and a checkpoint was signed over the ledger all the same."""
    grow_ledger(client, as_user("alice"), 3)
    tamper(runtime, (sql, ()))
    verdict = get(client, "/ledger/verify", auditor)
    assert (verdict["ok"], verdict["first_invalid_seq"]) == (False, 2)
    assert [e["seq"] for e in get(client, "/consent-events", auditor)["events"]] == [1, 2, 3]
    assert_problem(client.get("/v1/audit/ledger/checkpoint", headers=auditor), 409, "checkpoint")
    assert_problem(client.get("/v1/audit/export", headers=auditor), 409, "checkpoint")


@pytest.mark.parametrize(
    "at",
    ["'garbage'", "7", "CAST(x'ff32' AS TEXT)", "substr(at, 1, 19)"],
    ids=["garbage", "number", "not-utf8", "no-offset"],
)
def test_a_tampered_event_time_makes_the_subject_view_unknown_not_500(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers, at: str
) -> None:
    """Regression (review of e46ab5c): the subject view parsed each event's time and answered 500."""
    alice = as_user("alice")
    grow_ledger(client, alice, 1)  # marketing granted, seq 1
    ref = client.get("/v1/me/preferences", headers=alice).json()["subject_ref"]
    tamper(runtime, (f"UPDATE ledger SET at = {at} WHERE seq = 1", ()))  # noqa: S608 - a test's own literals
    view = get(client, f"/subjects/{ref}", auditor)
    assert view["consents"]["marketing"]["granted"] is None


def loosened(runtime: Runtime, change: str) -> None:
    """The ledger rebuilt without its constraints (no INTEGER PRIMARY KEY, no NOT NULL), as
    whoever holds the database key can, then `SET change` on seq 2."""
    columns = "seq, at, subject_id, kind, purpose, notice_version, actor, source, body, prev_hash, hash"
    tamper(
        runtime,
        (f"CREATE TABLE loose ({columns})", ()),
        ("INSERT INTO loose SELECT * FROM ledger", ()),
        ("DROP TABLE ledger", ()),
        ("ALTER TABLE loose RENAME TO ledger", ()),
        (f"UPDATE ledger SET {change} WHERE seq = 2", ()),  # noqa: S608 - a test's own literals
    )


@pytest.mark.parametrize("seq", ["NULL", "'2x'", "2.5"])
def test_a_seq_that_is_not_an_integer_is_reported_not_raised(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers, seq: str
) -> None:
    """Regression (review of 2eed353): naming the lower of two seqs compared NULL or text with
    an int, and verification answered 500, in a table rebuilt without INTEGER PRIMARY KEY."""
    grow_ledger(client, as_user("alice"), 3)
    loosened(runtime, f"seq = {seq}")
    verdict = get(client, "/ledger/verify", auditor)
    # NULL sorts first, so seq 1 is where the chain breaks; text sorts last, so seq 2 is missing.
    assert (verdict["ok"], verdict["first_invalid_seq"]) == (False, 1 if seq == "NULL" else 2)
    # Nor does anything else fail on it (text '2x' sorted last was taken for the head: 500s).
    for path in ("/checkpoint", "/proof/inclusion?seq=1&size=1", "/proof/consistency?from=1&to=3"):
        assert client.get(f"/v1/audit/ledger{path}", headers=auditor).status_code in (200, 409), path
    assert client.get("/v1/audit/export", headers=auditor).status_code in (200, 409)
    grow_ledger(client, as_user("alice"), 1)  # a consent change is recorded still


@pytest.mark.parametrize("column", ["hash", "prev_hash"])
def test_a_null_hash_is_reported_not_raised(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers, data_dir: Path, column: str
) -> None:
    """The schema says NOT NULL, but a table rebuilt without it can hold a NULL hash: verification
    (API and CLI), the listing, proofs, checkpoint and export all failed on it (`leaf_hash(None)`,
    `None.hex()`) instead of reporting the break."""
    alice = as_user("alice")
    grow_ledger(client, alice, 3)
    loosened(runtime, f"{column} = NULL")
    verdict = get(client, "/ledger/verify", auditor)
    assert (verdict["ok"], verdict["first_invalid_seq"]) == (False, 2)
    assert [e["seq"] for e in get(client, "/consent-events", auditor)["events"]] == [1, 2, 3]
    assert (
        client.get(
            "/v1/audit/ledger/proof/inclusion", headers=auditor, params={"seq": 1, "size": 3}
        ).status_code
        == 200
    )
    assert_problem(client.get("/v1/audit/ledger/checkpoint", headers=auditor), 409, "checkpoint")
    assert_problem(client.get("/v1/audit/export", headers=auditor), 409, "checkpoint")
    runtime.store.data.checkpoint()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGW_")}
    done = subprocess.run(
        [str(CLI), "audit", "verify", "--data-dir", str(data_dir)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (1, "")
    assert json.loads(done.stdout)["first_invalid_seq"] == 2
    grow_ledger(client, alice, 1)  # appending after it still works
    assert [e["seq"] for e in get(client, "/consent-events", auditor)["events"]] == [1, 2, 3, 4]


def test_a_retyped_column_fails_the_cli_verify(
    client: Client, runtime: Runtime, as_user: Any, data_dir: Path
) -> None:
    """`consent-gateway audit verify` died with a traceback; it prints the verdict and exits 1."""
    grow_ledger(client, as_user("alice"), 3)
    tamper(runtime, (RETYPED["body-as-text"], ()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGW_")}
    done = subprocess.run(
        [str(CLI), "audit", "verify", "--data-dir", str(data_dir)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (1, "")
    verdict = json.loads(done.stdout)
    assert (verdict["ok"], verdict["first_invalid_seq"]) == (False, 2)


def test_checkpoints_refuse_only_events_they_have_not_signed(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers
) -> None:
    """A checkpoint is signed over events whose chain holds. An event under an earlier checkpoint
    changed since is verification's to report; it does not stop the ledger being checkpointed."""
    alice = as_user("alice")
    grow_ledger(client, alice, 3)
    assert get(client, "/ledger/checkpoint", auditor)["tree_size"] == 3
    tamper(runtime, (RETYPED["body-as-text"], ()))
    grow_ledger(client, alice, 2)
    assert get(client, "/ledger/checkpoint", auditor)["tree_size"] == 5
    assert get(client, "/ledger/verify", auditor)["first_invalid_seq"] == 2
    grow_ledger(client, alice, 2)
    tamper(runtime, ("UPDATE ledger SET prev_hash = hex(prev_hash) WHERE seq = 7", ()))
    refused = assert_problem(client.get("/v1/audit/ledger/checkpoint", headers=auditor), 409, "checkpoint")
    assert "seq 7" in refused["detail"]


def test_a_saved_checkpoint_catches_truncation_that_the_chain_does_not(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers
) -> None:
    """The chain alone passes a truncated ledger; the stored signed checkpoint does not, and the
    gateway refuses to sign the regrown ledger (once it signed a truncated-and-regrown history,
    which only an auditor's own saved copy could catch; see test_audit_ledger_anchor.py)."""
    alice = as_user("alice")
    grow_ledger(client, alice, 5)
    saved = get(client, "/ledger/checkpoint", auditor)
    assert saved["tree_size"] == 5

    tamper(runtime, ("DELETE FROM ledger WHERE seq > 3", ()))
    verdict = get(client, "/ledger/verify", auditor)
    assert (verdict["first_invalid_seq"], verdict["ok"]) == (None, False)  # a shorter chain is a chain
    assert verdict["checkpoint_problem"] == "ledger_shorter"
    assert_problem(
        client.get("/v1/audit/ledger/proof/consistency", headers=auditor, params={"from": 5, "to": 3}),
        400,
        "from",
    )
    grow_ledger(client, alice, 3)  # the ledger grows past the saved size again, with different events
    assert_problem(client.get("/v1/audit/ledger/checkpoint", headers=auditor), 409, "checkpoint")
    proof = client.get("/v1/audit/ledger/proof/consistency", headers=auditor, params={"from": 5, "to": 6})
    first_root = bytes.fromhex(proof.json()["first_root"])
    assert first_root != bytes.fromhex(saved["root_hash"])  # an auditor's saved copy disagrees too


def test_a_saved_checkpoint_catches_a_restored_old_backup(
    settings: Settings, clock: FakeClock, data_dir: Path, tmp_path: Path
) -> None:
    backup = tmp_path / "backup"

    @contextmanager
    def running() -> Iterator[tuple[Client, Runtime, Headers, Headers]]:
        with TestClient(create_app(settings, clock)) as client:
            runtime: Runtime = client.app.state.runtime
            _, secret = runtime.api_keys.create_sync("auditor", ("audit:read",))
            user = {"Authorization": f"Bearer {runtime.user_tokens.mint('alice', runtime.clock())}"}
            yield client, runtime, {"Authorization": f"Bearer {secret}"}, user

    with running() as (client, runtime, auditor, user):
        grow_ledger(client, user, 3)
        runtime.store.data.checkpoint()
        shutil.copytree(data_dir, backup)
        grow_ledger(client, user, 3)
        saved = get(client, "/ledger/checkpoint", auditor)
        assert saved["tree_size"] == 6
    shutil.rmtree(data_dir)
    shutil.copytree(backup, data_dir)
    with running() as (client, _, auditor, user):
        assert get(client, "/ledger/verify", auditor)["events"] == 3
        grow_ledger(client, user, 4)
        current = get(client, "/ledger/checkpoint", auditor)
        assert current["tree_size"] == 7
        assert get(client, "/ledger/verify", auditor)["ok"] is True
        assert not consistent(client, auditor, saved, current)


# -- checkpoints and proofs ------------------------------------------------------------------------


@jose_eddsa
def test_checkpoints_are_signed_and_made_only_when_the_ledger_grew(
    client: Client, as_user: Any, auditor: Headers, clock: FakeClock
) -> None:
    alice = as_user("alice")
    grow_ledger(client, alice, 3)
    first = get(client, "/ledger/checkpoint", auditor)
    clock.advance(minutes=10)
    assert get(client, "/ledger/checkpoint", auditor) == first
    grow_ledger(client, alice, 1)
    second = get(client, "/ledger/checkpoint", auditor)
    assert (second["tree_size"], second["at"]) == (4, "2026-11-23T10:10:00Z")
    assert consistent(client, auditor, first, second)

    keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").json())
    for checkpoint in (first, second):
        claims = json.loads(jws.deserialize_compact(checkpoint["jws"], keys, algorithms=["EdDSA"]).payload)
        assert claims == {
            "type": "consent-gateway/ledger-checkpoint", "tree_size": checkpoint["tree_size"],
            "root_hash": checkpoint["root_hash"], "at": checkpoint["at"],
        }  # fmt: skip


def test_merkle_proofs_from_the_api_verify(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers
) -> None:
    grow_ledger(client, as_user("alice"), 7)
    checkpoint = get(client, "/ledger/checkpoint", auditor)
    events = list(ledger.events(runtime.store.data.reader()))
    for size in (1, 2, 5, 7):
        for seq in range(1, size + 1):
            answer = get(client, "/ledger/proof/inclusion", auditor, seq=seq, size=size)
            assert (answer["seq"], answer["leaf_index"], answer["tree_size"]) == (seq, seq - 1, size)
            leaf = merkle.leaf_hash(events[seq - 1].hash)  # leaf data = the event's hash
            assert answer["leaf_hash"] == leaf.hex()
            path = [bytes.fromhex(h) for h in answer["audit_path"]]
            assert merkle.verify_inclusion(leaf, seq - 1, size, path, bytes.fromhex(answer["root_hash"]))
            if size == 7:
                assert answer["root_hash"] == checkpoint["root_hash"]
    for first in range(1, 8):
        for second in range(first, 8):
            proof = get(client, "/ledger/proof/consistency", auditor, **{"from": first, "to": second})
            assert merkle.verify_consistency(
                first, second, bytes.fromhex(proof["first_root"]), bytes.fromhex(proof["second_root"]),
                [bytes.fromhex(h) for h in proof["proof"]],
            )  # fmt: skip


BAD_RANGES: list[tuple[str, Json, str]] = [
    ("inclusion", {"seq": 4, "size": 3}, "seq"),
    ("inclusion", {"seq": 0, "size": 3}, "seq"),
    ("inclusion", {"seq": 1, "size": 6}, "size"),
    ("inclusion", {"size": 3}, "seq"),
    ("consistency", {"from": 0, "to": 3}, "from"),
    ("consistency", {"from": 3, "to": 2}, "from"),
    ("consistency", {"from": 1, "to": 6}, "to"),
    ("consistency", {"from": "x", "to": 2}, "from"),
]


def test_bad_proof_ranges_are_named(client: Client, as_user: Any, auditor: Headers) -> None:
    grow_ledger(client, as_user("alice"), 5)
    for path, params, field in BAD_RANGES:
        response = client.get(f"/v1/audit/ledger/proof/{path}", headers=auditor, params=params)
        assert_problem(response, 400, field)


NOT_DIGITS = ["1e0", "1_0", "+1", " 1", "1.0", "0x1", "\u0661", "01", "1" * 10]


@pytest.mark.parametrize("value", NOT_DIGITS)
def test_tree_positions_are_plain_decimal_digits(
    client: Client, as_user: Any, auditor: Headers, value: str
) -> None:
    """`1e0` and `1_0` were once parsed as integers and answered, while the access log kept them
    as not valid values, and so were `01` and `003` later: every position is now refused unless
    it is plain digits as the log keeps them (no leading zero, under a billion), naming it."""
    grow_ledger(client, as_user("alice"), 1)
    cases = [
        ("inclusion", {"seq": value, "size": "1"}, "seq"),
        ("inclusion", {"seq": "1", "size": value}, "size"),
        ("consistency", {"from": value, "to": "1"}, "from"),
        ("consistency", {"from": "1", "to": value}, "to"),
    ]
    for path, params, field in cases:
        response = client.get(f"/v1/audit/ledger/proof/{path}", headers=auditor, params=params)
        assert_problem(response, 400, field)
    assert get(client, "/ledger/proof/inclusion", auditor, seq="1", size="1")["seq"] == 1
    logged = client.get("/v1/audit/access-log", headers=auditor).json()["entries"]
    assert {"seq": "1", "size": "1"} in [e["filters"] for e in logged]
