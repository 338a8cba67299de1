"""The consent ledger's hash chain against someone with the database key and raw SQL.

Triggers refuse UPDATE and DELETE; whoever drops them can rewrite rows, and `verify()` (and
`consent-gateway audit verify`) must then name the first seq that no longer holds.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import msgspec
import pytest
import sqlcipher3

from storage import ledger
from storage.connections import Connection, connect
from storage.directory import SubjectKey
from storage.keys import KeyStore
from storage.store import DATA_FILE, Store

CLI = str(Path(sys.executable).with_name("consent-gateway"))
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
EVENTS = 8
COLUMNS = "at, subject_id, kind, purpose, notice_version, actor, source, body, prev_hash, hash"


def _append(conn: Connection, *, n: int, subject: SubjectKey) -> ledger.LedgerEvent:
    return ledger.append(
        conn,
        at=T0 + timedelta(minutes=n),
        subject=subject,
        kind="consent.given" if n % 3 else "consent.withdrawn",
        actor="user",
        source="preference_center",
        purpose="marketing",
        notice_version=f"v{n}",
        content=f'{{"n":{n}}}'.encode(),
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data dir with a store holding EVENTS ledger events over two subjects, then closed."""
    root = tmp_path / "data"
    store = Store(root, KeyStore.create(root / "keys.json"))
    try:
        subjects = [store.directory.ensure("sub_" + c * 52, T0) for c in "ab"]
        for n in range(EVENTS):
            store.data.writer.run_sync(partial(_append, n=n, subject=subjects[n % 2]))
        assert ledger.verify(store.data.reader()).ok
    finally:
        store.close()
    return root


@pytest.fixture
def raw(data_dir: Path) -> Iterator[Connection]:
    conn = connect(data_dir / DATA_FILE, KeyStore.load(data_dir / "keys.json").database_key)
    yield conn
    conn.close()


def _drop_triggers(conn: Connection) -> None:
    conn.execute("DROP TRIGGER ledger_no_update")
    conn.execute("DROP TRIGGER ledger_no_delete")


def _row(conn: Connection, seq: int) -> tuple[object, ...]:
    row: tuple[object, ...] = conn.execute(f"SELECT {COLUMNS} FROM ledger WHERE seq = ?", (seq,)).fetchone()  # noqa: S608
    return row


def _flip(blob: object, index: int = 5) -> bytes:
    data = bytearray(bytes(blob))  # type: ignore[call-overload]
    data[index] ^= 0x01
    return bytes(data)


def test_a_good_chain_verifies(raw: Connection) -> None:
    result = ledger.verify(raw)
    last = raw.execute("SELECT hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()[0]
    assert result == ledger.VerifyResult(True, EVENTS, bytes(last).hex(), None)


def test_every_hash_is_sha256_of_the_canonical_bytes_and_links_to_the_previous(raw: Connection) -> None:
    prev = ledger.GENESIS
    events = list(ledger.events(raw))
    assert [event.seq for event in events] == list(range(1, EVENTS + 1)), "the loop below checks every event"
    for event in events:
        assert event.prev_hash == prev
        assert hashlib.sha256(event.canonical()).digest() == event.hash
        assert msgspec.json.decode(event.canonical())["body"] is not None  # the chain covers the ciphertext
        prev = event.hash


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger SET kind = 'consent.given' WHERE seq = 3",
        "UPDATE ledger SET body = NULL",
        "DELETE FROM ledger WHERE seq = 3",
        "DELETE FROM ledger",
    ],
)
def test_the_triggers_refuse_update_and_delete(raw: Connection, statement: str) -> None:
    before = [tuple(r) for r in raw.execute("SELECT * FROM ledger ORDER BY seq")]
    with pytest.raises(sqlcipher3.DatabaseError, match="append-only"):
        raw.execute(statement)
    assert [tuple(r) for r in raw.execute("SELECT * FROM ledger ORDER BY seq")] == before
    assert ledger.verify(raw).ok


def _update(conn: Connection, seq: int, column: str, value: object) -> None:
    conn.execute(f"UPDATE ledger SET {column} = ? WHERE seq = ?", (value, seq))  # noqa: S608


def _swap(conn: Connection, a: int, b: int) -> None:
    row_a, row_b = _row(conn, a), _row(conn, b)
    sets = ", ".join(f"{c.strip()} = ?" for c in COLUMNS.split(","))
    conn.execute(f"UPDATE ledger SET {sets} WHERE seq = ?", (*row_b, a))  # noqa: S608
    conn.execute(f"UPDATE ledger SET {sets} WHERE seq = ?", (*row_a, b))  # noqa: S608


def _rehash(conn: Connection, seq: int, **changes: object) -> None:
    """The careful forger: change a row and recompute its own hash (but not the rows after it)."""
    event = next(ledger.events_between(conn, seq, seq))
    forged = msgspec.structs.replace(event, **changes)
    assert forged != event
    _update(conn, seq, "kind", forged.kind)
    _update(conn, seq, "hash", hashlib.sha256(forged.canonical()).digest())


