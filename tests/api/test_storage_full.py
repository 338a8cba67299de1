"""A full disk over HTTP, simulated with `PRAGMA max_page_count` at the data database's current
page count (SQLite's SQLITE_FULL, as a real ENOSPC gives): a batch that needs new pages gets a
503 in the one error shape saying the disk is full, not a bare 500; nothing of it is kept; the
gateway is alive but not ready until there is room again, and then the same batch succeeds."""

from __future__ import annotations

import resource
from collections.abc import Callable

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

from gateway.runtime import Runtime
from storage.connections import Connection
from storage.failures import StorageFullError
from storage.writer import Writer

NO_LIMIT = 1073741823  # SQLite's default max_page_count
CONSENT = {"granted": True, "notice_version": "v1"}


def _max_pages(writer: Writer, pages: int | None) -> None:
    """Cap the database at `pages` (None: at the pages it has now, so it is full)."""

    def apply(conn: Connection) -> None:
        count = pages or conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {count}").fetchone()

    writer.run_alone(apply)


def _items(user_id: str) -> list[dict[str, str]]:
    """A batch of 300 pushes: more than the pages a full database has left."""
    return [
        {"idempotency_key": f"full-{i}", "user_id": user_id, "topic": "transactional", "title": "x" * 100,
         "body": "y" * 400}
        for i in range(300)
    ]  # fmt: skip


def _pushes(runtime: Runtime) -> int:
    return int(runtime.store.data.reader().execute("SELECT count(*) FROM pushes").fetchone()[0])


def test_a_full_disk_answers_503_keeps_nothing_and_heals_once_freed(
    client: TestClient[Litestar],
    runtime: Runtime,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    user = as_user("full-disk-user")
    assert client.put("/v1/me/consents/marketing", json=CONSENT, headers=user).status_code == 200
    key = as_key("pushes:write")
    items = _items("full-disk-user")
    before = _pushes(runtime)
    writer = runtime.store.data.writer

    _max_pages(writer, None)
    full = client.post("/v1/pushes/batch", json={"pushes": items}, headers=key)
    body = assert_problem(full, 503)
    assert "disk is full" in body["detail"]
    assert _pushes(runtime) == before  # answered "not kept", and indeed not kept
    # Counted by its cause, apart from a busy lock or batch slot a client need only retry.
    unavailable = runtime.metrics.registry.get_sample_value
    assert unavailable("cgw_unavailable_answers_total", {"cause": "storage_full"}) == 1
    assert unavailable("cgw_unavailable_answers_total", {"cause": "storage_busy"}) == 0
    for _ in range(2):  # the room probe that finds none leaves none behind for the next one
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"keys": "ok", "database": "gateway.db full"}
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}  # full is not failed

    _max_pages(writer, NO_LIMIT)
    assert client.get("/readyz").json() == {"status": "ready", "checks": {"keys": "ok", "database": "ok"}}
    kept = client.post("/v1/pushes/batch", json={"pushes": items}, headers=key)
    assert kept.status_code == 200, kept.text
    assert len(kept.json()["results"]) == 300
    assert _pushes(runtime) == before + 300


def test_readiness_comes_back_once_freed_when_the_file_has_free_pages(
    client: TestClient[Litestar], runtime: Runtime
) -> None:
    """A database with free pages (rows deleted, an erasure) that fills up: the room probe, run
    for readiness, failed on them, so `/readyz` said "unwritable" long after space was freed."""
    writer = runtime.store.data.writer

    def free_pages(conn: Connection) -> None:
        conn.execute("CREATE TABLE filler (b BLOB)")
        conn.executemany("INSERT INTO filler VALUES (zeroblob(3000))", [()] * 40)
        conn.execute("DROP TABLE filler")

    writer.run_sync(free_pages)
    _max_pages(writer, None)
    writer.run_sync(lambda conn: conn.execute("CREATE TABLE filler (b BLOB)"))  # takes a free page
    with pytest.raises(StorageFullError):
        writer.run_sync(lambda conn: conn.execute("INSERT INTO filler VALUES (zeroblob(?))", (10**6,)))
    assert writer.full
    assert client.get("/readyz").json()["checks"]["database"] == "gateway.db full"

    _max_pages(writer, NO_LIMIT)
    assert client.get("/readyz").json() == {"status": "ready", "checks": {"keys": "ok", "database": "ok"}}


