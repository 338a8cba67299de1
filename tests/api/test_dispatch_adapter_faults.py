"""Dispatch when one device's adapter cannot send: the rest of the round is settled anyway.

Driven as in test_dispatch_rules: `worker_enabled=False`, one `run_once` per round on the app's
loop, the gateway's FakeClock moved between rounds. Devices of platform `webhook` go to a real
local receiver; Web Push is configured with a real VAPID key, so `webpush` devices go through the
real `WebPushAdapter`.

The broken Web Push device is written straight into the devices table: registration now refuses
such a subscription, but devices registered before that check are still in the database. Its
keys stop the adapter before any network I/O (a push service URL is never reached). The
"adapter raises" case uses a raising stand-in for the Web Push adapter, driven by the real
Dispatcher, because no real adapter raises any more.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import FakeClock, Headers
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from litestar import Litestar
from litestar.testing import TestClient
from support import WebhookRelay

from clients.delivery import DeliveryMessage, DeliveryResult, WebhookAdapter, WebhookConfig
from gateway.runtime import Runtime
from gateway.services.dispatch import Dispatcher
from gateway.settings import Secret, Settings
from storage.repositories import devices

Client = TestClient[Litestar]
Json = dict[str, Any]
SECRET = "adapter-faults-webhook-secret-0123456789"
MARK = "Qx9FAULTMARK"  # inside the raising adapter's exception text: must not reach the logs
BROKEN_WEBPUSH = json.dumps(  # the review's reproduction: pywebpush raised IndexError on it
    {"endpoint": "https://fcm.googleapis.com/fcm/send/x", "keys": {"p256dh": "\u00e9", "auth": "x"}}
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def valid_webpush_token(device: str = "") -> str:
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    keys = {"p256dh": _b64(point), "auth": _b64(os.urandom(16))}
    return json.dumps({"endpoint": f"https://fcm.googleapis.com/fcm/send/{MARK}{device}", "keys": keys})


@pytest.fixture
def settings(data_dir: Path, tmp_path: Path, hook: WebhookRelay) -> Settings:
    vapid = tmp_path / "vapid.pem"
    vapid.write_text(
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    return Settings(
        data_dir=data_dir,
        worker_enabled=False,
        delivery_max_attempts=3,
        delivery_backoff_seconds=0.01,
        delivery_webhook_url=hook.url,
        delivery_webhook_secret=Secret(SECRET),
        webpush_vapid_key_file=vapid,
        webpush_vapid_subject="mailto:push-ops@example.com",
    )


class Raising:
    """Stands in for the Web Push adapter and breaks the adapter contract: it raises."""

    name = "webpush"

    def __init__(self) -> None:
        self.calls = 0

    async def send(self, message: DeliveryMessage) -> DeliveryResult:
        self.calls += 1
        raise RuntimeError(f"cannot send {message.token} {message.body}")

    async def aclose(self) -> None:
        """Nothing to close."""


@dataclass
class World:
    client: Client
    runtime: Runtime
    clock: FakeClock
    hook: WebhookRelay
    as_user: Callable[[str], Headers]
    key: Headers = field(default_factory=dict)
    _seq: int = 0

    def user(self, user_id: str, platform: str, token: str) -> str:
        """A user with one device registered over HTTP; returns its device_id."""
        answer = self.client.post(
            "/v1/me/devices", json={"platform": platform, "token": token}, headers=self.as_user(user_id)
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["device_id"])

    def legacy_user(self, user_id: str, platform: str, token: str) -> str:
        """A user whose device was stored before registration checked its token."""
        answer = self.client.put(
            "/v1/me/consents/marketing", json={"granted": True, "notice_version": "v1"},
            headers=self.as_user(user_id),
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        store = self.runtime.store
        key = store.directory.resolve(store.pseudonyms.subject_ref(user_id))
        assert key is not None
        return store.data.writer.run_sync(
            lambda conn: devices.insert(
                conn,
                key,
                platform,
                token,
                devices.token_tag(store.device_tags, platform, token),
                self.clock(),
            )
        )

    def submit(self, user_id: str) -> str:
        self._seq += 1
        body = {
            "idempotency_key": f"idem-{self._seq}", "user_id": user_id, "topic": "transactional",
            "title": "Payment received", "body": f"CNY 25.00 {MARK}",
        }  # fmt: skip
        answer = self.client.post("/v1/pushes", json=body, headers=self.key)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outcome"] == "queued", answer.text
        return str(answer.json()["push_id"])

    def run(self, dispatcher: Dispatcher | None = None) -> int:
        d = dispatcher or self.runtime.dispatcher
        claimed: int = self.client.blocking_portal.call(d.run_once, "test-worker", 100)
        return claimed

    def read(self, push_id: str) -> Json:
        answer = self.client.get(f"/v1/pushes/{push_id}", headers=self.key)
        assert answer.status_code == 200, answer.text
        got: Json = answer.json()
        return got

    def device_status(self, user_id: str) -> str:
        answer = self.client.get("/v1/me/devices", headers=self.as_user(user_id))
        assert answer.status_code == 200, answer.text
        (device,) = answer.json()
        return str(device["status"])

    def dispatcher(self, adapter: Raising, **changes: Any) -> Dispatcher:
        rt = self.runtime
        settings = msgspec.structs.replace(rt.settings, **changes)
        return Dispatcher(
            rt.store, rt.clock, settings, rt.policy, rt.metrics, {**rt.adapters, "webpush": adapter}
        )


@pytest.fixture
def world(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    hook: WebhookRelay,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> World:
    return World(client, runtime, clock, hook, as_user, key=as_key("pushes:write"))


def test_a_subscription_that_cannot_be_encrypted_to_disables_its_device_and_spares_the_round(
    world: World,
) -> None:
    """Regression: pywebpush raised IndexError on these keys, the round's gather raised, and the
    other user's push stayed `sending`, unrecorded, to be sent again at each lease expiry."""
    world.legacy_user("wendy", "webpush", BROKEN_WEBPUSH)
    world.user("victor", "webhook", "relay-victor-device-42")
    broken = world.submit("wendy")
    fine = world.submit("victor")

    assert world.run() == 2

    assert world.read(fine)["status"] == "delivered"
    assert world.hook.push_ids == [fine]
    got = world.read(broken)
    assert (got["status"], got["attempts"]) == ("failed", 1)
    assert world.device_status("wendy") == "disabled"
    world.clock.advance(seconds=world.runtime.settings.worker_lease_seconds + 1)
    assert world.run() == 0  # nothing left leased to come back
    assert world.hook.push_ids == [fine]


