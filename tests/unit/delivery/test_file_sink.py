from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import stat
from pathlib import Path

import pytest

from clients.delivery import FileSink, FileSinkConfig

from .doubles import FakeClock, make_message

SUBSCRIPTION = json.dumps(
    {
        "endpoint": "https://user:pw@fcm.googleapis.com:443/fcm/send/secret-registration",
        "keys": {"p256dh": "BPublicKey", "auth": "authsecret"},
    }
)


def test_appends_one_fsynced_private_json_line_per_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    path = tmp_path / "deliveries" / "out.jsonl"
    clock = FakeClock()
    first = make_message(clock)
    second = make_message(clock, device_id="dev_43", platform="webpush", token=SUBSCRIPTION)

    async def scenario() -> list[str]:
        sink = FileSink(FileSinkConfig(path=path))
        try:
            results = [await sink.send(first), await sink.send(second)]
        finally:
            await sink.aclose()
        return [r.status for r in results]

    assert asyncio.run(scenario()) == ["delivered", "delivered"]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 2
    assert len(synced) == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert lines[0] == {
        "idempotency_key": "psh_01HZX:dev_42",
        "push_id": "psh_01HZX",
        "device_id": "dev_42",
        "platform": "fcm",
        "token": "…wxyz",  # the hint a user sees of it (test_token_hint)
        "topic": "promotions",
        "title": "Weekend offer",
        "body": "10% off at partner stores",
        "data": {"deeplink": "wallet://offers/7"},
        "campaign_id": "cmp_1",
        "variant": "A",
        "expires_at": first.expires_at.isoformat(),
    }
    assert lines[1]["token"] == "googleapis.com …tion"
    assert first.token not in path.read_text()
    assert "secret-registration" not in path.read_text()


def test_unwritable_path_is_a_retry_not_an_exception(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")

    async def scenario() -> str:
        sink = FileSink(FileSinkConfig(path=blocker / "out.jsonl"))
        try:
            return (await sink.send(make_message(FakeClock()))).status
        finally:
            await sink.aclose()

    assert asyncio.run(scenario()) == "retry"


def test_a_line_cut_short_by_a_full_disk_is_cut_off_again(tmp_path: Path) -> None:
    """A write that stops mid-line (here EFBIG, the file-size limit, as ENOSPC would) used to
    leave half a line that the next delivery was appended to: both unreadable, the second still
    reported delivered."""
    path = tmp_path / "out.jsonl"
    clock = FakeClock()

    async def scenario() -> list[str]:
        sink = FileSink(FileSinkConfig(path=path))
        statuses: list[str] = []
        try:
            statuses.append((await sink.send(make_message(clock, push_id="psh_1"))).status)
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not a killed process
            resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 40, hard))
            try:
                statuses.append((await sink.send(make_message(clock, push_id="psh_2"))).status)
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
                signal.signal(signal.SIGXFSZ, previous)
            statuses.append((await sink.send(make_message(clock, push_id="psh_3"))).status)
        finally:
            await sink.aclose()
        return statuses

    assert asyncio.run(scenario()) == ["delivered", "retry", "delivered"]
    assert [json.loads(line)["push_id"] for line in path.read_text().splitlines()] == ["psh_1", "psh_3"]
