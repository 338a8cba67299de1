"""Ledger verification, export and proofs read and hash the whole ledger: seconds on a big one. They run
in a worker thread, so the event loop keeps answering everyone else meanwhile (before, a
`/readyz` sent during a verify of 100k events waited for it, about a second)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient

from gateway.runtime import Runtime
from storage import ledger
from storage.db import Connection

Client = TestClient[Litestar]
EVENTS = 40_000  # a few tenths of a second to verify or export: long enough to tell waiting apart
HEAD_START = 0.05  # seconds for the slow request to reach its handler (a proof takes ~0.2 s)


def fill_ledger(runtime: Runtime, clock: FakeClock, events: int) -> None:
    """Appends `events` events in one transaction, as the gateway itself records them."""
    subject = runtime.store.directory.ensure(runtime.store.pseudonyms.subject_ref("bulk"), clock())

    def unit(conn: Connection) -> None:
        for _ in range(events):
            ledger.append(
                conn, at=clock(), subject=subject, kind="consent.given", actor="user", source="test"
            )

    runtime.store.data.writer.run_sync(unit)


@pytest.mark.parametrize(
    "route",
    [
        "/v1/audit/ledger/verify",
        "/v1/audit/export",
        f"/v1/audit/ledger/proof/inclusion?seq=1&size={EVENTS}",
        f"/v1/audit/ledger/proof/consistency?from=1&to={EVENTS}",
    ],
)
def test_a_request_made_during_a_long_ledger_read_is_not_held_up_by_it(
    client: Client, runtime: Runtime, clock: FakeClock, as_key: Callable[..., Headers], route: str
) -> None:
    auditor = as_key("audit:read")
    fill_ledger(runtime, clock, EVENTS)
    assert client.get("/v1/audit/ledger/checkpoint", headers=auditor).status_code == 200
    statuses: list[int] = []
    reading = threading.Thread(target=lambda: statuses.append(client.get(route, headers=auditor).status_code))
    reading.start()
    time.sleep(HEAD_START)

    sent = time.monotonic()
    assert client.get("/healthz").status_code == 200
    quick = time.monotonic() - sent
    reading.join()
    slow = time.monotonic() - sent

    assert statuses == [200]
    # On the loop, /healthz waited for the whole read and was answered just before it (the read's
    # answer waits for its access-log row): answered within the first half, it did not wait.
    assert quick < slow / 2, f"/healthz took {quick:.3f} s, the read {slow:.3f} s from then"
