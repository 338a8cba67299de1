"""Batch and campaign clients: `POST /v1/pushes/batch` of up to 10,000 pushes.

Bodies are encoded before the clock starts; what is timed is the request from the first byte
sent to the last byte of the answer, i.e. the server's decode, decisions, transaction, fsync
and encode (plus loopback transfer of a few MB).
"""

from __future__ import annotations

import secrets
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import msgspec
from procs import CpuMeter

TIMEOUT = httpx.Timeout(600.0)


def transactional_batch(size: int, users: int, offset: int, *, dry_run: bool) -> bytes:
    nonce = secrets.token_hex(6)
    pushes = [
        {
            "idempotency_key": f"{nonce}-b-{i}",
            "user_id": f"bench-user-{(offset + i) % users}",
            "topic": "transactional",
            "title": "Your order has shipped",
            "body": f"Order {i} is on its way.",
            "data": {"deeplink": f"wallet://orders/{i}"},
            "dry_run": dry_run,
        }
        for i in range(size)
    ]
    return msgspec.json.encode({"pushes": pushes})


def campaign_batch(campaign_id: str, start: int, stop: int, user_prefix: str) -> bytes:
    pushes = [
        {
            "idempotency_key": f"{campaign_id}-{i}",
            "user_id": f"{user_prefix}{i}",
            "topic": "promotions",
            "title": "Weekend offer",
            "body": "20% off at partner stores this weekend.",
            "data": {"deeplink": "wallet://offers/weekend"},
            "campaign_id": campaign_id,
            "variant": "A" if i % 2 else "B",
        }
        for i in range(start, stop)
    ]
    return msgspec.json.encode({"pushes": pushes})


def post_batch(client: httpx.Client, body: bytes) -> tuple[float, dict[str, int]]:
    """(seconds, counts by outcome and reason) for one batch."""
    started = time.perf_counter()
    response = client.post("/v1/pushes/batch", content=body, headers={"content-type": "application/json"})
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"batch answered {response.status_code}: {response.text[:500]}")
    counts: dict[str, int] = msgspec.json.decode(response.content)["counts"]
    return seconds, counts


def client(base: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"authorization": f"Bearer {key}"}, timeout=TIMEOUT)


def run_batches(
    base: str, key: str, *, size: int, users: int, runs: int, dry_run: bool, server_pid: int | None = None
) -> dict[str, Any]:
    """`runs` sequential batches of `size`; decisions/s per batch, median/min/max."""
    rates = []
    cpu = []
    counts: Counter[str] = Counter()
    with client(base, key) as http:
        for run in range(runs):
            body = transactional_batch(size, users, offset=run * size, dry_run=dry_run)
            meter = CpuMeter(server_pid) if server_pid else None
            seconds, batch_counts = post_batch(http, body)
            if meter:
                cpu.append(meter.stop(size))
            rates.append(size / seconds)
            counts.update(batch_counts)
    rates.sort()
    return {
        "size": size,
        "runs": runs,
        "dry_run": dry_run,
        "decisions_per_s": round(rates[len(rates) // 2], 1),
        "min": round(rates[0], 1),
        "max": round(rates[-1], 1),
        "counts": dict(counts),
        "server_cpu": cpu,
        "cpu_decisions_per_s": round(1e6 / statistics.median(c["cpu_us_per_unit"] for c in cpu), 1)
        if cpu
        else None,
    }


def create_campaign(base: str, key: str) -> str:
    with client(base, key) as http:
        response = http.post("/v1/campaigns", json={"name": "bench weekend offer", "topic": "promotions"})
        response.raise_for_status()
        campaign_id: str = response.json()["campaign_id"]
        return campaign_id


def run_campaign(
    base: str, key: str, campaign_id: str, recipients: int, user_prefix: str, *, size: int = 10_000
) -> dict[str, Any]:
    """Send the whole campaign in batches of `size`, two in flight so the server never waits for
    the client to build the next one; total wall time to decide and enqueue every recipient."""
    bounds = [(start, min(start + size, recipients)) for start in range(0, recipients, size)]
    counts: Counter[str] = Counter()

    def send(bound: tuple[int, int]) -> dict[str, int]:
        body = campaign_batch(campaign_id, bound[0], bound[1], user_prefix)
        with client(base, key) as http:
            return post_batch(http, body)[1]

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        for batch_counts in pool.map(send, bounds):
            counts.update(batch_counts)
    seconds = time.perf_counter() - started
    return {
        "recipients": recipients,
        "batch_size": size,
        "seconds": round(seconds, 1),
        "decisions_per_s": round(recipients / seconds, 1),
        "counts": dict(counts),
    }
