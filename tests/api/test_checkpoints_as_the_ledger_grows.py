"""`serve` signs a checkpoint every `CGW_CHECKPOINT_SECONDS` when the ledger has grown.

Signed only when an auditor asked, the checkpoint left every event since their last visit held
by the hash chain alone: a withdrawal deleted from that tail (its consent row put back) verified,
and the next checkpoint signed the forged history. Here the interval is one second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import FIXED_NOW, FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import grow_ledger, tamper

from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings
from storage.repositories import audit

Client = TestClient[Litestar]


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, worker_enabled=False, checkpoint_seconds=1)


def _signed(runtime: Runtime) -> list[int]:
    conn = runtime.store.data.reader()
    return [int(row[0]) for row in conn.execute("SELECT tree_size FROM checkpoints ORDER BY tree_size")]


def _latest(runtime: Runtime) -> int:
    """The size the latest checkpoint signed (0: none): a tick may fall between two of a test's
    events and sign the first, so the tests wait for the size, not for the list of sizes."""
    return max(_signed(runtime), default=0)


def _waited(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_the_events_are_signed_within_the_interval_and_nothing_more_while_none_come(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers]
) -> None:
    time.sleep(1.5)
    assert _signed(runtime) == []  # an empty ledger: nothing to sign
    grow_ledger(client, as_user("alice"), 3)
    assert _waited(lambda: _latest(runtime) == 3), _signed(runtime)
    latest = audit.latest_checkpoint(runtime.store.data.reader())
    assert latest is not None
    assert latest.sound
    signed = _signed(runtime)
    time.sleep(2.5)
    assert _signed(runtime) == signed  # the ledger has not grown
    grow_ledger(client, as_user("bob"), 1)
    assert _waited(lambda: _latest(runtime) == 4), _signed(runtime)


@pytest.mark.parametrize(
    "statements",
    [
        # An event planted after the signed ones, its hashes copied: the chain does not hold.
        ("INSERT INTO ledger SELECT 3, at, subject_id, kind, purpose, notice_version, actor, source, body, "
         "prev_hash, hash FROM ledger WHERE seq = 2",),
        # A signed event deleted: fewer events than the checkpoint signed.
        ("DROP TRIGGER ledger_no_delete", "DELETE FROM ledger WHERE seq = 2"),
    ],
    ids=["planted", "deleted"],
)  # fmt: skip
def test_a_history_that_does_not_hold_is_not_signed_and_logged_as_an_error(
    client: Client,
    runtime: Runtime,
    as_user: Callable[[str], Headers],
    caplog: pytest.LogCaptureFixture,
    statements: tuple[str, ...],
) -> None:
    grow_ledger(client, as_user("alice"), 2)
    assert _waited(lambda: _latest(runtime) == 2)
    signed = _signed(runtime)
    tamper(runtime, *statements)
    assert _waited(lambda: "ledger checkpoint refused" in caplog.messages)
    assert _signed(runtime) == signed


def test_zero_turns_it_off(data_dir: Path) -> None:
    app = create_app(
        Settings(data_dir=data_dir, worker_enabled=False, checkpoint_seconds=0), FakeClock(FIXED_NOW)
    )
    with TestClient(app) as client:
        runtime: Runtime = app.state.runtime
        token = runtime.user_tokens.mint("alice", runtime.clock(), ttl=timedelta(hours=1))
        grow_ledger(client, {"Authorization": f"Bearer {token}"}, 2)
        time.sleep(1.5)
        assert _signed(runtime) == []
