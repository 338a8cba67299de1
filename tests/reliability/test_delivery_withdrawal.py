"""Withdrawal racing dispatch: no push re-checked after a withdrawal reaches the relay.

The gateway's semantics (gateway/services/dispatch.py): each push is decided again at dispatch
in one writer unit, serialized with consent changes. A push whose re-check committed BEFORE a
withdrawal is already in flight and may still arrive; a push re-checked AFTER it ends
`rejected` (no_consent) and is never sent.

Scene: USERS users with marketing consent and a webhook device each; one `promotions` push per
user in one batch; the relay answers after 50 ms and the worker sends 8 at a time
(CGW_WORKER_CONCURRENCY=8), so dispatch takes a couple of seconds. Right after the batch is
accepted, half of the users (chosen at random) withdraw marketing consent from 10 threads, at
random moments spread over that time. For each withdrawal W we record `W.answered`: the
monotonic time its HTTP answer (200) came back — the withdrawal had committed by then. The
relay records each request's arrival on the same monotonic clock.

Criteria, for every withdrawn user:
1. exact (the gateway's own record): if their push ended `rejected` — its re-check saw the
   withdrawal — the relay received nothing for it, and the reason is no_consent/marketing; if
   it ended `delivered` its re-check came first, which is allowed. No other end state.
2. by time, as a relay would see it: no request for their push was SENT after `W.answered`.
   A request's send time is bounded by its arrival, so we flag a request when
   `arrival - SLACK > W.answered`, i.e. it arrived later than any request sent before the
   answer could have (SLACK = 0.25 s covers loopback transit, the relay's thread hand-off and
   the few ms between a re-check's commit and its send on a loaded 2-core machine). The
   coarse X-CGW-Timestamp is checked too: a stamp (whole seconds, taken at send time) later
   than the withdrawal answer's wall clock second would prove a send after it.
And for the others: every push of a user who did not withdraw was delivered (none lost).
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from gatewayproc import GatewayProcess
from receiver import Receiver

pytestmark = pytest.mark.slow

SECRET = "withdrawal-webhook-secret-0123456789ab"
USERS = 200
SLACK = 0.25
SPREAD = 1.5  # seconds over which the withdrawals are fired
DRAIN_TIMEOUT = 40.0


def test_no_push_rechecked_after_a_withdrawal_reaches_the_relay(
    tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    rng = random.Random(7)
    with Receiver(SECRET, delay=0.05) as relay:
        gw = GatewayProcess(
            tmp_path / "data", relay.url, SECRET,
            CGW_WORKER_LEASE_SECONDS="3", CGW_DELIVERY_BACKOFF_SECONDS="0.2", CGW_WORKER_CONCURRENCY="8",
        )  # fmt: skip
        gw.setup()
        gw.start()
        try:
            users = [f"wd-{i}" for i in range(USERS)]
            devices = gw.setup_users(users)
            withdrawn = set(rng.sample(users, USERS // 2))
            tokens = {u: gw.user_headers(u) for u in withdrawn}
            pushes = [
                {"idempotency_key": f"wd-{u}", "user_id": u, "topic": "promotions", "title": "Winter sale",
                 "body": "20% off at partner stores today", "data": {"deeplink": "wallet://offers/winter"}}
                for u in users
            ]  # fmt: skip
            results = gw.submit_batch(pushes)
            t0 = time.monotonic()
            assert [r["outcome"] for r in results] == ["queued"] * USERS, results[:3]
            push_of = {u: r["push_id"] for u, r in zip(users, results, strict=True)}
            schedule = sorted((rng.uniform(0, SPREAD), u) for u in withdrawn)
            answered: dict[str, tuple[float, float]] = {}  # user -> (monotonic, wall) of the answer
            lock = threading.Lock()

            def withdraw(at: float, user: str, client: httpx.Client) -> None:
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                answer = client.put(
                    "/v1/me/consents/marketing", json={"granted": False, "notice_version": "v1"},
                    headers=tokens[user],
                )  # fmt: skip
                mono, wall = time.monotonic(), time.time()
                assert answer.status_code == 200, answer.text
                with lock:
                    answered[user] = (mono, wall)

            limits = httpx.Limits(max_connections=10)
            with (
                httpx.Client(base_url=gw.base, timeout=30, limits=limits) as client,
                ThreadPoolExecutor(10) as pool,
            ):
                for future in [pool.submit(withdraw, at, u, client) for at, u in schedule]:
                    future.result(timeout=60)
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while time.monotonic() < deadline and gw.outbox_size():
                time.sleep(0.1)
            statuses = gw.statuses()
            reasons = dict(gw.query("SELECT push_id, final_reasons FROM pushes"))
            dispatch_seconds = time.monotonic() - t0
        finally:
            gw.kill()
        hits = relay.snapshot()

    assert len(answered) == len(withdrawn)
    by_push: dict[str, list[Any]] = {}
    for h in hits:
        by_push.setdefault(h.push_id, []).append(h)
    assert all(h.signature_ok for h in hits)
    assert all(h.answered == 200 for h in hits)

    stopped, in_flight, late = [], [], []
    lead = []  # for pushes delivered despite a withdrawal: arrival minus withdrawal answer
    for user in sorted(withdrawn):
        push_id = push_of[user]
        mono, wall = answered[user]
        got = by_push.get(push_id, [])
        status = statuses[push_id]
        if status == "rejected":
            stopped.append(push_id)
            assert got == [], f"{push_id} was rejected at dispatch yet reached the relay"
            assert reasons[push_id] == '[{"code":"no_consent","purpose":"marketing"}]', reasons[push_id]
        else:
            assert status == "delivered", (push_id, status)
            in_flight.append(push_id)
        for h in got:
            lead.append(h.arrived - mono)
            if h.arrived - SLACK > mono or int(h.timestamp) > int(wall):
                late.append((push_id, round(h.arrived - mono, 3), h.timestamp, int(wall)))
    others = [push_of[u] for u in users if u not in withdrawn]
    not_delivered = [p for p in others if statuses[p] != "delivered" or p not in by_push]
    user_of = {p: u for u, p in push_of.items()}
    wrong_device = [h for h in hits if devices[user_of[h.push_id]] != h.device_id]
    rate = len(hits) / dispatch_seconds
    summary = (
        f"withdrawal race: {len(withdrawn)} withdrawals over {SPREAD} s, {len(stopped)} pushes stopped "
        f"at dispatch, {len(in_flight)} already in flight (arrived up to {max(lead, default=0):+.3f} s "
        f"after the withdrawal answer), {len(late)} sent after it; {len(hits)} deliveries in "
        f"{dispatch_seconds:.1f} s ({rate:.0f}/s at 8-way concurrency with a 50 ms relay)"
    )
    print("\n" + summary)
    request.node.user_properties.append(("withdrawal_summary", summary))
    assert not late, f"requests sent after the withdrawal answered: {late[:5]}"
    assert stopped, "no withdrawal beat its push's re-check: the race was not exercised"
    assert not not_delivered, f"{len(not_delivered)} pushes of users who kept consent were not delivered"
    assert not wrong_device
