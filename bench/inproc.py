"""The gateway's own cost without HTTP: requests handed straight to the ASGI app in this process.

Over HTTP the machine's noise and uvicorn blur a change's effect; here each measurement gets fresh
data (users made through the gateway's services, as `users.py` does) and reports the process's CPU
time per request or per decision, all threads included. Used for the before/after figures of
docs/performance-history.md ("What changed between runs C and D").

    python bench/inproc.py single --count 5000     # single pushes, 32 in flight
    python bench/inproc.py single --count 5000 --users 5000 --topic promotions  # ... marketing ones
    python bench/inproc.py layers --count 4000     # a single push's cost, layer by layer
    python bench/inproc.py batch --count 10000     # one durable batch
    python bench/inproc.py dry --count 10000       # one dry-run batch
    python bench/inproc.py campaign --seeded DIR --count 100000   # a campaign over seed.py's subjects
    python bench/inproc.py delivery --count 20000  # the worker draining 20,000 pushes to a receiver
    python bench/inproc.py delivery --campaign --count 20000 --users 20000  # ... of one campaign
    python bench/inproc.py delivery --late --count 20000 --users 20000  # ... each sent late

With `--gc`, the garbage collector's work during the measurement is reported too: collections
per generation, their total and their longest pause (docs/performance-history.md, run G).

`campaign` copies a directory made by `bench/seed.py` (so the seed is reused) and sends the
campaign as `run.py` does, in batches of 10,000. `delivery` queues `--count` pushes first, then
starts the app with its worker on and a webhook to `receiver.py` (its own process, on the other
core), and times the outbox from full to empty: no backlog limit, unlike `run.py`'s phase.
With `--late` the worker's clock runs `LATE` ahead, so that every push is sent over a minute
after it was planned, as in `run.py`'s phase, whose outbox holds pushes queued minutes before.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import secrets
import shutil
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import batch
import floor_app
import httpx
import msgspec
import seed
import users
from litestar import Litestar
from procs import LOAD_CORE, Server, free_port, uvicorn_argv

from gateway.app import create_app
from gateway.clock import Clock, system_clock
from gateway.schemas.pushes import PushCreate
from gateway.settings import Secret, Settings
from policies.catalog import TOPICS

Send = Any


def _push(nonce: str, i: int, users_n: int, dry_run: bool, topic: str = "transactional") -> dict[str, object]:
    return {
        "idempotency_key": f"{nonce}-{i}", "user_id": f"{users.USER_PREFIX}{(i * 7919) % users_n}",
        "topic": topic, "title": "Your order has shipped",
        "body": f"Order {i} is on its way. " + "x" * 96, "data": {"deeplink": f"wallet://orders/{i}"},
        "dry_run": dry_run,
    }  # fmt: skip


class Driver:
    """Calls the app as uvicorn would: an HTTP scope, the body in one message, the answer collected."""

    def __init__(self, app: Litestar, key: str) -> None:
        self.app = app
        self.key = key
        self.last_body: Any = None

    @classmethod
    def gateway(
        cls, data_dir: Path, key: str, settings: Settings | None = None, clock: Clock = system_clock
    ) -> Driver:
        return cls(create_app(settings or users.settings_for(data_dir), clock, tune_collector=True), key)

    async def post(self, path: str, body: bytes) -> int:
        return await self.call("POST", path, body)

    async def call(self, method: str, path: str, body: bytes = b"", key: str | None = None) -> int:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                (b"authorization", f"Bearer {key or self.key}".encode()),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000), "state": {},
        }  # fmt: skip
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        status = 0

        async def receive() -> dict[str, object]:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # nothing more: as a client that stays connected
            raise AssertionError

        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        # Litestar annotates `__call__` with its own scope and event TypedDicts (with keys it adds
        # itself), not the plain ASGI dicts a server passes: its annotation, not this call, is off.
        await self.app(scope, receive, send)  # type: ignore[arg-type]
        self.last_body = msgspec.json.decode(b"".join(chunks)) if chunks else None
        return status

    async def lifespan(self, work: Awaitable[str]) -> str:
        inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        outbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        await inbox.put({"type": "lifespan.startup"})
        task = asyncio.create_task(  # the ignore: Litestar's annotation, as in `post`
            self.app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)  # type: ignore[arg-type]
        )
        await outbox.get()
        try:
            return await work
        finally:
            await inbox.put({"type": "lifespan.shutdown"})
            await outbox.get()
            await task


async def _singles(driver: Driver, count: int, users_n: int, topic: str, concurrency: int = 32) -> str:
    """`count` single pushes of `topic`, 32 in flight. The warm-up's are transactional, so that a
    marketing topic's one push a user a day is left for the pushes measured: each of those goes
    to a user of its own (`users_n` ≥ `count`), consented, outside quiet hours (`settings_for`)."""
    nonce = secrets.token_hex(4)
    for i in range(200):  # warm-up, not counted: caches, prepared statements
        await driver.post("/v1/pushes/", msgspec.json.encode(_push("warm", i, users_n, False)))
    bodies = iter([msgspec.json.encode(_push(nonce, i, users_n, False, topic)) for i in range(count)])
    outcomes: Counter[str] = Counter()

    async def lane() -> None:
        for body in bodies:
            status = await driver.post("/v1/pushes/", body)
            outcomes[driver.last_body["outcome"] if status == 200 else f"HTTP {status}"] += 1

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return f"single {topic}: {count / wall:,.0f}/s, {cpu / count * 1e6:,.0f} µs CPU each, {dict(outcomes)}"


_LAYERS = (
    ("bare Litestar POST (bench/floor_app.py)", 200),
    ("GET /healthz: our middleware, no credential", 200),
    ("POST /v1/pushes refused 403: + the API key, the guard", 403),
    ("dry-run push: + body, directory, state reads, policies, answer", 200),
    ("durable push: + the writer's group commit", 200),
)
# Not a layer: the dry-run push's service alone, its body decoded by msgspec, no request around
# it. Within a request the same calls cost 1.5-1.8 times as much (docs/performance.md, "Where the
# time goes"): the request's own work between them evicts theirs from the processor's caches.
_ALONE = ("(apart) the dry-run push's service alone, no request around it", 200)


async def _layers(driver: Driver, reader_key: str, count: int, users_n: int, rounds: int = 3) -> str:
    """A single push taken apart: each case adds a layer to the one before, so the differences
    say what each layer costs a request. Cases alternate within each round, 32 requests in
    flight, as `single` sends them; the floor is served in this process too."""
    floor = Driver(floor_app.app, driver.key)

    def calls(nonce: str) -> list[Callable[[int], Awaitable[int]]]:
        def push(i: int, dry_run: bool) -> bytes:
            return msgspec.json.encode(_push(nonce, i, users_n, dry_run))

        def echo(i: int) -> bytes:
            return msgspec.json.encode(
                {k: v for k, v in _push(nonce, i, users_n, False).items() if k != "dry_run"}
            )

        return [
            lambda i: floor.call("POST", "/echo", echo(i)),
            lambda i: driver.call("GET", "/healthz"),
            lambda i: driver.call("POST", "/v1/pushes/", push(i, True), key=reader_key),
            lambda i: driver.call("POST", "/v1/pushes/", push(i, True)),
            lambda i: driver.call("POST", "/v1/pushes/", push(i, False)),
        ]

    async def measure(call: Callable[[int], Awaitable[int]], n: int, expected: int) -> tuple[float, int]:
        todo, off = iter(range(n)), 0

        async def lane() -> None:
            nonlocal off
            for i in todo:
                off += await call(i) != expected

        cpu = time.process_time()
        await asyncio.gather(*(lane() for _ in range(32)))
        return (time.process_time() - cpu) / n * 1e6, off

    def alone(nonce: str) -> Callable[[int], Awaitable[int]]:
        """The dry-run push's service called as its route calls it, with no request around it."""
        pushes = driver.app.state.runtime.pushes
        key_id = driver.app.state.runtime.api_keys.verify(driver.key).key_id

        async def call(i: int) -> int:
            body = msgspec.json.encode(_push(nonce, i, users_n, True))
            request = msgspec.json.decode(body, type=PushCreate)
            return 200 if (await pushes.submit(key_id, request)).outcome == "queued" else 500

        return call

    cases = [*_LAYERS, _ALONE]
    for (_, expected), call in zip(cases, [*calls("warm"), alone("warm")], strict=True):
        await measure(call, 300, expected)  # not counted: caches, prepared statements
    costs: list[list[float]] = [[] for _ in cases]
    unexpected = 0
    for _ in range(rounds):
        nonce = secrets.token_hex(4)
        for index, ((_, expected), call) in enumerate(zip(cases, [*calls(nonce), alone(nonce)], strict=True)):
            us, off = await measure(call, count, expected)
            costs[index].append(us)
            unexpected += off
    lines = [f"µs CPU per request, {rounds} rounds of {count:,} each (median: the rounds)"]
    for (name, _), runs in zip(cases, costs, strict=True):
        rounds_text = " / ".join(f"{us:.0f}" for us in runs)
        lines.append(f"  {name:<66} {statistics.median(runs):6.0f}: {rounds_text}")
    lines.append(f"  answers not as expected: {unexpected}")
    return "\n".join(lines)


