"""The complaint-rate rule's cost per delivery, before and after its count moved to the campaign row.

Once a campaign has a complaint, dispatch judges it at every delivery of its pushes
(`maybe_pause_campaign`). It used to count the campaign's delivered pushes there
(`SELECT count(*) FROM pushes WHERE campaign_id = ? AND status = 'delivered'`); the campaign
index does not hold `status`, so that read every push row of the campaign: O(campaign) per
delivery. Now the rule reads `delivered_since_resume` from the campaign row, which dispatch
adds one to in the unit that marks the push delivered (migration 0012 fills it in).

For each size N this builds, in a fresh data dir in a temporary directory, a campaign of N
delivered pushes inserted straight through the repositories in large transactions (as
`bench/seed.py` does) with one complaint, fills its count as migration 0012 does (timed), then
times on the writer's connection, in µs per call:

* `old check`: the rule's reads as they were (campaign row, complaints, the count of rows);
* `new check`: `maybe_pause_campaign` as it is (campaign row, complaints);
* `new per delivery`: what step 3 added per delivered campaign push until 2026-12-05,
  `count_delivery` and then `maybe_pause_campaign`;
* `per delivery in a round`: what it adds now, `count_deliveries` once per campaign and round
  (of `ROUND` deliveries), divided by the round's deliveries.

Under the default policy (0.5% after 200 deliveries) one complaint never pauses these
campaigns, so every call runs the whole check. The old count's first call is shown apart;
all of them find the pages in the writer's 64 MiB page cache (it wrote them), so the old figures
are the floor: a campaign larger than the cache (a million pushes) also decrypts pages at each
call. Numbers only, no pass or fail; about 15 s and 85 MB of disk for the default sizes.

    python bench/campaign_pause_check.py [--sizes 20000 100000]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import msgspec

from gateway.clock import system_clock
from gateway.runtime import Runtime
from gateway.services.campaign_rule import count_deliveries
from gateway.services.complaints import maybe_pause_campaign
from gateway.settings import Settings
from policies.complaints import should_pause_campaign
from storage.connections import Connection
from storage.repositories import campaigns, complaints, pushes
from storage.repositories.complaints import ComplaintRow
from storage.repositories.pushes import PushRow

CHUNK = 50_000
ROUND = 256  # the worker's default round
OLD_COUNT = "SELECT count(*) FROM pushes WHERE campaign_id = ? AND status = 'delivered'"
FILL = (  # migration 0012's statement, for one campaign
    "UPDATE campaigns SET delivered_since_resume = (SELECT count(*) FROM pushes p "
    "WHERE p.campaign_id = campaigns.campaign_id AND p.status = 'delivered' "
    "AND (campaigns.resumed_at IS NULL OR p.updated_at > campaigns.resumed_at)) WHERE campaign_id = ?"
)


def old_check(conn: Connection, campaign_id: str, runtime: Runtime) -> bool:
    """The rule's reads before this change, for a campaign never resumed."""
    campaign = campaigns.get(conn, campaign_id)
    assert campaign is not None
    complained = complaints.count_for_campaign(conn, campaign_id)
    (delivered,) = conn.execute(OLD_COUNT, (campaign_id,)).fetchone()
    return should_pause_campaign(complained, int(delivered), runtime.policy.settings)


def build(runtime: Runtime, n: int, now: datetime) -> str:
    """A campaign of `n` delivered pushes, one of them complained about."""
    writer = runtime.store.data.writer
    campaign_id = writer.run_sync(
        lambda conn: campaigns.create(conn, f"bench {n}", "promotions", "bench", now)
    ).campaign_id
    first = ""
    for start in range(0, n, CHUNK):
        rows = []
        for i in range(start, min(start + CHUNK, n)):
            at = now - timedelta(seconds=n - i)
            push_id, stamp = pushes.new_push_id(at), at.isoformat()
            first = first or push_id
            rows.append(PushRow(
                push_id=push_id, key_id="bench", idempotency_key=push_id, fingerprint=bytes(32),
                subject_id="s_" + secrets.token_hex(16), topic="promotions", campaign_id=campaign_id,
                variant=None, outcome="queued", status="delivered", reasons="[]", allowed_by="[]",
                planned_at=stamp, deliver_after=None, expires_at=(at + timedelta(days=1)).isoformat(),
                created_at=stamp, updated_at=stamp, policy_version=1, content=None, attempts=1,
            ))  # fmt: skip
        writer.run_sync(partial(pushes.insert_many, rows=rows))
    complaint = ComplaintRow(
        complaint_id=complaints.new_id(), subject_id="s_" + secrets.token_hex(16), push_id=first,
        topic="promotions", campaign_id=campaign_id, variant=None, reason="irrelevant", comment=None,
        status="open", flagged=0, actions="[]", created_at=now.isoformat(), acknowledged_at=None,
        resolved_at=None, resolution=None,
    )  # fmt: skip
    writer.run_sync(lambda conn: complaints.insert(conn, complaint))
    return campaign_id


