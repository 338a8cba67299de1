"""A provider outage: the relay answers 503 for ~3 s, then recovers.

What must hold (PRODUCT.md, "Delivery": retries with backoff, a circuit breaker per provider,
no accepted push lost):
- while the circuit is open the relay sees no attempts beyond the half-open probes: after the
  request that trips the breaker (plus a short slack for requests already in flight), arrivals
  are at least one cool-down apart;
- after recovery every accepted push is delivered, none dead-lettered.

The breaker's threshold is the default (5 failures); its cool-down is shortened to 2 s with
CGW_DELIVERY_BREAKER_COOLDOWN_SECONDS so the tests see several half-open probes quickly.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock, Headers
from gatewayproc import GatewayProcess
from litestar import Litestar
from litestar.testing import TestClient
from receiver import Hit, Receiver

from gateway.runtime import Runtime
from gateway.settings import Secret, Settings

SECRET = "outage-webhook-secret-0123456789abcdef"
THRESHOLD = Settings().delivery_breaker_threshold
COOLDOWN = 2.0
OUTAGE_SECONDS = 3.0
OBSERVE_AFTER_RECOVERY = 6.0 + COOLDOWN
# Requests that passed the breaker before it tripped arrive within this of the failure that trips
# it, as the relay saw that failure: the gateway trips when it reads the answer, and on a machine
# loaded by other work that came late enough for one to arrive 0.50 s after. Still half a
# cool-down: a round let through the open circuit arrives later.
IN_FLIGHT_SLACK = 1.0
ROUND = Settings().worker_concurrency
PUSHES = ROUND + ROUND // 2  # the default rounds, and more backlog than one, so sends are still to come
USERS = ROUND // 2

# -- the real server against a relay that is down for 3 s ---------------------------------------


@dataclass
class Outage:
    accepted: set[str]
    expected_keys: set[str]
    hits: list[Hit]
    started: float
    recovered: float
    ended: float
    statuses: dict[str, str]


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    root = tmp_path_factory.mktemp("outage")
    with Receiver(SECRET) as relay:
        gw = GatewayProcess(
            root / "data", relay.url, SECRET,
            CGW_WORKER_LEASE_SECONDS="3", CGW_DELIVERY_BACKOFF_SECONDS="0.2",
            CGW_DELIVERY_BREAKER_COOLDOWN_SECONDS=str(COOLDOWN),
        )  # fmt: skip
        gw.setup()
        gw.start()
        # The relay is a thread of this process, and it stamps each arrival when it gets to run.
        # Late in a full run a collection of this process's heap paused it for up to a second,
        # so arrivals were stamped late and bunched (a probe "0.00 s" or "1.13 s" after the
        # last, in two runs out of three): no collections while the relay is watched.
        gc.collect()
        gc.disable()
        try:
            users = [f"out-{i}" for i in range(USERS)]
            devices = gw.setup_users(users, purposes=())
            pushes = [
                {"idempotency_key": f"outage-{i}", "user_id": users[i % USERS], "topic": "transactional",
                 "title": "Payment received", "body": f"CNY {i}.00"}
                for i in range(PUSHES)
            ]  # fmt: skip
            started = time.monotonic()
            recovered = relay.fail_for(OUTAGE_SECONDS)
            results = gw.submit_batch(pushes)
            accepted = {r["push_id"] for r in results if r["outcome"] == "queued"}
            assert len(accepted) == PUSHES
            expected = {
                f"{r['push_id']}:{devices[p['user_id']]}" for r, p in zip(results, pushes, strict=True)
            }
            deadline = recovered + OBSERVE_AFTER_RECOVERY
            while time.monotonic() < deadline and not expected <= relay.delivered_keys():
                time.sleep(0.1)
            ended = time.monotonic()
            statuses = gw.statuses()
        finally:
            gc.enable()
            gw.kill()
        yield Outage(accepted, expected, relay.snapshot(), started, recovered, ended, statuses)


@pytest.mark.slow
def test_relay_sees_only_half_open_probes_while_the_circuit_is_open(outage: Outage) -> None:
    hits = sorted(outage.hits, key=lambda h: h.arrived)
    assert all(h.signature_ok for h in hits)
    failures = [h for h in hits if h.answered == 503]
    assert len(failures) >= THRESHOLD, "the outage never reached the breaker's threshold"
    # A round's sends all leave before the first failure comes back; the breaker must stop the
    # rounds after it, so the relay sees one round's failures and the half-open probes, no more.
    probes = int(OUTAGE_SECONDS / COOLDOWN) + 1
    assert len(failures) <= ROUND + probes, f"{len(failures)} failed: the open circuit let rounds through"
    tripped = failures[THRESHOLD - 1].arrived
    closed = min((h.arrived for h in hits if h.answered == 200 and h.arrived > tripped), default=outage.ended)
    # While open, only probes pass; the first successful probe closes the circuit again.
    later = [h.arrived for h in hits if tripped + IN_FLIGHT_SLACK < h.arrived <= closed]
    print(
        f"\noutage: {len(hits)} requests, {len(failures)} answered 503, first burst "
        f"{len(hits) - len(later)}, {len(later)} after the trip in "
        f"{outage.ended - tripped:.1f} s observed (cool-down {COOLDOWN:.0f} s)"
    )
    previous = tripped
    for arrived in later:
        assert arrived - previous >= COOLDOWN * 0.9, (
            f"a request {arrived - previous:.2f} s after the last one while the circuit was open"
        )
        previous = arrived


@pytest.mark.slow
def test_every_push_is_delivered_soon_after_the_relay_recovers(outage: Outage) -> None:
    delivered = {h.idempotency_key for h in outage.hits if h.answered == 200}
    lost = outage.expected_keys - delivered
    dead = sorted(p for p in outage.accepted if outage.statuses.get(p) == "failed")
    assert not dead, f"{len(dead)} of {len(outage.accepted)} pushes dead-lettered"
    assert not lost, (
        f"{len(lost)} of {len(outage.expected_keys)} not delivered "
        f"{outage.ended - outage.recovered:.1f} s after the relay recovered"
    )


# -- the same in process, deterministically, with the FakeClock ----------------------------------


@pytest.fixture
def relay(clock: FakeClock) -> Iterator[Receiver]:
    with Receiver(SECRET, now=lambda: clock().timestamp()) as server:
        yield server


@pytest.fixture
def settings(data_dir: Path, relay: Receiver) -> Settings:
    return Settings(
        data_dir=data_dir,
        worker_enabled=False,
        delivery_max_attempts=8,
        delivery_backoff_seconds=0.01,
        delivery_breaker_cooldown_seconds=COOLDOWN,
        delivery_webhook_url=relay.url,
        delivery_webhook_secret=Secret(SECRET),
    )


def _setup(client: TestClient[Litestar], as_user: Callable[[str], Headers], users: int) -> None:
    for i in range(users):
        answer = client.post(
            "/v1/me/devices", json={"platform": "webhook", "token": f"relay-token-{i}"},
            headers=as_user(f"br-{i}"),
        )  # fmt: skip
        assert answer.status_code == 201, answer.text


def test_open_circuit_does_not_use_up_delivery_attempts(
    client: TestClient[Litestar],
    runtime: Runtime,
    clock: FakeClock,
    relay: Receiver,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    """Six pushes; the relay fails the first round (tripping the breaker) and is healthy from the
    next second on. The gateway's clock then moves 1 s per round for 2 cool-downs: each push must
    end `delivered`, never `failed` for attempts it did not make."""
    users = THRESHOLD + 1
    _setup(client, as_user, users)
    key = as_key("pushes:write")
    ids: list[str] = []
    for i in range(users):
        body: dict[str, Any] = {
            "idempotency_key": f"br-{i}", "user_id": f"br-{i}", "topic": "transactional",
            "title": "Payment received", "body": "CNY 25.00",
        }  # fmt: skip
        ids.append(client.post("/v1/pushes", json=body, headers=key).json()["push_id"])
    relay.fail_for(3600)
    assert client.blocking_portal.call(runtime.dispatcher.run_once, "w", 50) == users
    assert len(relay.snapshot()) == users  # one real attempt each, all 503: the breaker is open
    relay.fail_for(0)
    for _ in range(int(COOLDOWN) * 2):  # bounded: two cool-downs of one-second rounds
        clock.advance(seconds=1)
        client.blocking_portal.call(runtime.dispatcher.run_once, "w", 50)
        states = [client.get(f"/v1/pushes/{p}", headers=key).json()["status"] for p in ids]
        if "failed" in states or set(states) == {"delivered"}:
            break
    real = len(relay.snapshot())
    assert states == ["delivered"] * users, (
        f"statuses {states} after {real} real requests; attempts "
        f"{[client.get(f'/v1/pushes/{p}', headers=key).json()['attempts'] for p in ids]}"
    )