def test_a_write_the_kernel_refuses_answers_503_and_readiness_says_so(
    client: TestClient[Litestar],
    runtime: Runtime,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    """A disk quota or the file-size limit (EDQUOT, EFBIG) reaches SQLite as SQLITE_IOERR, not
    SQLITE_FULL: every write answered a bare 500 while `/readyz` said ready. Simulated with
    RLIMIT_FSIZE just over the files' sizes (Python ignores the SIGXFSZ it would send)."""
    user = as_user("quota-user")
    assert client.put("/v1/me/consents/marketing", json=CONSENT, headers=user).status_code == 200
    key = as_key("pushes:write")
    items = [
        {"idempotency_key": f"quota-{i}", "user_id": "quota-user", "topic": "transactional",
         "title": "x" * 100, "body": "y" * 400}
        for i in range(2000)
    ]  # fmt: skip
    before = _pushes(runtime)
    files = [p for p in runtime.settings.data_dir.iterdir() if p.is_file()]
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max(p.stat().st_size for p in files) + 4096, hard))
    try:
        refused = client.post("/v1/pushes/batch", json={"pushes": items}, headers=key)
        ready = client.get("/readyz")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert "refused the write" in assert_problem(refused, 503)["detail"]
    assert _pushes(runtime) == before
    assert (ready.status_code, ready.json()["checks"]["database"]) == (503, "gateway.db full")

    assert client.get("/readyz").json() == {"status": "ready", "checks": {"keys": "ok", "database": "ok"}}
    kept = client.post("/v1/pushes/batch", json={"pushes": items}, headers=key)
    assert kept.status_code == 200, kept.text
    assert _pushes(runtime) == before + 2000


def _query_only(writer: Writer, on: bool) -> None:
    """Files the process may not write, as SQLite sees them (`SQLITE_READONLY`): a backup
    restored as another user, or a read-only mount, which tests running as root cannot make."""
    writer.run_alone(lambda conn: conn.execute(f"PRAGMA query_only = {int(on)}").fetchone())


def test_files_that_refuse_writes_answer_503_and_readiness_says_read_only(
    client: TestClient[Litestar], runtime: Runtime, as_user: Callable[[str], Headers]
) -> None:
    """Every write answered a bare 500 and `/readyz` said ready: `BEGIN IMMEDIATE`, its only
    test, takes the lock on such files all the same."""
    user = as_user("read-only-user")
    writer = runtime.store.data.writer
    _query_only(writer, True)
    refused = client.put("/v1/me/consents/marketing", json=CONSENT, headers=user)
    assert "refused the write" in assert_problem(refused, 503)["detail"]
    for _ in range(2):
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"keys": "ok", "database": "gateway.db read-only"}

    _query_only(writer, False)
    assert client.get("/readyz").json() == {"status": "ready", "checks": {"keys": "ok", "database": "ok"}}
    assert client.put("/v1/me/consents/marketing", json=CONSENT, headers=user).status_code == 200


@pytest.mark.parametrize("path", ["/v1/audit/consent-events", "/v1/audit/no-such-view"])
def test_an_audit_read_the_full_disk_cannot_log_is_refused_503_not_500(
    client: TestClient[Litestar], runtime: Runtime, as_key: Callable[..., Headers], path: str
) -> None:
    """Every audit call is written to the access log as its answer starts, past Litestar's
    handlers: on a full disk the write's error became the server's plain-text 500. A read the
    log cannot keep is now refused as a write is, and answered again once there is room."""
    auditor = as_key("audit:read")
    routed = path == "/v1/audit/consent-events"
    assert client.get(path, headers=auditor).status_code == (200 if routed else 404)
    writer = runtime.store.data.writer
    _max_pages(writer, None)
    try:
        for _ in range(500):  # the log's rows fill the pages it has, then it needs another
            answer = client.get(path, headers=auditor)
            if answer.status_code != (200 if routed else 404):
                break
        body = assert_problem(answer, 503)
        assert "disk is full" in body["detail"]
    finally:
        _max_pages(writer, NO_LIMIT)
    assert client.get(path, headers=auditor).status_code == (200 if routed else 404)


def test_a_full_disk_is_logged_once_a_streak_not_once_a_request(
    client: TestClient[Litestar],
    runtime: Runtime,
    as_key: Callable[..., Headers],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each refused request had an error line of its own: thousands a second under load, written
    to what may be the same full disk (a review of logs as an operator reads them). Each request
    still has its request line, status 503."""
    key = as_key("pushes:write")
    _max_pages(runtime.store.data.writer, None)
    with caplog.at_level("INFO"):
        for _ in range(3):
            refused = client.post("/v1/pushes/batch", json={"pushes": _items("streak-user")}, headers=key)
            assert refused.status_code == 503, refused.text
    said = [r for r in caplog.records if r.getMessage() == "storage full"]
    assert [r.levelname for r in said] == ["ERROR"]
    lines = [r for r in caplog.records if r.getMessage() == "request"]
    assert [r.status for r in lines] == [503, 503, 503]  # type: ignore[attr-defined]
    _max_pages(runtime.store.data.writer, NO_LIMIT)
