"""Web Push goes to several push services (each browser vendor runs its own), and each has a
circuit breaker of its own: one down no longer holds back the pushes to the others.

Before, every Web Push send shared the adapter's one breaker, so five failures at one service
left pushes to a healthy one waiting, and a long outage made the breaker flap as probes reached
the healthy service. Two local push services stand in: one answers 503, the other 201.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support import WebhookRelay
from test_dispatch_adapter_faults import valid_webpush_token
from test_dispatch_rules import SECRET, World, world  # noqa: F401 (the fixture)

from clients.delivery import DeliveryMessage, WebPushAdapter, WebPushConfig
from gateway.services.dispatch import Dispatcher
from gateway.settings import Secret, Settings
from storage.repositories import devices


class PushService:
    """A push service on 127.0.0.1 answering every POST with `status`, counting them."""

    def __init__(self, status: int) -> None:
        self.hits = 0
        self.status = status  # what it answers from now on
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                outer.hits += 1
                self.send_response(outer.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def settings(data_dir: Path, hook: WebhookRelay) -> Settings:
    return Settings(
        data_dir=data_dir, worker_enabled=False, delivery_max_attempts=8, delivery_backoff_seconds=0.01,
        delivery_breaker_threshold=5, delivery_breaker_cooldown_seconds=30,
        delivery_webhook_url=hook.url, delivery_webhook_secret=Secret(SECRET),
    )  # fmt: skip


@pytest.fixture
def services() -> Iterator[tuple[PushService, PushService]]:
    down, up = PushService(503), PushService(201)
    yield down, up
    down.close()
    up.close()


def test_one_push_service_down_does_not_hold_back_another(
    world: World,  # noqa: F811 (the fixture imported above)
    services: tuple[PushService, PushService],
) -> None:
    down, up = services
    vapid = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    adapter = WebPushAdapter(
        WebPushConfig(
            vapid_private_key=Secret(vapid.decode()),
            vapid_subject="mailto:ops@example.com",
            allowed_hosts=("127.0.0.1", "localhost"),
            allow_http=True,
        )
    )
    rt = world.runtime
    dispatcher = Dispatcher(
        rt.store, rt.clock, rt.settings, rt.policy, rt.metrics, {**rt.adapters, "webpush": adapter}
    )
    store = rt.store

    def subscribed(user_id: str, endpoint: str) -> None:
        # Stored as registration stores it, at endpoints only these settings' adapter allows.
        world.user(user_id)
        key = store.directory.resolve(store.pseudonyms.subject_ref(user_id))
        assert key is not None
        token = json.dumps(json.loads(valid_webpush_token()) | {"endpoint": endpoint})
        tag = devices.token_tag(store.device_tags, "webpush", token)
        store.data.writer.run_sync(
            lambda conn: devices.insert(conn, key, "webpush", token, tag, world.clock())
        )

    for i in range(5):
        subscribed(f"firefox{i}", f"http://127.0.0.1:{down.port}/push/{i}")
    for i in range(5):
        world.submit(f"firefox{i}", topic="transactional")
    world.run(dispatcher=dispatcher)  # five failures: that service's circuit opens
    assert down.hits == 5

    subscribed("chrome", f"http://localhost:{up.port}/push/c")
    healthy = world.submit("chrome", topic="transactional")["push_id"]
    world.clock.advance(seconds=1)
    world.run(dispatcher=dispatcher)
    assert up.hits == 1
    shown = world.read(healthy)
    assert shown["status"] == "delivered", shown
    # One of Web Push's two circuits is open, shown under its provider's name.
    registry = rt.metrics.registry
    assert registry.get_sample_value("cgw_open_circuit_breakers", {"provider": "webpush"}) == 1
    assert registry.get_sample_value("cgw_open_circuit_breakers", {"provider": "webhook"}) == 0

    down.status = 201  # the service is back: past the cool-down a probe closes its circuit
    world.clock.advance(seconds=31)
    world.run(dispatcher=dispatcher)
    assert registry.get_sample_value("cgw_open_circuit_breakers", {"provider": "webpush"}) == 0
    world.client.blocking_portal.call(adapter.aclose)


def test_a_services_subdomains_share_its_circuit_and_circuits_stay_few() -> None:
    """Keyed by the endpoint's own host, every subdomain or port a subscription named made a
    circuit of its own, kept for good: as many as users cared to register."""
    vapid = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    adapter = WebPushAdapter(
        WebPushConfig(vapid_private_key=Secret(vapid.decode()), vapid_subject="mailto:ops@example.com")
    )

    def key(endpoint: str) -> str:
        token = json.dumps(json.loads(valid_webpush_token()) | {"endpoint": endpoint})
        message = DeliveryMessage(
            push_id="psh_1", device_id="dev_1", platform="webpush", token=token, topic="transactional",
            title="t", body="b", data={}, campaign_id=None, variant=None,
            expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        )  # fmt: skip
        return adapter.breaker_key(message)

    regions = [
        f"https://{region}.notify.windows.com{port}/w/x"
        for region in ("db5", "zz-1")
        for port in ("", ":443")
    ]
    windows = {key(endpoint) for endpoint in regions}
    assert windows == {"webpush *.notify.windows.com"}
    assert key("https://db5.notify.windows.com:8443/w/x") == "webpush (none)"  # not 443: never sent
    assert key("https://fcm.googleapis.com/fcm/send/x") == "webpush fcm.googleapis.com"
    assert key("https://push.example.com/x") == "webpush (none)"  # never sent: no circuit of its own
    # A made-up subdomain of a service with one host is never sent either: its failures counted
    # against that service's circuit, and one user's five of them held every user's pushes.
    assert key("https://nx.fcm.googleapis.com/fcm/send/x") == "webpush (none)"
    assert key("https://api.push.apple.com/3/device/ab") == "webpush (none)"  # APNs, not Safari's
