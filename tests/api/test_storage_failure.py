"""A failed disk sync over HTTP: the request that hit it and every later write answer 503 with a
clear detail (not a bare 500), reads that would rest on unsynced data too, `/readyz` says
not ready and `/healthz` says the process needs a restart. Only `os.fdatasync`, the OS boundary,
is replaced."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from support import out_of_descriptors

import storage.connections
from gateway.runtime import Runtime

Headers = dict[str, str]
CONSENT = {"granted": True, "notice_version": "2026-11"}


def _failing_fdatasync(fd: int) -> None:
    raise OSError(errno.EIO, "Input/output error (injected)")


def test_after_a_failed_fsync_writes_answer_503_and_the_gateway_is_neither_ready_nor_alive(
    client: TestClient[Litestar],
    runtime: Runtime,
    as_user: Callable[[str], Headers],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    user = as_user("disk-user")
    assert client.put("/v1/me/consents/marketing", json=CONSENT, headers=user).status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}

    monkeypatch.setattr(os, "fdatasync", _failing_fdatasync)
    failed = client.put("/v1/me/consents/marketing", json={**CONSENT, "granted": False}, headers=user)
    assert failed.status_code == 503
    assert "storage is unavailable" in failed.json()["detail"]
    # Its error line names the request, as its request line and `x-request-id` do.
    [line] = [r for r in caplog.records if r.getMessage() == "storage failed"]
    assert getattr(line, "request_id", None) == failed.headers["x-request-id"]

    monkeypatch.undo()  # the disk is back, but what the kernel kept is unknown: still refused
    again = client.patch("/v1/me/preferences", json={"locale": "de"}, headers=user)
    assert again.status_code == 503
    # a read may have seen what never reached the disk: it is refused the same way
    read = client.get("/v1/me/preferences", headers=user)
    assert read.status_code == 503
    assert "storage is unavailable" in read.json()["detail"]
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "gateway.db unwritable"
    # readiness alone would keep a process that can never be ready again: liveness fails too
    alive = client.get("/healthz")
    assert alive.status_code == 503
    assert alive.json() == {"status": "failed", "checks": {"storage": "failed"}}
    # The three requests refused, by their cause; the probes' own 503s are their verdicts.
    counted = runtime.metrics.registry.get_sample_value
    assert counted("cgw_unavailable_answers_total", {"cause": "storage_failed"}) == 3


def test_an_audit_write_refused_twice_in_one_request_is_one_503_counted_once(
    client: TestClient[Litestar],
    runtime: Runtime,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The checkpoint route writes, and so does the access log after it: with storage failed both
    are refused, and the one 503 its client gets was counted twice."""
    user = as_user("audit-twice-user")
    auditor = as_key("audit:read")
    assert client.put("/v1/me/consents/marketing", json=CONSENT, headers=user).status_code == 200
    monkeypatch.setattr(os, "fdatasync", _failing_fdatasync)
    refused = client.put("/v1/me/consents/marketing", json={**CONSENT, "granted": False}, headers=user)
    assert refused.status_code == 503
    monkeypatch.undo()
    counted = runtime.metrics.registry.get_sample_value
    assert counted("cgw_unavailable_answers_total", {"cause": "storage_failed"}) == 1
    assert client.get("/v1/audit/ledger/checkpoint", headers=auditor).status_code == 503
    assert counted("cgw_unavailable_answers_total", {"cause": "storage_failed"}) == 2


def test_a_write_lock_held_by_another_process_past_the_busy_timeout_answers_503_with_retry_after(
    client: TestClient[Litestar],
    runtime: Runtime,
    as_user: Callable[[str], Headers],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process on the data dir (a batch in a second `serve`, a migration) may hold the
    write lock longer than the busy timeout: that answered a bare 500, which clients and the SDK
    do not retry. It is a passing condition: 503 with Retry-After, nothing kept, nothing ended."""
    user = as_user("busy-user")
    assert client.put("/v1/me/consents/marketing", json=CONSENT, headers=user).status_code == 200
    monkeypatch.setattr(storage.connections, "BUSY_TIMEOUT_MS", 200)
    other = storage.connections.connect(runtime.store.data.path, runtime.store.keys.database_key)
    other.execute("BEGIN IMMEDIATE")
    try:
        busy = client.put("/v1/me/consents/marketing", json={**CONSENT, "granted": False}, headers=user)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert busy.status_code == 503, busy.text
    assert busy.headers["retry-after"] == "1"
    assert "another process held the database's write lock" in busy.json()["detail"]
    counted = runtime.metrics.registry.get_sample_value
    assert counted("cgw_unavailable_answers_total", {"cause": "storage_busy"}) == 1
    assert counted("cgw_unavailable_answers_total", {"cause": "storage_failed"}) == 0
    kept = client.get("/v1/me/preferences", headers=user).json()["consents"]["marketing"]["granted"]
    assert kept is True  # not kept
    assert client.get("/readyz").status_code == 200  # and it ended nothing
    again = client.put("/v1/me/consents/marketing", json={**CONSENT, "granted": False}, headers=user)
    assert again.status_code == 200


def test_a_process_out_of_file_descriptors_for_a_while_is_not_failed_for_good(
    client: TestClient[Litestar],
    runtime: Runtime,
    as_user: Callable[[str], Headers],
) -> None:
    """Clients holding idle connections can use up the process's file descriptors. The syncer
    opened the WAL at each sync, so a commit made then found no descriptor to sync with, and
    that passing shortage was taken for a failed fsync: every write refused until a restart.
    Here the descriptors really run out (the soft limit lowered to what is open, the rest
    filled with /dev/null) while consents are written; once they are free again, writes and
    readiness are as before."""
    user = as_user("descriptor-user")
    assert client.put("/v1/me/consents/marketing", json=CONSENT, headers=user).status_code == 200
    with out_of_descriptors(spare=64):
        during = [
            client.put("/v1/me/consents/marketing", json={**CONSENT, "granted": n % 2 == 0}, headers=user)
            for n in range(3)
        ]
    # During the shortage a write may be answered or refused, never failed for good.
    assert {r.status_code for r in during} <= {200, 503}, [r.text for r in during]
    after = client.patch("/v1/me/preferences", json={"locale": "en"}, headers=user)
    assert after.status_code == 200, after.text
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
