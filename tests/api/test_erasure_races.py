"""An erasure racing the user's own requests leaves nothing of the user behind.

A request's writes must reach the writer in one unit: the erasure's cleanup is a unit queued
once the key is destroyed, and it deletes only the rows committed before it. A request that
wrote in two units with an await between them (device registration: releasing the token from
another user, then inserting it) could have its second unit queued after that cleanup, and its
row outlived the erasure, naming the erased subject: invisible to the user (no export, no list,
no way to remove it) and linkable to the device's token through its tag.

No timing decides it: the data writer's `run` is made to wait on a gate, so the registration's
first unit and the erasure's cleanup queue up in that order; then the gate opens, and they reach
the writer in that order (an asyncio event wakes its waiters first come, first served).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient

from gateway.runtime import Runtime
from storage.connections import Connection

Client = TestClient[Litestar]


def test_a_device_registered_while_its_user_is_erased_goes_with_the_erasure(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], monkeypatch: pytest.MonkeyPatch
) -> None:
    user = as_user("ada")
    consent = {"granted": True, "notice_version": "v1"}
    assert client.put("/v1/me/consents/marketing", json=consent, headers=user).status_code == 200
    store = runtime.store
    ref = store.pseudonyms.subject_ref("ada")
    key = store.directory.resolve(ref)
    assert key is not None
    writer, waiting = store.data.writer, 0
    run = writer.run

    async def race() -> tuple[int, int]:
        gate = asyncio.Event()

        async def gated(fn: Callable[[Connection], Any]) -> Any:
            nonlocal waiting
            waiting += 1
            await gate.wait()
            return await run(fn)

        monkeypatch.setattr(writer, "run", gated)
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            device = {"platform": "fcm", "token": "fcm-token-of-ada-0001"}
            register = asyncio.ensure_future(http.post("/v1/me/devices", json=device, headers=user))
            while waiting < 1:
                await asyncio.sleep(0.01)
            erase = asyncio.ensure_future(http.delete("/v1/me", headers=user))
            while waiting < 2:  # the key destroyed, the cleanup queued behind the registration
                await asyncio.sleep(0.01)
            gate.set()
            registered, erased = await asyncio.gather(register, erase)
            return registered.status_code, erased.status_code

    assert client.blocking_portal.call(race) == (201, 204)
    left = store.data.reader().execute("SELECT count(*) FROM devices WHERE subject_id = ?", (key.subject_id,))
    assert left.fetchone()[0] == 0
