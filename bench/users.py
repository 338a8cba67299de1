"""Users for the HTTP benchmarks, created through the gateway's own services (not HTTP, not SQL).

Each user gets the subject directory row (`SubjectDirectory.ensure`), marketing consent with its
signed receipt and ledger event (`PreferenceCenter.set_consent`) and one webhook device
(`DeviceService.register`) — exactly what `PUT /v1/me/consents/marketing` and
`POST /v1/me/devices` do behind the HTTP layer. `ensure` is synchronous and one row per call, so
it runs on a thread pool where the writer's group commit gathers the threads' rows.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gateway.clock import system_clock
from gateway.runtime import Runtime
from gateway.schemas.me import ConsentUpdate, DeviceCreate
from gateway.settings import Settings

USER_PREFIX = "bench-user-"
NOTICE = "2026-11"


def settings_for(data_dir: Path) -> Settings:
    """The settings of a gateway in this process over `data_dir`: no worker, and as its zone
    (the users' own, since they set none) one where it is early afternoon now, so the default
    quiet hours (21:00-08:00) hold none of a benchmark's marketing pushes whatever the hour."""
    offset = system_clock().hour - 13  # Etc/GMT+N is N hours behind UTC
    zone = "Etc/GMT" if offset == 0 else f"Etc/GMT{offset:+d}"
    return Settings.from_env(
        {}, data_dir=data_dir, worker_enabled=False, log_level="warning", timezone=zone, checkpoint_seconds=0
    )


async def _populate(runtime: Runtime, users: int, chunk: int) -> None:
    refs = [runtime.store.pseudonyms.subject_ref(f"{USER_PREFIX}{i}") for i in range(users)]
    now = system_clock()
    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(lambda ref: runtime.store.directory.ensure(ref, now), refs, chunksize=64))
    consent = ConsentUpdate(granted=True, notice_version=NOTICE)

    async def one(i: int, ref: str) -> None:
        await runtime.preferences.set_consent(ref, "marketing", consent, actor="user", source="bench")
        await runtime.devices.register(ref, DeviceCreate(platform="webhook", token=f"relay-device-{i:08d}"))

    for start in range(0, users, chunk):
        await asyncio.gather(*(one(i, refs[i]) for i in range(start, min(start + chunk, users))))


SCOPES = ("pushes:write", "campaigns:write", "campaigns:read")


def api_key(data_dir: Path, scopes: tuple[str, ...] = SCOPES) -> str:
    """A new API key with `scopes` (by default `pushes:write campaigns:write campaigns:read`) in
    `data_dir`'s storage."""
    runtime = Runtime(settings_for(data_dir))
    try:
        return runtime.api_keys.create_sync("bench", scopes)[1]
    finally:
        runtime.close()


def prepare(data_dir: Path, users: int, chunk: int = 500) -> tuple[str, float]:
    """Create the key store, an API key with `SCOPES` and `users` users; returns (the API key,
    seconds taken)."""
    started = time.perf_counter()
    runtime = Runtime(settings_for(data_dir))
    try:
        _, secret = runtime.api_keys.create_sync("bench", SCOPES)
        asyncio.run(_populate(runtime, users, chunk))
    finally:
        runtime.close()
    return secret, time.perf_counter() - started
