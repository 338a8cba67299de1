"""An export checked against a checkpoint the auditor saved earlier (`audit verify --since`).

The ledger is held to its latest signed checkpoint, which lives in the same database: whoever
holds the database key can delete the checkpoint rows, rewrite the history and have the gateway
sign checkpoints over the forgery. Only a checkpoint kept outside catches that, and nothing
checked one: the auditor had to compare roots by hand. Now an export is checked to extend a saved
checkpoint, worked out from its own events and the tree before them, offline.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import tamper

from gateway.runtime import Runtime
from gateway.services.export_check import verify_export

Client = TestClient[Litestar]
CLI = Path(sys.executable).with_name("consent-gateway")


@pytest.fixture
def auditor(as_key: Callable[..., Headers]) -> Headers:
    return as_key("audit:read")


def grow(client: Client, headers: Headers, n: int, clock: FakeClock) -> None:
    """n consent events, one hour apart."""
    for i in range(n):
        answer = client.put(
            "/v1/me/consents/marketing", headers=headers, json={"granted": i % 2 == 0, "notice_version": "v1"}
        )
        assert answer.status_code == 200, answer.text
        clock.advance(hours=1)


def export(client: Client, auditor: Headers, **window: str) -> str:
    answer = client.get("/v1/audit/export", headers=auditor, params=window)
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["jws"]
    return token


def checkpoint_of(token: str) -> str:
    """The checkpoint an export embeds, as `--since` takes it from an earlier export."""
    segment = token.split(".")[1]
    bundle = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    jws: str = bundle["checkpoint"]["jws"]
    return jws


def test_an_export_extends_what_was_saved_whole_or_from_a_window(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], auditor: Headers, clock: FakeClock
) -> None:
    alice = as_user("alice")
    grow(client, alice, 3, clock)  # 10:00 .. 12:00, seqs 1-3
    saved = checkpoint_of(export(client, auditor))  # the auditor keeps this one: 3 events
    grow(client, alice, 2, clock)  # 13:00, 14:00, seqs 4-5
    keys = runtime.signer.public_keys()
    for later in (export(client, auditor), export(client, auditor, **{"from": "2026-11-23T13:00:00Z"})):
        report = verify_export(later, keys, saved)
        assert (report.ok, report.problem) == (True, None)
        assert "extends the saved checkpoint" in report.checked


def test_a_history_rewritten_under_new_checkpoints_does_not_extend_what_was_saved(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], auditor: Headers, clock: FakeClock
) -> None:
    grow(client, as_user("alice"), 3, clock)
    saved = checkpoint_of(export(client, auditor))
    # Whoever holds the database key: the checkpoints and a withdrawal gone, the history appended
    # to again (re-chained by the gateway itself) and signed anew.
    tamper(
        runtime,
        "DROP TRIGGER ledger_no_delete",
        "DROP TRIGGER checkpoints_no_delete",
        "DELETE FROM checkpoints",
        "DELETE FROM ledger WHERE seq >= 2",
    )
    grow(client, as_user("bob"), 3, clock)
    later = export(client, auditor)
    keys = runtime.signer.public_keys()
    assert verify_export(later, keys).ok  # alone, the forgery holds together
    report = verify_export(later, keys, saved)
    assert report.ok is False
    assert report.problem is not None
    assert "the history was rewritten since it was saved" in report.problem


def test_a_saved_checkpoint_outside_the_window_cannot_be_told_and_a_larger_one_is_a_loss(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], auditor: Headers, clock: FakeClock
) -> None:
    alice = as_user("alice")
    grow(client, alice, 1, clock)  # 10:00, seq 1
    first = client.get("/v1/audit/ledger/checkpoint", headers=auditor).json()["jws"]  # 1 event
    grow(client, alice, 4, clock)  # 11:00 .. 14:00, seqs 2-5
    keys = runtime.signer.public_keys()
    window = export(client, auditor, **{"from": "2026-11-23T13:00:00Z"})  # seqs 4-5
    report = verify_export(window, keys, first)
    assert (report.ok, report.problem) == (
        False,
        "cannot tell: the saved checkpoint's tree of 1 events does not end inside this export "
        "(seq 4 to 5); export a window holding seq 1",
    )
    larger = checkpoint_of(export(client, auditor))  # 5 events
    tamper(runtime, "DROP TRIGGER ledger_no_delete", "DROP TRIGGER checkpoints_no_delete",
           "DELETE FROM checkpoints", "DELETE FROM ledger WHERE seq >= 4")  # fmt: skip
    shorter = export(client, auditor)
    problem = verify_export(shorter, keys, larger).problem
    assert problem is not None
    assert "the ledger has lost events since" in problem


def test_an_export_older_than_the_saved_checkpoint_is_not_called_a_loss(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], auditor: Headers, clock: FakeClock
) -> None:
    """The files given the wrong way round (`--export OLD --since NEWER`) read as a ledger that
    had lost events: a false alarm of tampering, to an auditor, about an intact ledger."""
    alice = as_user("alice")
    grow(client, alice, 2, clock)
    older = export(client, auditor)  # 2 events
    grow(client, alice, 1, clock)
    newer = checkpoint_of(export(client, auditor))  # 3 events, signed an hour later
    report = verify_export(older, runtime.signer.public_keys(), newer)
    assert report.ok is False
    assert report.problem is not None
    assert report.problem.startswith("cannot tell: the saved checkpoint (signed "), report.problem
    assert report.problem.endswith("; pass an export made after it")
    assert "lost events" not in report.problem
    assert verify_export(
        export(client, auditor), runtime.signer.public_keys(), newer
    ).ok  # the right way round


def test_cli_audit_verify_since_an_earlier_export_or_a_saved_checkpoint(
    client: Client,
    runtime: Runtime,
    as_user: Callable[[str], Headers],
    auditor: Headers,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    alice = as_user("alice")
    grow(client, alice, 2, clock)
    (tmp_path / "old.jws").write_text(export(client, auditor))
    (tmp_path / "checkpoint.json").write_text(client.get("/v1/audit/ledger/checkpoint", headers=auditor).text)
    grow(client, alice, 2, clock)
    (tmp_path / "new.jws").write_text(export(client, auditor))
    (tmp_path / "jwks.json").write_text(client.get("/.well-known/jwks.json").text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGW_")}
    for saved in ("old.jws", "checkpoint.json"):
        command = [str(CLI), "audit", "verify", "--export", str(tmp_path / "new.jws"),
                   "--jwks", str(tmp_path / "jwks.json"), "--since", str(tmp_path / saved)]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert (done.returncode, done.stderr) == (0, ""), done.stdout + done.stderr
        assert "extends the saved checkpoint" in json.loads(done.stdout)["checked"]


def test_cli_audit_verify_names_the_flag_of_each_file_it_cannot_use(
    client: Client, as_user: Callable[[str], Headers], auditor: Headers, clock: FakeClock, tmp_path: Path
) -> None:
    """A missing `--jwks` or `--since` file said "cannot read F" naming no flag, a binary
    `--receipt` Python's decoding error, and a `--since` file of plain text "list index out of
    range"."""
    grow(client, as_user("alice"), 1, clock)
    (tmp_path / "new.jws").write_text(export(client, auditor))
    (tmp_path / "jwks.json").write_text(client.get("/.well-known/jwks.json").text)
    (tmp_path / "bin.dat").write_bytes(b"\xff\xfe\x00binary")
    (tmp_path / "garbage.txt").write_text("garbage\n")
    missing = str(tmp_path / "missing.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGW_")}
    base = [str(CLI), "audit", "verify", "--export", str(tmp_path / "new.jws")]
    jwks = ["--jwks", str(tmp_path / "jwks.json")]
    cases = [
        (["--jwks", missing], f"--jwks {missing}: cannot read it: No such file or directory"),
        ([*jwks, "--since", missing], f"--since {missing}: cannot read it: No such file or directory"),
        (
            [*jwks, "--receipt", str(tmp_path / "bin.dat")],
            f"--receipt {tmp_path / 'bin.dat'}: not a text file",
        ),
        (
            [*jwks, "--since", str(tmp_path / "garbage.txt")],
            f"--since {tmp_path / 'garbage.txt'}: not an export or a checkpoint this gateway signed",
        ),
    ]
    for flags, said in cases:
        done = subprocess.run(
            [*base, *flags], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert (done.returncode, done.stdout) == (2, ""), done.stderr
        (line,) = done.stderr.splitlines()
        assert line.startswith(f"consent-gateway: {said}"), line


def test_an_export_of_a_window_without_events_checks_no_chain_and_says_so(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], auditor: Headers, clock: FakeClock
) -> None:
    """A window holding only a deleted event verified with "hash chain" among the things checked,
    over no events at all: nothing of the window is proved (README), and the report now lists
    only what it did check."""
    grow(client, as_user("alice"), 3, clock)  # 10:00, 11:00, 12:00
    empty = export(client, auditor, **{"from": "2026-11-23T10:30:00Z", "to": "2026-11-23T10:45:00Z"})
    report = verify_export(empty, runtime.signer.public_keys())
    assert (report.ok, report.events) == (True, 0)
    assert report.checked == ["signature", "checkpoint signature"]


def test_a_token_with_base64url_padding_is_refused(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], auditor: Headers, clock: FakeClock
) -> None:
    """RFC 7515 writes base64url unpadded; PyJWT took "==" after the signature, so one signature
    verified as several different tokens."""
    grow(client, as_user("alice"), 1, clock)
    token = export(client, auditor)
    keys = runtime.signer.public_keys()
    assert verify_export(token, keys).ok
    padded = verify_export(token + "==", keys)
    assert padded.ok is False
    assert padded.problem is not None
    assert "padding" in padded.problem
