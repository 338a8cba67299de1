"""An erasure's blocking steps run off the event loop.

Each step of `DELETE /v1/me` past the first reads ends with a WAL truncation that a reader in
progress may hold back, retried for up to ~0.3 s (`Database.checkpoint`): on the loop, one
erasure would stall every other request for that long. No timing decides it: the steps are
wrapped to note the thread they run on (and then do their work), and none may be the loop's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient

from gateway.runtime import Runtime

Client = TestClient[Litestar]


def test_an_erasures_blocking_steps_run_off_the_event_loop(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], monkeypatch: pytest.MonkeyPatch
) -> None:
    user = as_user("ada")
    consent = {"granted": True, "notice_version": "v1"}
    assert client.put("/v1/me/consents/marketing", json=consent, headers=user).status_code == 200
    device = {"platform": "webhook", "token": "relay-device-ada-0001"}
    assert client.post("/v1/me/devices", json=device, headers=user).status_code == 201

    threads: dict[str, list[int]] = {}

    def noting(name: str, owner: Any) -> None:
        inner = getattr(owner, name)

        def step(*args: Any, **kwargs: Any) -> Any:
            threads.setdefault(name, []).append(threading.get_ident())
            return inner(*args, **kwargs)

        monkeypatch.setattr(owner, name, step)

    directory, data = runtime.store.directory, runtime.store.data
    for name, owner in (("erase", directory), ("erasure_done", directory), ("checkpoint", data)):
        noting(name, owner)
    loop_thread = client.blocking_portal.call(threading.get_ident)

    assert client.delete("/v1/me", headers=user).status_code in (200, 202, 204)

    assert set(threads) == {"erase", "erasure_done", "checkpoint"}, threads  # each step ran
    assert loop_thread not in {ident for idents in threads.values() for ident in idents}, threads
    assert directory.resolve(runtime.store.pseudonyms.subject_ref("ada")) is None  # and it erased
