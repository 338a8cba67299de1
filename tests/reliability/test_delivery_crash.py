"""Crash at any point: a real gateway under load is SIGKILLed again and again and restarted.

PRODUCT.md, "Delivery": a crash at any point loses no accepted push and delivers none twice to
the provider for the same push_id and device (repeats carry the same Idempotency-Key, so the
relay can drop them).

Setup keeps the load large and the setup small: USERS users with one webhook device each and
PER_USER transactional pushes each (transactional pushes skip consent and caps). The pushes are
submitted in chunks through POST /v1/pushes/batch, one chunk per life of the server, from a
thread racing the kill, so kills also land during submissions; a chunk whose answer was lost
is submitted again with the same idempotency keys after the restart (the batch is one
transaction: all of it was recorded, or none). Accepted = every push_id a batch answer named.

The relay takes RELAY_SECONDS over each answer, so that a round's sends are still waiting for
their answers during much of each life, and kills land there too, not only on an idle server
that has delivered all it had: a run where no kill cut a delivery short (no repeat, no request
cut off mid-body) tested no crash of delivery, and fails.

After the last kill the server runs until the outbox is empty (bounded), then:
- 0 lost: every accepted push reached the relay (a 2xx answer) for its device;
- 0 unexpected: nothing reached the relay that was not accepted;
- the only repeats are redeliveries with the same Idempotency-Key and the same body, counted
  and reported: pytest -s prints it, and it goes into the test's report as a user property
  (what `record_property` does; appended to `request.node.user_properties` directly because the
  `record_property` fixture warns under junit_family=xunit2, an error with filterwarnings=error,
  whenever someone runs with --junitxml; use -o junit_family=xunit1 to see it in the XML).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import httpx
import pytest
from gatewayproc import GatewayProcess
from receiver import Receiver

pytestmark = pytest.mark.slow

SECRET = "crash-webhook-secret-0123456789abcdef"
USERS = 200
PER_USER = 10
CHUNKS = 10  # one per life of the server: 10 kills
KILLS = CHUNKS
DRAIN_TIMEOUT = 60.0
RELAY_SECONDS = 0.3


def _chunks(total: int, parts: int) -> list[range]:
    size = -(-total // parts)
    return [range(i, min(i + size, total)) for i in range(0, total, size)]


def test_sigkill_under_load_loses_nothing_and_repeats_only_with_the_same_key(
    tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    rng = random.Random(20261123)
    with Receiver(SECRET, delay=RELAY_SECONDS) as relay:
        gw = GatewayProcess(
            tmp_path / "data", relay.url, SECRET,
            CGW_WORKER_LEASE_SECONDS="3", CGW_DELIVERY_BACKOFF_SECONDS="0.2",
        )  # fmt: skip
        gw.setup()
        gw.start()
        users = [f"crash-{i}" for i in range(USERS)]
        try:
            devices = gw.setup_users(users, purposes=())
        except BaseException:
            gw.kill()
            raise
        pushes: list[dict[str, Any]] = [
            {"idempotency_key": f"crash-{i}", "user_id": users[i % USERS], "topic": "transactional",
             "title": "Payment received", "body": f"CNY {i}.00", "data": {"deeplink": f"wallet://orders/{i}"}}
            for i in range(USERS * PER_USER)
        ]  # fmt: skip
        pending = [list(r) for r in _chunks(len(pushes), CHUNKS)]
        accepted: dict[str, str] = {}  # push_id -> expected idempotency key
        lost_answers = 0
        kill_points: list[float] = []
        restarts: list[float] = []

        def submit(indices: list[int], out: dict[str, Any]) -> None:
            try:
                out["results"] = gw.submit_batch([pushes[i] for i in indices], timeout=30)
            except (httpx.TransportError, AssertionError) as exc:  # killed while submitting
                out["error"] = exc

        started = time.monotonic()
        try:
            for kill in range(KILLS):
                if kill:
                    restarts.append(gw.start())
                indices = pending.pop(0) if pending else []
                out: dict[str, Any] = {}
                thread = threading.Thread(target=submit, args=(indices, out), daemon=True)
                if indices:
                    thread.start()
                pause = rng.uniform(0.2, 1.5)
                time.sleep(pause)
                gw.kill()
                kill_points.append(pause)
                if indices:
                    thread.join(timeout=30)
                    assert not thread.is_alive()
                    if "results" in out:
                        for i, r in zip(indices, out["results"], strict=True):
                            assert r["outcome"] == "queued", r
                            accepted[r["push_id"]] = f"{r['push_id']}:{devices[pushes[i]['user_id']]}"
                    else:
                        lost_answers += 1
                        pending.insert(0, indices)  # same keys again after the restart
            # The last life: submit what is left (replays answer the original push_ids), then drain.
            restarts.append(gw.start())
            for indices in pending:
                for i, r in zip(indices, gw.submit_batch([pushes[i] for i in indices]), strict=True):
                    assert r["outcome"] == "queued", r
                    accepted[r["push_id"]] = f"{r['push_id']}:{devices[pushes[i]['user_id']]}"
            chaos = time.monotonic() - started
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while time.monotonic() < deadline:
                if gw.outbox_size() == 0 and set(accepted.values()) <= relay.delivered_keys():
                    break
                time.sleep(0.2)
            drained = time.monotonic() - started
            statuses = gw.statuses()
        finally:
            gw.kill()

        hits = relay.snapshot()

    truncated = sum(not h.complete for h in hits)
    delivered = [h for h in hits if 200 <= h.answered < 300]
    got = Counter(h.idempotency_key for h in delivered)
    expected = set(accepted.values())
    lost = expected - set(got)
    unexpected = set(got) - expected
    by_push = defaultdict(set)
    for h in delivered:
        by_push[(h.push_id, h.device_id)].add((h.idempotency_key, h.raw))
    redeliveries = sum(n - 1 for n in got.values())
    rate = len(delivered) / drained
    summary = (
        f"crash: {len(accepted)} accepted, {len(delivered)} requests delivered, {len(lost)} lost, "
        f"{len(unexpected)} unexpected, {redeliveries} redeliveries (same Idempotency-Key) over "
        f"{len(got) and sum(1 for n in got.values() if n > 1)} keys; {len(kill_points)} SIGKILLs "
        f"({', '.join(f'{p:.2f}' for p in kill_points)} s after start), {lost_answers} batch answers "
        f"lost and replayed; restarts took {min(restarts):.2f}-{max(restarts):.2f} s; chaos "
        f"{chaos:.1f} s, drained after {drained:.1f} s ({rate:.0f} deliveries/s overall)"
    )
    summary += f"; {truncated} requests cut off mid-body by a kill"
    print("\n" + summary)
    request.node.user_properties.append(("redeliveries", redeliveries))
    request.node.user_properties.append(("crash_summary", summary))

    assert len(accepted) == len(pushes)
    assert gw.starts >= KILLS + 1
    assert all(h.signature_ok for h in hits if h.complete)
    assert not lost, f"{len(lost)} accepted pushes never reached the relay: {sorted(lost)[:5]}"
    assert not unexpected, f"{len(unexpected)} deliveries that were never accepted: {sorted(unexpected)[:5]}"
    for (push_id, device_id), copies in by_push.items():
        keys = {k for k, _ in copies}
        assert keys == {f"{push_id}:{device_id}"}, f"{push_id}: repeats with other keys {keys}"
        assert len({raw for _, raw in copies}) == 1, f"{push_id}: a repeat with another body"
    assert redeliveries + truncated > 0, "no kill landed while deliveries were in flight"
    assert all(statuses[p] == "delivered" for p in accepted), Counter(statuses[p] for p in accepted)
