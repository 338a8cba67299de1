"""Every provider call is bounded as a whole, whatever the server trickles: the FCM token request
and send and the Web Push POST go through `Http1Client`, whose timeout runs until the answer is
read whole (APNs, on httpx, has its own test in test_apns.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from clients.delivery import DeliveryResult, FcmAdapter, FcmConfig, WebPushAdapter, WebPushConfig

from .doubles import FakeClock, PlainSecret, make_message
from .test_fcm import TOKEN_OK, service_account
from .test_webpush import SUBJECT, VAPID_PEM, subscription

TIMEOUT = 0.5
# Far under the 20 s the trickle takes, far over the timeout: only a bound per read, not per call,
# fails it, not a loaded machine's scheduling.
BOUND = 10.0
TIMED_OUT = DeliveryResult(status="retry", provider_code="Timeout")


class Trickler:
    """HTTP/1.1 on 127.0.0.1: a request whose path starts with `slow` gets a head promising 100
    bytes, then one byte every 0.2 s; any other gets FCM's token answer at once."""

    def __init__(self, slow: str) -> None:
        self.slow = slow.encode()
        self.url = ""
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Trickler:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                await reader.readexactly(length)
                if head.split(b" ", 2)[1].startswith(self.slow):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
                    for _ in range(100):
                        await asyncio.sleep(0.2)
                        writer.write(b" ")
                        await writer.drain()
                status, headers, body = TOKEN_OK
                lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
                answer = f"HTTP/1.1 {status} OK\r\n{lines}Content-Length: {len(body)}\r\n\r\n"
                writer.write(answer.encode() + body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def timed(slow: str, send: Callable[[str], Awaitable[DeliveryResult]]) -> tuple[DeliveryResult, float]:
    async def scenario() -> tuple[DeliveryResult, float]:
        async with Trickler(slow) as server:
            started = time.monotonic()
            result = await asyncio.wait_for(send(server.url), 3.0)
            return result, time.monotonic() - started

    return asyncio.run(scenario())


@pytest.mark.parametrize("slow", ["/token", "/v1/"], ids=["token request", "send"])
def test_fcm_calls_are_bounded_as_a_whole(slow: str) -> None:
    async def send(url: str) -> DeliveryResult:
        config = FcmConfig(
            service_account=service_account(url + "/token"), base_url=url, allow_http=True, timeout=TIMEOUT
        )
        adapter = FcmAdapter(config, clock=FakeClock())
        try:
            return await adapter.send(make_message(FakeClock()))
        finally:
            await adapter.aclose()

    result, took = timed(slow, send)
    assert result == TIMED_OUT
    assert took < BOUND


def test_a_web_push_is_bounded_as_a_whole() -> None:
    async def send(url: str) -> DeliveryResult:
        config = WebPushConfig(
            vapid_private_key=PlainSecret(VAPID_PEM),
            vapid_subject=SUBJECT,
            allowed_hosts=("127.0.0.1",),
            allow_http=True,
            timeout=TIMEOUT,
        )
        adapter = WebPushAdapter(config, clock=FakeClock())
        message = make_message(FakeClock(), platform="webpush", token=subscription(url + "/push/sub-1"))
        try:
            return await adapter.send(message)
        finally:
            await adapter.aclose()

    result, took = timed("/push/", send)
    assert result == TIMED_OUT
    assert took < BOUND
