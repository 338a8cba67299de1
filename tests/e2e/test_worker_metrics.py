"""A `consent-gateway worker` of its own serves the metrics of what it delivers.

Deliveries, end states and circuits are counted in the process that makes them. A deployment
of `serve` (its worker off) and separate workers showed no delivery at all on `serve`'s
`/metrics`, and the workers served none. Here `serve` takes the pushes and a separate worker,
with `CGW_WORKER_METRICS_PORT`, delivers them to a local relay: its own `/metrics` counts each.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import Server, WebhookRelay, free_port, serve_process

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("consent-gateway"))
SECRET = "worker-metrics-webhook-secret-0123456789"
PUSHES = 6


def _delivered(metrics_url: str) -> float:
    text = httpx.get(metrics_url, timeout=5.0).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "cgw_deliveries_total" and sample.labels.get("result") == "delivered"
    )


def _cli(server: Server, *args: str) -> str:
    done = server.cli(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_worker_of_its_own_serves_the_metrics_of_its_deliveries(tmp_path: Path) -> None:
    relay = WebhookRelay()
    settings = {
        "CGW_WORKER_ENABLED": "false",
        "CGW_DELIVERY_WEBHOOK_URL": relay.url,
        "CGW_DELIVERY_WEBHOOK_SECRET": SECRET,
    }
    try:
        with serve_process(tmp_path / "data", tmp_path / "serve.stderr", settings) as server:
            key = _cli(server, "keys", "create", "--name", "svc", "--scope", "pushes:write")
            user = {"Authorization": "Bearer " + _cli(server, "token", "wendy")}
            device = {"platform": "webhook", "token": "relay-device-worker-metrics"}
            assert httpx.post(f"{server.base}/v1/me/devices", json=device, headers=user).status_code == 201
            for n in range(PUSHES):
                body = {"idempotency_key": f"wm-{n}", "user_id": "wendy", "topic": "transactional",
                        "title": "Payment received", "body": f"CNY {n}.00"}  # fmt: skip
                answer = httpx.post(
                    f"{server.base}/v1/pushes", json=body, headers={"Authorization": f"Bearer {key}"}
                )
                assert answer.json()["outcome"] == "queued", answer.text

            port = free_port()
            worker_env = {**server.env, "CGW_WORKER_METRICS_PORT": str(port)}
            with (tmp_path / "worker.stderr").open("wb") as sink:
                worker = subprocess.Popen(
                    [CLI, "worker", "--data-dir", str(server.data_dir)], env=worker_env,
                    stdout=subprocess.DEVNULL, stderr=sink,
                )  # fmt: skip
            try:
                deadline = time.monotonic() + 60
                metrics_url = f"http://127.0.0.1:{port}/metrics"
                while True:
                    assert worker.poll() is None, (tmp_path / "worker.stderr").read_text()[-2000:]
                    try:
                        if len(relay.received) == PUSHES and _delivered(metrics_url) == PUSHES:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, (
                        len(relay.received),
                        (tmp_path / "worker.stderr").read_text()[-2000:],
                    )
                    time.sleep(0.2)
            finally:
                worker.terminate()
                assert worker.wait(timeout=30) == 0
            server.stop()
    finally:
        relay.close()
