"""`DELETE /v1/me` cut short by a crash after the key was destroyed.

Erasure destroys the data key in the subject directory first and durably, then deletes the
subject's rows in the data file and records `subject.erased` in the ledger: another file, another
transaction. These tests run the first half through the real code (`SubjectDirectory.erase`, what
`RightsService.erase` calls) and stop there, the state a `kill -9` between the two leaves; then a
new app on the same data directory stands in for the restart. A graceful close loses nothing a
kill would keep: both halves answer only after their fsync.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings
from storage import ledger
from storage.connections import connect
from storage.migrations import DIRECTORY_MIGRATIONS, migrate
from storage.store import DIRECTORY_FILE

Client = TestClient[Litestar]

ALICE = "alice.crash+test@example.com"
CAROL = "carol.keeps+test@example.com"
SUBJECT_TABLES = ("preferences", "consents", "devices", "locations", "mutes")
PENDING = (  # SubjectDirectory.pending_erasures
    "SELECT subject_ref, pending_subject_id, erased_at, pending_actor FROM tombstones "
    "WHERE pending_subject_id IS NOT NULL"
)


@contextmanager
def gateway(settings: Settings, clock: FakeClock) -> Iterator[tuple[Client, Runtime]]:
    """One run of the gateway on the data directory; leaving the block ends it."""
    app = create_app(settings, clock)
    with TestClient(app) as client:
        yield client, app.state.runtime


def user(runtime: Runtime, user_id: str) -> Headers:
    return {"Authorization": f"Bearer {runtime.user_tokens.mint(user_id, runtime.clock())}"}


def build_up(client: Client, runtime: Runtime, user_id: str) -> str:
    """Consents, preferences, a device and a location for `user_id`; returns their subject id."""
    headers = user(runtime, user_id)
    for purpose in ("marketing", "location"):
        answer = client.put(
            f"/v1/me/consents/{purpose}", headers=headers, json={"granted": True, "notice_version": "n1"}
        )
        assert answer.status_code == 200, answer.text
    steps = [
        client.patch("/v1/me/preferences", headers=headers, json={"locale": "zh-CN"}),
        client.post("/v1/me/devices", headers=headers, json={"platform": "fcm", "token": f"fcm-{user_id}"}),
        client.put("/v1/me/location", headers=headers, json={"lat": 31.230416, "lon": 121.473701}),
    ]
    assert [s.status_code for s in steps] == [200, 201, 200], [s.text for s in steps]
    key = runtime.store.directory.resolve(ref_of(runtime, user_id))
    assert key is not None
    return key.subject_id


def ref_of(runtime: Runtime, user_id: str) -> str:
    return runtime.store.pseudonyms.subject_ref(user_id)


def rows_of(runtime: Runtime, subject_id: str) -> dict[str, int]:
    conn = runtime.store.data.reader()
    counts = {}
    for table in SUBJECT_TABLES:
        sql = f"SELECT count(*) FROM {table} WHERE subject_id = ?"  # noqa: S608
        counts[table] = int(conn.execute(sql, (subject_id,)).fetchone()[0])
    return counts


def erasure_events(runtime: Runtime, subject_id: str) -> list[ledger.LedgerEvent]:
    reader = runtime.store.data.reader()
    return [e for e in ledger.events_of_subject(reader, subject_id) if e.kind == "subject.erased"]


def all_events(runtime: Runtime) -> list[ledger.LedgerEvent]:
    return list(ledger.events(runtime.store.data.reader()))


def tombstone(runtime: Runtime, data_dir: Path, ref: str) -> tuple[Any, ...] | None:
    """The tombstone's row, every column of it, read from the file as another process would."""
    conn = connect(data_dir / DIRECTORY_FILE, runtime.keys.directory_key)
    try:
        row: tuple[Any, ...] | None = conn.execute(
            "SELECT * FROM tombstones WHERE subject_ref = ?", (ref,)
        ).fetchone()
        return row
    finally:
        conn.close()


def keep_pending(runtime: Runtime, data_dir: Path, ref: str, subject_id: str) -> None:
    """Put the tombstone back as it was between the data transaction and its clearing: still
    holding the subject id it was about to forget."""
    conn = connect(data_dir / DIRECTORY_FILE, runtime.keys.directory_key)
    try:
        conn.execute(
            "UPDATE tombstones SET pending_subject_id = ?, pending_actor = 'user' WHERE subject_ref = ?",
            (subject_id, ref),
        )
    finally:
        conn.close()


def assert_finished(runtime: Runtime, data_dir: Path, user_id: str, subject_id: str) -> None:
    """Everything `DELETE /v1/me` promises, and no link left from the ref to the old id."""
    ref = ref_of(runtime, user_id)
    assert len(erasure_events(runtime, subject_id)) == 1
    assert ledger.verify(runtime.store.data.reader()).ok
    assert rows_of(runtime, subject_id) == dict.fromkeys(SUBJECT_TABLES, 0)
    assert runtime.store.directory.status(ref) == "erased"
    row = tombstone(runtime, data_dir, ref)
    assert row is not None
    assert subject_id not in row
    assert runtime.store.directory.pending_erasures() == []


