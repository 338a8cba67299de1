"""`CGW_LOG_LEVEL=debug` is a documented level; it must not turn libraries' debug logs on.

hpack logs every HTTP/2 header at DEBUG, among them the APNs request path, which ends in the
device token. A real APNs exchange against a local HTTP/2 server, with the log captured."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import pytest

from clients.delivery import ApnsAdapter
from gateway.logs import configure_logging

from .doubles import FakeClock, make_message
from .servers import H2cServer
from .test_apns import TOKEN, config


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """configure_logging at DEBUG, its output in a buffer; the logging setup restored after."""
    root = logging.getLogger()
    saved = (
        root.handlers[:],
        root.level,
        {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict},
    )
    buffer = io.StringIO()
    configure_logging("debug")
    root.handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    yield buffer
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


def test_a_debug_log_has_our_debug_lines_and_no_device_token(captured: io.StringIO) -> None:
    async def send() -> None:
        clock = FakeClock()
        async with H2cServer(lambda _: (200, {}, b"")) as server:
            adapter = ApnsAdapter(config(server.url), clock=clock)
            result = await adapter.send(make_message(clock, platform="apns", token=TOKEN))
            await adapter.aclose()
        assert result.status == "delivered"

    logging.getLogger("gateway.test").debug("our own debug line")
    asyncio.run(send())
    text = captured.getvalue()
    assert "our own debug line" in text
    assert TOKEN not in text
