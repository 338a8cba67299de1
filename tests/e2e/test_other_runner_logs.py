"""The app served by a runner other than `consent-gateway serve` logs its own request lines, as
serve does, and keeps the server's access line, which holds the raw path and query string, out
of the logs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support import free_port

pytestmark = pytest.mark.slow

EMAIL = "alice.runner-logs@example.com"


@pytest.mark.parametrize("runner_level", ["info", "trace"])
def test_uvicorn_factory_logs_no_query_string(tmp_path: Path, runner_level: str) -> None:
    """Regression: under `uvicorn --factory gateway.app:create_app` uvicorn's access line printed
    `GET /v1/audit/consent-events?user_id=alice...%40example.com`; at `--log-level trace` its
    ASGI message log printed the query string too (review of a0e546a)."""
    port = free_port()
    log = tmp_path / "stderr.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "gateway.app:create_app",
                "--port",
                str(port),
                "--log-level",
                runner_level,
            ],
            env={"CGW_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"},
            stdout=sink,
            stderr=sink,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        answer = httpx.get(f"{base}/v1/audit/consent-events", params={"user_id": EMAIL}, timeout=5)
        assert answer.status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=30)
    written = log.read_text()
    assert "Uvicorn running" in written  # the server did log, and was heard
    # Our request line, as `serve` writes it (no logging was set up under another runner).
    lines = [json.loads(line) for line in written.splitlines() if line.startswith("{")]
    requests = [(e["route"], e["status"]) for e in lines if e["logger"] == "gateway.http"]
    assert ("/v1/audit/consent-events", 401) in requests, written[-3000:]
    assert "alice.runner-logs" not in written
    assert "alice.runner-logs%40example.com" not in written