def push_to(client: Client, runtime: Runtime, user_id: str) -> dict[str, Any]:
    _, secret = runtime.api_keys.create_sync("crash test", ("pushes:write",))
    answer = client.post(
        "/v1/pushes",
        headers={"Authorization": f"Bearer {secret}"},
        json={
            "idempotency_key": secrets.token_hex(8), "user_id": user_id, "topic": "transactional",
            "title": "Your receipt", "body": "Payment received",
        },
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_a_restart_finishes_an_erasure_the_crash_cut_short(
    settings: Settings, clock: FakeClock, data_dir: Path
) -> None:
    with gateway(settings, clock) as (client, runtime):
        alice = build_up(client, runtime, ALICE)
        carol = build_up(client, runtime, CAROL)
        # The directory half of DELETE /v1/me, then the crash.
        assert runtime.store.directory.erase(ref_of(runtime, ALICE), clock()) == alice
        assert runtime.store.directory.resolve(ref_of(runtime, ALICE)) is None  # the key is gone
        assert erasure_events(runtime, alice) == []
        assert rows_of(runtime, alice)["consents"] == 2
        carol_rows = rows_of(runtime, carol)

    with gateway(settings, clock) as (client, runtime):
        assert_finished(runtime, data_dir, ALICE, alice)
        [event] = erasure_events(runtime, alice)
        assert (event.at, event.actor, event.body) == (clock().isoformat(), "user", None)
        assert rows_of(runtime, carol) == carol_rows
        settled, settled_rows = all_events(runtime), rows_of(runtime, alice)

        retried = client.delete("/v1/me", headers=user(runtime, ALICE))

        assert retried.status_code == 204, retried.text
        assert all_events(runtime) == settled
        assert rows_of(runtime, alice) == settled_rows
        assert push_to(client, runtime, ALICE)["reasons"] == [{"code": "subject_erased"}]

    with gateway(settings, clock) as (_, runtime):  # nothing left for a later start to do
        assert all_events(runtime) == settled


def test_the_users_retried_delete_finishes_it_without_a_restart(
    settings: Settings, clock: FakeClock, data_dir: Path
) -> None:
    with gateway(settings, clock) as (client, runtime):
        alice = build_up(client, runtime, ALICE)
        erased_at = clock()
        runtime.store.directory.erase(ref_of(runtime, ALICE), erased_at)
        # What the failed request left: a key destroyed, and a cleanup the tombstone remembers.
        clock.advance(minutes=1)

        retried = client.delete("/v1/me", headers=user(runtime, ALICE))

        assert retried.status_code == 204, retried.text
        assert_finished(runtime, data_dir, ALICE, alice)
        [event] = erasure_events(runtime, alice)
        assert event.at == erased_at.isoformat()  # when the key went, not when it was finished
        done = all_events(runtime)
        assert client.delete("/v1/me", headers=user(runtime, ALICE)).status_code == 204
        assert all_events(runtime) == done


def test_a_cleanup_that_runs_again_after_it_committed_records_nothing_twice(
    settings: Settings, clock: FakeClock, data_dir: Path
) -> None:
    """The crash after the data transaction, before the tombstone forgot the subject id."""
    with gateway(settings, clock) as (client, runtime):
        alice = build_up(client, runtime, ALICE)
        assert client.delete("/v1/me", headers=user(runtime, ALICE)).status_code == 204
        done = all_events(runtime)
        assert len(erasure_events(runtime, alice)) == 1
        ref = ref_of(runtime, ALICE)
        keep_pending(runtime, data_dir, ref, alice)
        assert runtime.store.directory.pending_erasure(ref) is not None

    with gateway(settings, clock) as (client, runtime):
        assert all_events(runtime) == done
        assert_finished(runtime, data_dir, ALICE, alice)
        # And once more within one run: the cleanup, run twice, appends nothing twice.
        keep_pending(runtime, data_dir, ref, alice)
        assert runtime.rights.finish_pending_erasures() == 1
        assert runtime.rights.finish_pending_erasures() == 0
        assert all_events(runtime) == done
        assert_finished(runtime, data_dir, ALICE, alice)


def test_a_user_who_came_back_while_the_cleanup_was_pending_is_erased_both_times(
    settings: Settings, clock: FakeClock, data_dir: Path
) -> None:
    with gateway(settings, clock) as (client, runtime):
        first = build_up(client, runtime, ALICE)
        runtime.store.directory.erase(ref_of(runtime, ALICE), clock())
        second = build_up(client, runtime, ALICE)  # back before anything finished the first
        assert second != first

        assert client.delete("/v1/me", headers=user(runtime, ALICE)).status_code == 204

        for subject_id in (first, second):
            assert_finished(runtime, data_dir, ALICE, subject_id)


def test_a_start_with_nothing_pending_reads_one_partial_index(tmp_path: Path) -> None:
    """The directory step on a file that already holds subjects and tombstones (the pattern of
    tests/unit/storage/test_migrations.py): none of them is pending, and startup's query reads
    only the partial index, which holds nothing but pending cleanups."""
    conn = connect(tmp_path / DIRECTORY_FILE, secrets.token_bytes(32))
    migrate(conn, DIRECTORY_MIGRATIONS[:1])
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO subjects (subject_ref, subject_id, wrapped_key, created_at) VALUES (?, ?, ?, ?)",
        ("sub_live", "s_live", b"w" * 60, "2026-11-23T10:00:00+00:00"),
    )
    conn.execute(
        "INSERT INTO tombstones (subject_ref, erased_at) VALUES ('sub_gone', '2026-11-23T10:00:00+00:00')"
    )
    conn.execute("COMMIT")

    assert migrate(conn, DIRECTORY_MIGRATIONS) == [
        "0002_pending_erasures", "0003_wrapping_keys", "0004_erasure_days", "0005_key_checks",
        "0006_erasures_made",
    ]  # fmt: skip

    assert conn.execute("SELECT * FROM tombstones").fetchall() == [
        ("sub_gone", "2026-11-24T00:00:00+00:00", None, None)  # its day only (0004)
    ]
    assert conn.execute(PENDING).fetchall() == []
    plan = " ".join(str(step[3]) for step in conn.execute(f"EXPLAIN QUERY PLAN {PENDING}"))
    assert "tombstones_pending" in plan
    assert migrate(conn, DIRECTORY_MIGRATIONS) == []
    conn.close()
