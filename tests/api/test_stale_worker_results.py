"""A worker whose lease ran out mid-send does not overwrite what the push's new holder recorded.

Two dispatchers stand for two workers. Worker A's send to the device hangs past its lease (here
its provider stand-in moves the gateway's clock on and lets worker B run a whole round meanwhile),
B delivers the push, and then A's send ends in a timeout (`retry`). A's result was written over B's
`delivered`: the device's record said it still waited, so while the push waited on another of
the user's devices it was sent again to this one. A device's delivery, once recorded, stands.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import Scripted

from clients.delivery import DeliveryMessage, DeliveryResult
from gateway.runtime import Runtime
from gateway.services.dispatch import Dispatcher

Client = TestClient[Litestar]


class HangsPastTheLease:
    """Worker A's provider: while A waits on it, A's lease runs out and B takes the push."""

    name = "stale-a"

    def __init__(self, meanwhile: Callable[[], Awaitable[None]]) -> None:
        self.meanwhile = meanwhile
        self.sent: list[str] = []

    async def send(self, message: DeliveryMessage) -> DeliveryResult:
        self.sent.append(message.push_id)
        await self.meanwhile()
        return DeliveryResult(status="retry", provider_code="Timeout")

    async def aclose(self) -> None:
        """Nothing to close."""


def test_a_stale_workers_timeout_does_not_undo_the_delivery_the_new_holder_recorded(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    user = as_user("ivy")
    assert client.post("/v1/me/devices", json={"platform": "fcm", "token": "fcm-ivy-token"}, headers=user)
    push = {"idempotency_key": "k1", "user_id": "ivy", "topic": "transactional", "title": "t", "body": "b"}
    key = as_key("pushes:write")
    push_id = client.post("/v1/pushes", json=push, headers=key).json()["push_id"]

    rt = runtime
    b_provider = Scripted("scripted-b", "delivered")
    worker_b = Dispatcher(rt.store, rt.clock, rt.settings, rt.policy, rt.metrics, {"fcm": b_provider})

    async def lease_runs_out_and_b_delivers() -> None:
        clock.advance(seconds=rt.settings.worker_lease_seconds + 1)
        assert await worker_b.run_once("worker-b", 10) == 1

    a_provider = HangsPastTheLease(lease_runs_out_and_b_delivers)
    worker_a = Dispatcher(rt.store, rt.clock, rt.settings, rt.policy, rt.metrics, {"fcm": a_provider})
    assert client.blocking_portal.call(worker_a.run_once, "worker-a", 10) == 1

    assert (a_provider.sent, b_provider.sent) == ([push_id], [push_id])
    (status,) = (
        rt.store.data.reader()
        .execute("SELECT status FROM deliveries WHERE push_id = ?", (push_id,))
        .fetchone()
    )
    assert status == "delivered"  # B's fact stands
    assert client.get(f"/v1/pushes/{push_id}", headers=key).json()["status"] == "delivered"
    clock.advance(seconds=rt.settings.worker_lease_seconds + 1)
    assert client.blocking_portal.call(worker_b.run_once, "worker-b", 10) == 0  # nothing left to send
    assert b_provider.sent == [push_id]