def test_an_adapter_that_raises_costs_only_its_own_push_a_retry(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.user("wendy", "webpush", valid_webpush_token())
    world.user("victor", "webhook", "relay-victor-device-42")
    broken = world.submit("wendy")
    fine = world.submit("victor")
    raising = Raising()
    dispatcher = world.dispatcher(raising)

    with caplog.at_level(logging.ERROR, logger="gateway.dispatch"):
        assert world.run(dispatcher) == 2

    assert world.read(fine)["status"] == "delivered"
    assert world.hook.push_ids == [fine]
    got = world.read(broken)
    assert (got["status"], got["attempts"]) == ("sending", 1)  # a retry, rescheduled with backoff
    assert world.device_status("wendy") == "active"  # not the token's fault
    (record,) = [r for r in caplog.records if r.getMessage() == "delivery adapter raised"]
    assert (getattr(record, "push_id", None), getattr(record, "adapter", None)) == (broken, "webpush")
    assert MARK not in caplog.text
    assert not any(MARK in str(value) for r in caplog.records for value in vars(r).values())
    # Retried like any transient failure, then dead-lettered: never re-sent without end.
    for _ in range(2):
        world.clock.advance(seconds=1)
        assert world.run(dispatcher) == 1
    assert (world.read(broken)["status"], raising.calls) == ("failed", 3)
    world.clock.advance(seconds=world.runtime.settings.worker_lease_seconds + 1)
    assert world.run(dispatcher) == 0
    assert (raising.calls, world.hook.push_ids) == (3, [fine])


def test_an_adapter_that_raises_counts_against_its_circuit_breaker(world: World) -> None:
    """With a threshold of one, the first raise opens the circuit: the retry waits for the
    cool-down instead of calling the adapter again."""
    world.user("wendy", "webpush", valid_webpush_token())
    world.user("victor", "webhook", "relay-victor-device-42")
    broken = world.submit("wendy")
    fine = world.submit("victor")
    raising = Raising()
    dispatcher = world.dispatcher(
        raising, delivery_breaker_threshold=1, delivery_breaker_cooldown_seconds=30.0
    )

    assert world.run(dispatcher) == 2
    assert world.read(fine)["status"] == "delivered"
    world.clock.advance(seconds=1)  # the backoff (base 0.01 s) has passed, the cool-down has not
    assert world.run(dispatcher) == 1
    assert raising.calls == 1
    assert world.read(broken)["attempts"] == 1  # skipped by the open circuit: not an attempt


class Recovering(Raising):
    """Raises until `back` is set, then delivers: a provider's outage and its end."""

    back = False

    async def send(self, message: DeliveryMessage) -> DeliveryResult:
        if self.back:
            self.calls += 1
            return DeliveryResult(status="delivered")
        return await super().send(message)


def test_a_provider_outage_and_its_end_are_logged_once_each(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator reading the logs learned nothing of an outage: the circuit opening and
    closing showed only in a gauge. One line each, naming the adapter, none per push or probe."""
    world.user("wendy", "webpush", valid_webpush_token())
    pushes = [world.submit("wendy") for _ in range(3)]
    provider = Recovering()
    dispatcher = world.dispatcher(
        provider, delivery_breaker_threshold=1, delivery_breaker_cooldown_seconds=30.0
    )

    def said() -> list[tuple[str, str, object]]:
        return [
            (r.levelname, r.getMessage(), getattr(r, "adapter", None))
            for r in caplog.records
            if r.getMessage().startswith("provider circuit")
        ]

    with caplog.at_level(logging.INFO, logger="gateway.dispatch"):
        assert world.run(dispatcher) == 3  # the first send opens it; the others wait
        world.clock.advance(seconds=1)
        assert world.run(dispatcher) == 1  # the raised one's retry; still open: no line for it
        assert said() == [("WARNING", "provider circuit opened: pushes to it wait", "webpush")]
        provider.back = True
        world.clock.advance(seconds=31)
        world.run(dispatcher)  # the probe gets through and closes it
        world.clock.advance(seconds=31)
        world.run(dispatcher)
    assert said()[1:] == [("INFO", "provider circuit closed: delivering again", "webpush")]
    assert [world.read(p)["status"] for p in pushes] == ["delivered"] * 3


def test_a_failed_probe_spends_no_attempt_of_the_push_it_carried(world: World) -> None:
    """Each cool-down's probe is a real push, and its failure cost that push an attempt: with
    the provider down minutes, a small backlog ended `failed` with hours of TTL left, though the
    README says pushes wait an open circuit out without using up their attempts."""
    world.user("wendy", "webpush", valid_webpush_token())
    push = world.submit("wendy")
    provider = Raising()  # down: every call fails
    dispatcher = world.dispatcher(
        provider,
        delivery_breaker_threshold=1,
        delivery_breaker_cooldown_seconds=30.0,
        delivery_max_attempts=3,
    )
    assert world.run(dispatcher) == 1  # the first send fails and opens the circuit: one attempt
    for _ in range(6):  # six cool-downs, six probes, all failed
        world.clock.advance(seconds=31)
        world.run(dispatcher)
    assert provider.calls == 7
    shown = world.read(push)
    assert (shown["status"], shown["attempts"]) == ("sending", 1)  # still waiting, within its TTL
    provider_back = Recovering()
    provider_back.back = True
    world.clock.advance(seconds=31)
    world.run(world.dispatcher(provider_back, delivery_breaker_threshold=1))
    assert world.read(push)["status"] == "delivered"


class DownButRefusingLocally(Raising):
    """A push service that is down, behind the real Web Push adapter's own refusal of a
    subscription it cannot encrypt to (made before any call)."""

    def __init__(self, real: Any) -> None:
        super().__init__()
        self._real = real

    async def send(self, message: DeliveryMessage) -> DeliveryResult:
        if message.token == BROKEN_WEBPUSH:
            result: DeliveryResult = await self._real.send(message)
            return result
        self.calls += 1
        return DeliveryResult(status="retry", provider_status=503)


def test_a_send_refused_without_asking_the_provider_is_not_the_circuits_probe(world: World) -> None:
    """After the cool-down, the one probe went to a subscription the adapter refused itself: no
    call, yet counted a success, it closed the circuit, and the sends after it all went to the
    provider still down, an attempt each. Now it gives the probe to the next send."""
    world.user("wendy", "webpush", valid_webpush_token())
    world.user("walt", "webpush", valid_webpush_token("-walt"))  # an endpoint of its own
    world.legacy_user("bella", "webpush", BROKEN_WEBPUSH)
    provider = DownButRefusingLocally(world.runtime.adapters["webpush"])
    dispatcher = world.dispatcher(
        provider, delivery_breaker_threshold=2, delivery_breaker_cooldown_seconds=30.0,
        delivery_max_attempts=1, worker_concurrency=1,
    )  # fmt: skip
    world.submit("wendy")
    world.submit("walt")
    assert world.run(dispatcher) == 2  # two failures: open
    world.clock.advance(seconds=31)
    refused, probe, waits = world.submit("bella"), world.submit("wendy"), world.submit("walt")

    assert world.run(dispatcher) == 3

    assert world.read(refused)["status"] == "failed"
    assert world.device_status("bella") == "disabled"
    assert provider.calls == 3  # the probe failed and opened the circuit again
    # A failed probe spends no attempt of its push: it waits the circuit out with the others.
    assert (world.read(probe)["status"], world.read(probe)["attempts"]) == ("sending", 0)
    got = world.read(waits)
    assert (got["status"], got["attempts"]) == ("sending", 0)  # waits for the next probe


def test_sends_waiting_for_a_connection_ask_the_breaker_when_they_get_one(world: World) -> None:
    """Every send of a round asked the breaker at the round's start, then queued for one of the
    client's connections: when the circuit opened on the first wave, the sends queued behind it
    still went to the provider known to be down (with a hung one, a timeout each, wave after
    wave, for longer than the lease)."""
    world.hook.answers = [(503, {})]
    users = [f"user-{i}" for i in range(10)]
    for user_id in users:
        world.user(user_id, "webhook", f"relay-{user_id}-device")
    pushes = [world.submit(user_id) for user_id in users]
    connections, threshold = 2, 2
    rt = world.runtime
    settings = msgspec.structs.replace(
        rt.settings, worker_concurrency=connections, delivery_breaker_threshold=threshold,
        delivery_breaker_cooldown_seconds=30.0,
    )  # fmt: skip
    relay = WebhookAdapter(WebhookConfig(url=world.hook.url, secret=Secret(SECRET), connections=2))
    dispatcher = Dispatcher(rt.store, rt.clock, settings, rt.policy, rt.metrics, {"webhook": relay})
    try:
        assert world.run(dispatcher) == len(pushes)
    finally:
        world.client.blocking_portal.call(relay.aclose)

    # The first wave, and at most one send let through as a connection freed before the
    # threshold was reached; the rest were refused by the open circuit, unsent.
    assert len(world.hook.received) <= threshold + connections - 1
    attempts = sorted(world.read(p)["attempts"] for p in pushes)
    assert attempts.count(0) >= len(pushes) - (threshold + connections - 1)