async def _batch(driver: Driver, count: int, users_n: int, dry_run: bool) -> str:
    nonce = secrets.token_hex(4)
    warm = msgspec.json.encode({"pushes": [_push("warm", i, users_n, dry_run) for i in range(100)]})
    await driver.post("/v1/pushes/batch", warm)  # not counted
    body = msgspec.json.encode({"pushes": [_push(nonce, i, users_n, dry_run) for i in range(count)]})
    started, cpu = time.perf_counter(), time.process_time()
    status = await driver.post("/v1/pushes/batch", body)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    kind = "dry-run" if dry_run else "durable"
    return f"{kind} batch: {count / wall:,.0f}/s, {cpu / count * 1e6:,.1f} µs CPU each, status {status}"


async def _campaign(driver: Driver, count: int) -> str:
    status = await driver.post(
        "/v1/campaigns", msgspec.json.encode({"name": "inproc", "topic": "promotions"})
    )
    if status != 201:
        return f"campaign creation answered {status}"
    campaign_id = driver.last_body["campaign_id"]
    bodies = [
        batch.campaign_batch(campaign_id, start, min(start + 10_000, count), seed.USER_PREFIX)
        for start in range(0, count, 10_000)
    ]
    started, cpu = time.perf_counter(), time.process_time()
    statuses = [await driver.post("/v1/pushes/batch", body) for body in bodies]
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    bad = sum(s != 200 for s in statuses)
    return f"campaign: {count / wall:,.0f}/s, {cpu / count * 1e6:,.1f} µs CPU each, {bad} batches not 200"