def timed(runtime: Runtime, call: Callable[[Connection], object], budget: float, most: int) -> list[float]:
    """µs per call of `call` on the writer's connection, within one unit, until the budget (s) is
    spent or `most` calls are made (at least 3)."""

    def unit(conn: Connection) -> list[float]:
        took: list[float] = []
        started = time.perf_counter()
        while len(took) < most and (len(took) < 3 or time.perf_counter() - started < budget):
            t = time.perf_counter()
            call(conn)
            took.append((time.perf_counter() - t) * 1e6)
        return took

    return runtime.store.data.writer.run_sync(unit)


def measure(runtime: Runtime, n: int) -> dict[str, object]:
    now = system_clock()
    started = time.perf_counter()
    cid = build(runtime, n, now)
    built = time.perf_counter() - started
    runtime.store.data.checkpoint()
    t = time.perf_counter()
    runtime.store.data.writer.run_sync(lambda conn: conn.execute(FILL, (cid,)))
    fill_ms = (time.perf_counter() - t) * 1e3
    reader = runtime.store.data.reader()
    row = campaigns.get(reader, cid)
    assert row is not None
    assert row.delivered_since_resume == n, row
    policy = runtime.policy

    old = timed(runtime, lambda conn: old_check(conn, cid, runtime), budget=5.0, most=200)
    new = timed(runtime, lambda conn: maybe_pause_campaign(conn, cid, policy, now), budget=2.0, most=20_000)

    def per_delivery(conn: Connection) -> None:
        campaigns.count_delivery(conn, cid)
        maybe_pause_campaign(conn, cid, policy, now)

    delivery = timed(runtime, per_delivery, budget=2.0, most=20_000)
    rounds = timed(
        runtime, lambda conn: count_deliveries(conn, cid, ROUND, policy.settings, now), budget=2.0, most=2_000
    )
    after = campaigns.get(runtime.store.data.reader(), cid)
    assert after is not None
    assert after.status == "active"
    assert after.delivered_since_resume == n + len(delivery) + ROUND * len(rounds)
    return {
        "n": n,
        "build_s": round(built, 1),
        "fill_ms": round(fill_ms, 1),
        "old_check_first_us": round(old[0]),
        "old_check_us": round(statistics.median(old[1:])),
        "old_calls": len(old),
        "new_check_us": round(statistics.median(new), 1),
        "new_calls": len(new),
        "new_per_delivery_us": round(statistics.median(delivery), 1),
        "round_per_delivery_us": round(statistics.median(rounds) / ROUND, 2),
        "speedup": round(statistics.median(old[1:]) / statistics.median(new)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    args = parser.parse_args()
    machine = {
        "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
    }
    print(f"machine: {machine}", file=sys.stderr)
    results = []
    with tempfile.TemporaryDirectory(prefix="cgw-pause-check-") as tmp:
        data_dir = Path(tmp)
        settings = Settings.from_env({}, data_dir=data_dir, worker_enabled=False, log_level="warning")
        runtime = Runtime(settings)
        try:
            for n in args.sizes:
                result = measure(runtime, n)
                results.append(result)
                r = result
                print(
                    f"N={n:>9,}: old check {r['old_check_us']:>10,} µs/call "
                    f"(first {r['old_check_first_us']:,}), new check {r['new_check_us']:,} µs/call, "
                    f"new per delivery {r['new_per_delivery_us']:,} µs, per delivery in a round of {ROUND} "
                    f"{r['round_per_delivery_us']:,} µs; fill {r['fill_ms']:,} ms",
                    file=sys.stderr,
                )
        finally:
            runtime.close()
            disk = sum(p.stat().st_size for p in data_dir.glob("*.db*"))
    print(msgspec.json.encode({"machine": machine, "disk_bytes": disk, "results": results}).decode())


if __name__ == "__main__":
    main()
