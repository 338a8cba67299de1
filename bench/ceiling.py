"""The receiver's own ceiling, measured with the delivery worker's HTTP client settings.

`WebhookAdapter` posts through `Http1Client` (our HTTP/1.1 client) and the worker keeps up to
`CGW_WORKER_CONCURRENCY` (256 by default) pushes in flight, with as many connections. This does
the same (`--concurrency`: lanes and connections) with the same client and the same signed body
shape, as fast as it can, so the delivery figure can be read against what that client and
receiver allow at all. `--httpx` uses one `httpx.AsyncClient`
with httpx's default limits instead, as the adapter did before run E, for comparison.
Run pinned to the core the gateway used; prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import msgspec

from clients.delivery._http import CONNECTIONS, Http1Client, TransportFailure
from clients.delivery.webhook import WebhookSigner


async def run(url: str, seconds: float, concurrency: int, use_httpx: bool) -> dict[str, object]:
    done = 0
    errors = 0
    stop_at = time.perf_counter() + seconds
    single = httpx.AsyncClient(timeout=10.0)
    ours = Http1Client(10.0, connections=concurrency)
    signer = WebhookSigner(b"bench-secret-bench-secret-bench-secret")
    try:

        async def lane(lane_id: int) -> None:
            nonlocal done, errors
            n = 0
            while time.perf_counter() < stop_at:
                n += 1
                push_id = f"psh_{lane_id:04d}{n:020d}"
                body = msgspec.json.encode(
                    {
                        "push_id": push_id, "device_id": "dev_000000000000000000000000",
                        "device_token": "relay-device-00000001", "topic": "transactional",
                        "title": "Your order has shipped", "body": "Order 1 is on its way.",
                        "data": {"deeplink": "wallet://orders/1"}, "campaign_id": None, "variant": None,
                    }
                )  # fmt: skip
                stamp = int(time.time())
                headers = {
                    "content-type": "application/json",
                    "idempotency-key": f"{push_id}:dev_0",
                    "x-cgw-timestamp": str(stamp),
                    "x-cgw-signature": signer.sign(stamp, body),
                }
                try:
                    if use_httpx:
                        status = (await single.post(url, content=body, headers=headers)).status_code
                    else:
                        status = (await ours.post(url, headers, content=body)).status
                except (httpx.TransportError, TransportFailure):
                    errors += 1
                    continue
                done += status == 200  # after the await: `done += await ...` would lose other lanes' counts

        started = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.gather(*(lane(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        await single.aclose()
        await ours.aclose()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"requests_per_s": round(done / elapsed, 1), "requests": done, "errors": errors,
            "concurrency": concurrency, "client": "httpx" if use_httpx else "Http1Client",
            "client_cpu_us_per_req": round(cpu / max(done, 1) * 1e6, 1),
            "client_cpu_share": round(cpu / elapsed, 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=CONNECTIONS)
    parser.add_argument("--httpx", action="store_true", help="one httpx client, its default limits")
    args = parser.parse_args()
    run_loop: Callable[[Coroutine[Any, Any, dict[str, object]]], dict[str, object]]  # uvloop's or asyncio's
    try:
        from uvloop import run as run_loop  # the gateway's server runs on uvloop too
    except ImportError:
        from asyncio import run as run_loop
    result = run_loop(run(args.url, args.seconds, args.concurrency, args.httpx))
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