async def _queue(driver: Driver, count: int, users_n: int, campaign: bool = False) -> str:
    """Transactional pushes spread over the users, or with `campaign` one marketing push of one
    campaign to each of the first `count` users (one each: the caps would refuse more)."""
    nonce = secrets.token_hex(4)
    campaign_id = None
    if campaign:
        if count > users_n:
            return "a campaign queues one push per user: --count may not exceed --users"
        body = msgspec.json.encode({"name": f"inproc-{nonce}", "topic": "promotions"})
        if await driver.post("/v1/campaigns", body) != 201:
            return "campaign creation failed"
        campaign_id = driver.last_body["campaign_id"]
    for start in range(0, count, 10_000):
        stop = min(start + 10_000, count)
        if campaign_id is not None:
            batch_body = batch.campaign_batch(campaign_id, start, stop, users.USER_PREFIX)
        else:
            pushes = [_push(nonce, i, users_n, False) for i in range(start, stop)]
            batch_body = msgspec.json.encode({"pushes": pushes})
        status = await driver.post("/v1/pushes/batch", batch_body)
        counts = driver.last_body.get("counts", {}) if status == 200 else {}
        if status != 200 or counts.get("queued") != stop - start:
            return f"queueing answered {status}: {counts}"
    return "queued"


LATE = timedelta(minutes=2)


def _ahead() -> datetime:
    return system_clock() + LATE


