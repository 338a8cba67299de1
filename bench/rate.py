"""Constant-rate load (wrk2-style) in Python: latency at a fixed offered load.

Request i is *scheduled* at `t0 + i / rate`. A scheduler hands each request, at its time, to an
idle keep-alive connection; when none is idle it waits in a FIFO for one. Latency is measured
from the scheduled time, not from when the request was actually written, so a stalled server
(or a stalled generator) shows up as latency instead of silently lowering the offered load —
the coordinated-omission correction. If the backlog grows past one second of requests, the
run is flagged `saturated`.

HTTP/1.1 is spoken directly over asyncio streams (uvloop when installed): a load generator
that is itself slow (httpx costs ~0.3 ms of CPU per request) would be measuring itself.

Run as a script (pinned to the load core by `run.py`); prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

FILLER = "x" * 96


def body_for(nonce: str, i: int, users: int) -> bytes:
    """The same ~300-byte body as `lua/push.lua`."""
    user = (i * 7919) % users
    return (
        f'{{"idempotency_key":"{nonce}-r-{i}","user_id":"bench-user-{user}","topic":"transactional",'
        f'"title":"Your order has shipped","body":"Order {i} is on its way. {FILLER}",'
        f'"data":{{"deeplink":"wallet://orders/{i}"}}}}'
    ).encode()


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, head: bytes, body: bytes) -> int:
        self.writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        chunked = False
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.partition(b":")
            lowered = name.strip().lower()
            if lowered == b"content-length":
                length = int(value.strip())
            elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        return status


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def run(
    host: str, port: int, path: str, key: str, rate: float, seconds: float, connections: int, users: int
) -> dict[str, object]:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: "
    ).encode()
    nonce = secrets.token_hex(6)
    idle: deque[Conn] = deque()
    for _ in range(connections):
        idle.append(Conn(*await asyncio.open_connection(host, port)))
    waiting: deque[asyncio.Future[Conn]] = deque()
    latencies: list[float] = []
    errors = 0
    max_backlog = 0
    total = int(rate * seconds)

    async def acquire() -> Conn:
        if idle:
            return idle.popleft()
        future: asyncio.Future[Conn] = asyncio.get_running_loop().create_future()
        waiting.append(future)
        return await future

    def release(conn: Conn) -> None:
        while waiting:
            future = waiting.popleft()
            if not future.done():
                future.set_result(conn)
                return
        idle.append(conn)

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        conn = await acquire()
        try:
            status = await conn.request(head, body_for(nonce, i, users))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            with contextlib.suppress(OSError):
                conn = Conn(*await asyncio.open_connection(host, port))
            release(conn)
            return
        latencies.append(time.perf_counter() - scheduled)
        if status != 200:
            errors += 1
        release(conn)

    tasks: set[asyncio.Task[None]] = set()
    t0 = time.perf_counter() + 0.05
    for i in range(total):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        max_backlog = max(max_backlog, len(waiting))
        task = asyncio.create_task(one(i, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    unfinished = 0
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=30)
        # Not answered 30 s after the last was due: errors, not left out of the latencies silently.
        unfinished = len(pending)
        for task in pending:
            task.cancel()
    elapsed = time.perf_counter() - t0
    latencies.sort()
    ms = [v * 1000 for v in latencies]
    return {
        "offered_rps": rate,
        "achieved_rps": round(len(latencies) / elapsed, 1),
        "requests": len(latencies),
        "errors": errors + unfinished,
        "unfinished": unfinished,
        "connections": connections,
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "p999_ms": round(percentile(ms, 99.9), 3),
        "max_ms": round(ms[-1], 3) if ms else math.nan,
        "max_backlog": max_backlog,
        "saturated": max_backlog > rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/pushes")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--users", type=int, default=20_000)
    args = parser.parse_args()
    run_loop: Callable[[Coroutine[Any, Any, dict[str, object]]], dict[str, object]]  # uvloop's or asyncio's
    try:
        from uvloop import run as run_loop
    except ImportError:
        from asyncio import run as run_loop
    result = run_loop(
        run(
            "127.0.0.1",
            args.port,
            args.path,
            os.environ.get("BENCH_KEY", ""),
            args.rate,
            args.seconds,
            args.connections,
            args.users,
        )
    )
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
