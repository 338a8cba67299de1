"""Caps and idempotency hold under concurrent submissions to the real server process.

Starts `consent-gateway serve` on a free port over a fresh data dir (configured by flags and
`CGW_*` variables only), makes an API key and a user token with the CLI, sets the user up over
HTTP and fires 50 submissions at once from a thread pool.

The server decides with the real clock, so the user's time zone is chosen to make it early
afternoon for them now: far from quiet hours and from local midnight.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import daytime_zone, free_port

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent / "consent-gateway"
STARTUP_SECONDS = 30.0
STOP_SECONDS = 10.0
WORKERS = 50
USER_ID = "concurrency-user-5e1f0a"


@dataclass
class Server:
    base: str
    data_dir: Path
    env: dict[str, str]
    log: Path

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN), *args, "--data-dir", str(self.data_dir)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[0]


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_SECONDS)
    return proc.returncode


def _start(data_dir: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    """Start the server on a free port and wait (bounded) until it serves. None when another
    process took the port between choosing and binding it, so the caller can try another."""
    port = free_port()
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [str(BIN), "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if proc.poll() is not None:
            if "address already in use" in text.lower():
                return None
            pytest.fail(f"server exited early ({proc.returncode}):\n{text[-3000:]}")
        # Our own process is listening (not some other server that grabbed the port first).
        if "Uvicorn running on" in text:
            try:
                if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                    return proc, base
            except httpx.TransportError:
                pass
        time.sleep(0.1)
    _stop(proc)
    pytest.fail(f"server not healthy within {STARTUP_SECONDS} s:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    if not BIN.exists():
        pytest.fail(f"{BIN} is not installed")
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGW_")}
    env |= {"CGW_TIMEZONE": "UTC", "CGW_LOG_LEVEL": "info"}
    log = tmp_path / "server.log"
    for _ in range(3):
        started = _start(data_dir, env, log)
        if started is not None:
            break
    else:
        pytest.fail("no free port could be bound in 3 attempts")
    proc, base = started
    try:
        yield Server(base, data_dir, env, log)
    finally:
        code = _stop(proc)
    # uvicorn re-raises the SIGTERM it handled once shutdown is done, so -SIGTERM is a clean exit too.
    tail = log.read_text(errors="replace")[-2000:]
    assert code in (0, -signal.SIGTERM), f"server did not stop cleanly ({code}):\n{tail}"
    assert "Application shutdown complete" in tail, tail


def fire(base: str, key: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """POST all bodies at once: every thread waits at a barrier, then sends."""
    barrier = threading.Barrier(len(bodies))
    headers = {"Authorization": f"Bearer {key}"}

    def send(body: dict[str, Any]) -> httpx.Response:
        with httpx.Client(base_url=base, headers=headers, timeout=30.0) as http:
            barrier.wait(timeout=30)
            return http.post("/v1/pushes", json=body)

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(send, bodies))


def test_caps_and_idempotency_hold_under_concurrency(server: Server) -> None:
    key = server.cli("keys", "create", "--name", "t", "--scope", "pushes:write")
    token = server.cli("token", USER_ID)
    assert key.startswith("cgw_")

    with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as me:
        consent = me.put("/v1/me/consents/marketing", json={"granted": True, "notice_version": "v1"})
        assert consent.status_code == 200, consent.text
        device = me.post("/v1/me/devices", json={"platform": "fcm", "token": "fcm-token-concurrency"})
        assert device.status_code == 201, device.text
        prefs = me.patch("/v1/me/preferences", json={"timezone": daytime_zone()})
        assert prefs.status_code == 200, prefs.text

    def body(idempotency_key: str) -> dict[str, Any]:
        return {
            "idempotency_key": idempotency_key,
            "user_id": USER_ID,
            "topic": "promotions",
            "title": "Flash offer",
            "body": "Half price for one hour",
        }

    answers = fire(server.base, key, [body(f"race-{i}") for i in range(WORKERS)])
    assert [a.status_code for a in answers] == [200] * WORKERS, [
        a.text for a in answers if a.status_code != 200
    ]
    decided = [a.json() for a in answers]
    outcomes = Counter(d["outcome"] for d in decided)
    assert outcomes == {"queued": 1, "rejected": WORKERS - 1}, outcomes
    for rejected in (d for d in decided if d["outcome"] == "rejected"):
        found = {r["code"] for r in rejected["reasons"]}
        assert found, rejected
        assert found <= {"frequency_capped", "topic_interval"}, rejected
    assert len({d["push_id"] for d in decided}) == WORKERS

    same = fire(server.base, key, [body("one-and-only")] * WORKERS)
    assert [a.status_code for a in same] == [200] * WORKERS, [a.text for a in same if a.status_code != 200]
    replies = [a.json() for a in same]
    assert len({r["push_id"] for r in replies}) == 1
    assert all(r == replies[0] for r in replies)
    assert replies[0]["outcome"] == "rejected"  # the day's one push is already taken

    with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as api:
        read = api.get(f"/v1/pushes/{replies[0]['push_id']}")
        assert read.status_code == 200
        assert read.json()["outcome"] == "rejected"
        metrics = httpx.get(f"{server.base}/metrics", timeout=10).text

    # The user_id is pseudonymized at the edge: not in the server's log or metrics.
    assert USER_ID not in server.log.read_text(errors="replace")
    assert USER_ID not in metrics