async def _drain(receiver: str, count: int, limit: float = 300.0) -> str:
    """Wait (the app's worker running meanwhile) until the receiver has taken `count` pushes."""
    async with httpx.AsyncClient(base_url=receiver) as http:
        before = int((await http.get("/count")).text)
        started, cpu = time.perf_counter(), time.process_time()
        got = 0
        while got < count and time.perf_counter() - started < limit:
            await asyncio.sleep(0.05)
            got = int((await http.get("/count")).text) - before
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return f"delivery: {got / wall:,.0f}/s, {cpu / max(got, 1) * 1e6:,.0f} µs CPU each, {got} of {count}"


class GcPauses:
    """The collections that run while in the block: per generation, how many, how long in all, the longest."""

    def __init__(self) -> None:
        self.pauses: defaultdict[int, list[float]] = defaultdict(list)
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self._started)

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)

    def report(self) -> str:
        return (
            "; ".join(
                f"gen{g}: {len(p)} collections, {sum(p) * 1e3:,.0f} ms in all, longest {max(p) * 1e3:.1f} ms"
                for g, p in sorted(self.pauses.items())
            )
            or "no collections"
        )


async def _counting_gc(work: Awaitable[str]) -> str:
    """Entered once the app has started, so what its lifespan does to the collector applies."""
    with GcPauses() as pauses:
        result = await work
    return f"{result}\n{pauses.report()}"


def _delivery(
    data_dir: Path, key: str, count: int, users_n: int, count_gc: bool, campaign: bool, late: bool
) -> str:
    filler = Driver.gateway(data_dir, key)
    queued = asyncio.run(filler.lifespan(_queue(filler, count, users_n, campaign)))
    if queued != "queued":
        return queued
    port = free_port()
    receiver = Server("receiver", uvicorn_argv("receiver:app", port, app_dir=Path(__file__).parent),
                      port, data_dir, core=LOAD_CORE)  # fmt: skip
    try:
        receiver.wait_ready()
        settings = msgspec.structs.replace(
            users.settings_for(data_dir), worker_enabled=True, delivery_webhook_url=f"{receiver.base}/hook",
            delivery_webhook_secret=Secret("inproc-bench-secret-inproc-bench-secret"),
        )  # fmt: skip
        driver = Driver.gateway(data_dir, key, settings, _ahead if late else system_clock)
        drain = _drain(receiver.base, count)
        return asyncio.run(driver.lifespan(_counting_gc(drain) if count_gc else drain))
    finally:
        receiver.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["single", "layers", "batch", "dry", "campaign", "delivery"])
    parser.add_argument("--seeded", type=Path, help="campaign: a data dir made by bench/seed.py")
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--gc", action="store_true", help="report the collector's pauses too")
    parser.add_argument("--campaign", action="store_true", help="delivery: pushes of one campaign")
    parser.add_argument("--late", action="store_true", help="delivery: every push sent over a minute late")
    parser.add_argument(
        "--topic", default="transactional", choices=TOPICS, help="single: the pushes' topic (a marketing one "
        "goes through consent, the topic, the caps and quiet hours)",
    )  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.mode == "campaign":
            if args.seeded is None:
                parser.error("campaign needs --seeded DIR")
            data_dir = Path(tmp) / "data"
            shutil.copytree(args.seeded, data_dir)
            key = users.api_key(data_dir)
        else:
            data_dir = Path(tmp)
            key, _ = users.prepare(data_dir, args.users)
        if args.mode == "delivery":
            print(_delivery(data_dir, key, args.count, args.users, args.gc, args.campaign, args.late))
            return
        driver = Driver.gateway(data_dir, key)
        if args.mode == "campaign":
            work = _campaign(driver, args.count)
        elif args.mode == "single":
            if args.topic != "transactional" and args.users < args.count:
                parser.error("--topic: a marketing push a user a day, so --users must be at least --count")
            work = _singles(driver, args.count, args.users, args.topic)
        elif args.mode == "layers":
            work = _layers(driver, users.api_key(data_dir, ("campaigns:read",)), args.count, args.users)
        else:
            work = _batch(driver, args.count, args.users, dry_run=args.mode == "dry")
        print(asyncio.run(driver.lifespan(_counting_gc(work) if args.gc else work)))


if __name__ == "__main__":
    main()