def _insert(conn: Connection, seq: int, prev: bytes | None = None, digest: bytes | None = None) -> None:
    _, head_hash = ledger.head(conn)
    prev = head_hash if prev is None else prev
    canonical = ledger.canonical_bytes(
        seq, T0.isoformat(), "s_forged", "consent.given", "marketing", "v9", "user", "forged", None, prev
    )
    conn.execute(
        f"INSERT INTO ledger (seq, {COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
        (
            seq,
            T0.isoformat(),
            "s_forged",
            "consent.given",
            "marketing",
            "v9",
            "user",
            "forged",
            None,
            prev,
            digest if digest is not None else hashlib.sha256(canonical).digest(),
        ),
    )


TAMPERING: list[tuple[str, Callable[[Connection], object], int]] = [
    ("flip a byte of a body", lambda c: _update(c, 3, "body", _flip(_row(c, 3)[7])), 3),
    ("flip a byte of a stored hash", lambda c: _update(c, 5, "hash", _flip(_row(c, 5)[9])), 5),
    ("flip a byte of a prev_hash", lambda c: _update(c, 4, "prev_hash", _flip(_row(c, 4)[8])), 4),
    ("change the time", lambda c: _update(c, 2, "at", (T0 - timedelta(days=1)).isoformat()), 2),
    ("turn a withdrawal into a grant", lambda c: _update(c, 1, "kind", "consent.given"), 1),
    ("change the notice version", lambda c: _update(c, 6, "notice_version", "v999"), 6),
    ("move an event to another subject", lambda c: _update(c, 7, "subject_id", "s_someone_else"), 7),
    ("null a body", lambda c: _update(c, 2, "body", None), 2),
    ("change the last event", lambda c: _update(c, EVENTS, "actor", "admin"), EVENTS),
    ("delete a row", lambda c: c.execute("DELETE FROM ledger WHERE seq = 3"), 3),
    ("delete the first row", lambda c: c.execute("DELETE FROM ledger WHERE seq = 1"), 1),
    ("swap two rows' contents", lambda c: _swap(c, 2, 5), 2),
    ("swap adjacent rows' contents", lambda c: _swap(c, 6, 7), 6),
    ("renumber a row", lambda c: c.execute("UPDATE ledger SET seq = 100 WHERE seq = 4"), 4),
    ("rewrite a row and its own hash", lambda c: _rehash(c, 4, kind="consent.given"), 5),
    ("insert a forged row with a bad hash", lambda c: _insert(c, EVENTS + 1, digest=bytes(32)), EVENTS + 1),
    (
        "insert a forged row with a wrong prev_hash",
        lambda c: _insert(c, EVENTS + 1, prev=bytes(32)),
        EVENTS + 1,
    ),
    ("insert a forged row after a gap", lambda c: _insert(c, EVENTS + 2), EVENTS + 1),
    # The planted row itself, not seq 1 after it (sound, and no listing shows a seq 0).
    ("insert a forged row before the first", lambda c: _insert(c, 0, prev=ledger.GENESIS), 0),
]


@pytest.mark.parametrize(("label", "tamper", "first_invalid"), TAMPERING, ids=[t[0] for t in TAMPERING])
def test_tampering_is_found_at_the_right_seq(
    raw: Connection, label: str, tamper: Callable[[Connection], object], first_invalid: int
) -> None:
    _drop_triggers(raw)
    tamper(raw)
    result = ledger.verify(raw)
    assert not result.ok, label
    assert result.first_invalid_seq == first_invalid, label
    # The ledger's own count, wherever the chain breaks: not how far it held.
    assert result.events == raw.execute("SELECT count(*) FROM ledger").fetchone()[0], label


def test_tail_truncation_keeps_a_valid_chain_but_moves_the_head(raw: Connection) -> None:
    """Known limit of a bare hash chain: dropping the newest events leaves a valid prefix. The head
    hash changes, which is what the signed Merkle checkpoint is compared against."""
    good = ledger.verify(raw)
    _drop_triggers(raw)
    raw.execute("DELETE FROM ledger WHERE seq = ?", (EVENTS,))
    truncated = ledger.verify(raw)
    assert truncated.ok
    assert truncated.events == EVENTS - 1
    assert truncated.head_hash != good.head_hash


def _cli_verify(data_dir: Path) -> tuple[int, dict[str, object]]:
    done = subprocess.run(
        [CLI, "audit", "verify", "--data-dir", str(data_dir)],
        env={},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip(), done.stderr
    result: dict[str, object] = msgspec.json.decode(done.stdout.strip().splitlines()[-1])
    return done.returncode, result


def test_cli_audit_verify_exits_0_on_a_good_chain_and_1_on_a_broken_one(data_dir: Path) -> None:
    code, result = _cli_verify(data_dir)
    assert code == 0
    assert result["ok"] is True
    assert result["events"] == EVENTS
    assert result["first_invalid_seq"] is None

    conn = connect(data_dir / DATA_FILE, KeyStore.load(data_dir / "keys.json").database_key)
    try:
        _drop_triggers(conn)
        _update(conn, 5, "body", _flip(_row(conn, 5)[7]))
    finally:
        conn.close()

    code, result = _cli_verify(data_dir)
    assert code == 1
    assert result["ok"] is False
    assert result["first_invalid_seq"] == 5
