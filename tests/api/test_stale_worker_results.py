"""A worker whose lease ran out mid-send does not overwrite what the push's new holder recorded.

Two dispatchers stand for two workers. Worker A's send to the device hangs past its lease (here
its provider stand-in moves the gateway's clock on and lets worker B run a whole round meanwhile),
B delivers the push, and then A's send ends in a timeout (`retry`). A's result was written over B's
`delivered`: the device's record said it still waited, so while the push waited on another of
the user's devices it was sent again to this one. A device's delivery, once recorded, stands.
"""

from __future__ import annotations

import asyncio
import threading
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


class NeverAnswers:
    """A provider that never answers: the worker sending through it is killed mid-send."""

    name = "never"

    def __init__(self) -> None:
        self.sent = 0
        self.sending = threading.Event()

    async def send(self, message: DeliveryMessage) -> DeliveryResult:
        self.sent += 1
        self.sending.set()
        await asyncio.Event().wait()
        raise AssertionError("never answers")

    async def aclose(self) -> None:
        """Nothing to close."""


def test_a_push_whose_workers_keep_dying_mid_send_spends_its_attempts_and_ends_failed(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    """Before, a lost lease never counted: a push whose sending killed its worker (or outlived
    the lease every time) was claimed again at every lease until it expired, a day later."""
    user = as_user("jon")
    assert client.post("/v1/me/devices", json={"platform": "fcm", "token": "fcm-jon-token"}, headers=user)
    push = {"idempotency_key": "k1", "user_id": "jon", "topic": "transactional", "title": "t", "body": "b"}
    key = as_key("pushes:write")
    push_id = client.post("/v1/pushes", json=push, headers=key).json()["push_id"]

    rt = runtime
    provider = NeverAnswers()
    worker = Dispatcher(rt.store, rt.clock, rt.settings, rt.policy, rt.metrics, {"fcm": provider})
    most = rt.settings.delivery_max_attempts
    for round_ in range(most + 1):  # each round a worker of its own, as after a restart
        provider.sending.clear()
        running = client.blocking_portal.start_task_soon(worker.run_once, f"worker-{round_}", 10)
        if round_ < most:
            assert provider.sending.wait(10)
            running.cancel()  # killed mid-send: the round's claim stands, its results never come
            assert client.get(f"/v1/pushes/{push_id}", headers=key).json()["status"] == "sending"
            clock.advance(seconds=rt.settings.worker_lease_seconds + 1)
        else:
            try:
                claimed = running.result(timeout=10)  # claimed, and ended without a send
            finally:
                running.cancel()  # had it been sent again, it would wait on the provider for good
            assert claimed == 1

    assert provider.sent == most
    answer = client.get(f"/v1/pushes/{push_id}", headers=key).json()
    assert (answer["status"], answer["attempts"], answer["reasons"]) == ("failed", most, [])
    clock.advance(seconds=rt.settings.worker_lease_seconds + 1)
    assert client.blocking_portal.call(worker.run_once, "worker-after", 10) == 0  # out of the outbox
