"""Ledger verification, export and proofs read and hash the whole ledger: seconds on a big one. They run
in a worker thread, so the event loop keeps answering everyone else meanwhile (before, a
`/readyz` sent during a verify of 100k events waited for it, about a second).

No timing decides it. The storage read each route makes off the loop is wrapped so that it stops,
mid-route, until the test lets it go (`Gate`); while it is stopped, `/healthz` must be answered.
Had the route read on the event loop, the stop would hold the loop, and `/healthz` would come
back only once the gate gave up waiting, which the test sees. The ledger can be small: what is
measured is where the read runs, not how long it takes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient

from gateway.runtime import Runtime
from storage import ledger
from storage.connections import Connection

Client = TestClient[Litestar]
EVENTS = 8
STUCK = 10.0  # seconds a gate waits before letting the read go on anyway: only a failing run waits


class Gate:
    """Wraps a storage function: each call marks `entered`, then waits until `open()`. If it
    waits `STUCK` seconds in vain it goes on and says so (`gave_up`), so that a read that holds
    the event loop ends the test with a failure, not a hang."""

    def __init__(self, inner: Callable[..., Any]) -> None:
        self.entered = threading.Event()
        self.gave_up = False
        self._inner = inner
        self._open = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        if not self._open.wait(STUCK):
            self.gave_up = True
        return self._inner(*args, **kwargs)

    def open(self) -> None:
        self._open.set()


def healthz_while_held(
    client: Client, gate: Gate, send: Callable[[], int], what: str
) -> tuple[list[int], bool]:
    """Send a request (`send`, on a thread) that stops in `gate`; meanwhile ask `/healthz`. Returns
    the request's status codes and whether `/healthz` was held up (answered only once the gate
    gave up waiting, so the gated read ran on the event loop)."""
    statuses: list[int] = []
    sending = threading.Thread(target=lambda: statuses.append(send()))
    sending.start()
    try:
        assert gate.entered.wait(STUCK), f"{what} never reached its read"
        assert client.get("/healthz").status_code == 200
        held_up = gate.gave_up
    finally:
        gate.open()
        sending.join()
    return statuses, held_up


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
    ("route", "reads"),
    [
        ("/v1/audit/ledger/verify", "verify"),  # the chain, and the checkpoint's root
        ("/v1/audit/export", "events_between"),  # the events exported, after the checkpoint is made
        (f"/v1/audit/ledger/proof/inclusion?seq=1&size={EVENTS}", "head"),
        (f"/v1/audit/ledger/proof/consistency?from=1&to={EVENTS}", "head"),
    ],
)
def test_a_request_made_during_a_long_ledger_read_is_not_held_up_by_it(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    as_key: Callable[..., Headers],
    monkeypatch: pytest.MonkeyPatch,
    route: str,
    reads: str,
) -> None:
    auditor = as_key("audit:read")
    fill_ledger(runtime, clock, EVENTS)
    assert client.get("/v1/audit/ledger/checkpoint", headers=auditor).status_code == 200
    gate = Gate(getattr(ledger, reads))
    monkeypatch.setattr(ledger, reads, gate)
    statuses, held_up = healthz_while_held(
        client, gate, lambda: client.get(route, headers=auditor).status_code, f"{route} (ledger.{reads})"
    )
    assert statuses == [200]
    assert not held_up, f"/healthz waited for {route}: ledger.{reads} ran on the event loop"
