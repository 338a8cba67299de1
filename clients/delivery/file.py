"""The default sink: one JSON line per delivery in a local file, for development and audits.

It lets the whole pipeline run without provider credentials. The file may be read by people
who must not learn device tokens, so a token is written as the hint a user sees of it in their
device list (`token_hint`). Each line is fsynced before
`send` returns, so a delivery reported to the worker survives a crash. A line that cannot be
written whole (disk full) is cut off again, and the delivery is a retry.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

import msgspec

from clients.delivery.base import DeliveryMessage, DeliveryResult
from clients.delivery.token_hint import token_hint

__all__ = ["FileSink", "FileSinkConfig"]


class FileSinkConfig(msgspec.Struct, frozen=True, kw_only=True):
    path: Path


class _Line(msgspec.Struct, kw_only=True):
    idempotency_key: str
    push_id: str
    device_id: str
    platform: str
    token: str
    topic: str
    title: str
    body: str
    data: dict[str, str]
    campaign_id: str | None
    variant: str | None
    expires_at: str


class FileSink:
    """Appends to `config.path` (created with mode 0600); writes run in a thread, one at a time."""

    name = "file"

    def __init__(self, config: FileSinkConfig) -> None:
        self._path = config.path
        self._fd: int | None = None
        self._lock = asyncio.Lock()

    async def send(self, message: DeliveryMessage) -> DeliveryResult:
        line = _Line(
            idempotency_key=message.idempotency_key,
            push_id=message.push_id,
            device_id=message.device_id,
            platform=message.platform,
            token=token_hint(message.platform, message.token),
            topic=message.topic,
            title=message.title,
            body=message.body,
            data=message.data,
            campaign_id=message.campaign_id,
            variant=message.variant,
            expires_at=message.expires_at.isoformat(),
        )
        payload = msgspec.json.encode(line) + b"\n"
        async with self._lock:
            try:
                await asyncio.to_thread(self._append, payload)
            except OSError as exc:
                return DeliveryResult(status="retry", provider_code=type(exc).__name__)
        return DeliveryResult(status="delivered")

    async def aclose(self) -> None:
        async with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _append(self, payload: bytes) -> None:
        if self._fd is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        fd = self._fd
        # Locked against the other processes appending (`consent-gateway worker` beside `serve`):
        # cutting back a line cut short must not cut another process's line written after it.
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(fd).st_size
            view = memoryview(payload)
            try:
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            except OSError:
                # A write cut short (disk full, file too big) leaves part of the line: the next
                # delivery would be appended to it and both lines be unreadable.
                os.ftruncate(fd, size)
                raise
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.fsync(fd)
