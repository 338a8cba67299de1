"""The SDK against the real gateway app: answers, refusals, campaigns, complaints and retries.

The gateway is `create_app` on a real data dir (the `client` fixture), reached two ways: through
the TestClient itself, injected as the SDK's httpx client, and over TCP on 127.0.0.1 through
`OverTcp`, a small relay in front of it that can be down at first or cut an answer after the
gateway has acted. The 503s are the gateway's own: its data database is capped at its current
size, as `tests/api/test_storage_full.py` does.

The gateway decides with the FakeClock (2026-11-23 10:00 UTC, outside default quiet hours).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import daytime_zone, free_port, serve_process

from clients.sdk import (
    AsyncConsentGateway,
    Conflict,
    ConsentGateway,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PushAnswer,
    PushRequest,
    RetryPolicy,
    Unavailable,
    Unprocessable,
    Unreachable,
)
from gateway.runtime import Runtime
from storage.connections import Connection

Client = TestClient[Litestar]
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, deadline=5.0)
CONSENT = {"granted": True, "notice_version": "v1"}


class OverTcp:
    """The gateway app on a real 127.0.0.1 port. Each request is passed to the app through the
    TestClient; the first `cut` answers are then withheld and the connection closed, as when a
    network drops an answer the gateway has already acted on. `bodies` keeps what arrived."""

    def __init__(self, app: Client, port: int = 0, cut: int = 0) -> None:
        self.bodies: list[bytes] = []
        self._cut = cut
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.bodies.append(body)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                answer = app.request(self.command, self.path, content=body, headers=headers)
                if outer._cut:
                    outer._cut -= 1
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(answer.status_code)
                self.send_header("content-type", answer.headers.get("content-type", "application/json"))
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_GET(self) -> None:
                self._relay()

            def do_POST(self) -> None:
                self._relay()

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class Later:
    """A gateway port that refuses connections until the SDK's `up_on`-th attempt, which brings
    the relay up just before it connects: down then up, with no race against the backoff."""

    def __init__(self, app: Client, up_on: int, cut: int = 0) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.attempts = 0
        self.relay: OverTcp | None = None
        self._app, self._up_on, self._cut = app, up_on, cut

    def on_request(self, request: httpx.Request) -> None:
        self.attempts += 1
        if self.attempts == self._up_on:
            self.relay = OverTcp(self._app, self.port, self._cut)

    async def async_on_request(self, request: httpx.Request) -> None:
        self.on_request(request)

    def close(self) -> None:
        if self.relay is not None:
            self.relay.close()


@pytest.fixture
def key(as_key: Callable[..., Headers]) -> str:
    """A service API key with the scopes the push API asks for."""
    header = as_key("pushes:write", "campaigns:write", "campaigns:read", "complaints:write")
    return header["Authorization"].removeprefix("Bearer ")


@pytest.fixture
def tcp(client: Client) -> Iterator[OverTcp]:
    relay = OverTcp(client)
    yield relay
    relay.close()


def onboard(client: Client, as_user: Callable[[str], Headers], user_id: str, *purposes: str) -> Headers:
    headers = as_user(user_id)
    for purpose in purposes:
        assert client.put(f"/v1/me/consents/{purpose}", json=CONSENT, headers=headers).status_code == 200
    device = {"platform": "fcm", "token": f"fcm-token-{user_id}"}
    assert client.post("/v1/me/devices", json=device, headers=headers).status_code == 201
    return headers


def stored_pushes(runtime: Runtime) -> int:
    return int(runtime.store.data.reader().execute("SELECT count(*) FROM pushes").fetchone()[0])


PAID_FIELDS: dict[str, Any] = {
    "user_id": "sdk-ann",
    "topic": "transactional",
    "title": "Payment received",
    "body": "Your payment of 12.00 went through",
}


def paid(key: str, **fields: Any) -> PushRequest:
    return PushRequest(**(PAID_FIELDS | fields), idempotency_key=key)


# -- answers ------------------------------------------------------------------------------------


def test_pushes_over_tcp_queued_rejected_dry_run_and_replayed(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], key: str, tcp: OverTcp
) -> None:
    onboard(client, as_user, "sdk-ann")
    with ConsentGateway(tcp.base, key) as gateway:
        queued = gateway.push(
            idempotency_key="order-1-paid",
            user_id="sdk-ann",
            topic="transactional",
            title="Payment received",
            body="Your payment of 12.00 went through",
        )
        assert queued.outcome == "queued"
        assert queued.reasons == []
        assert queued.push_id is not None
        assert queued.push_id.startswith("psh_")
        assert queued.expires_at == datetime.fromisoformat("2026-11-24T10:00:00+00:00")

        again = gateway.push(
            idempotency_key="order-1-paid",
            user_id="sdk-ann",
            topic="transactional",
            title="Payment received",
            body="Your payment of 12.00 went through",
            ttl_seconds=86400,  # the default spelled out is the same push
        )
        assert again == queued

        rejected = gateway.push(
            idempotency_key="promo-1", user_id="sdk-ann", topic="promotions", title="Sale", body="20% off"
        )
        assert rejected.outcome == "rejected"
        assert {"code": "no_consent", "purpose": "marketing"} in rejected.reasons

        before = stored_pushes(runtime)
        dry = gateway.push(
            idempotency_key="dry-1",
            user_id="sdk-ann",
            topic="transactional",
            title="t",
            body="b",
            dry_run=True,
        )
        assert (dry.outcome, dry.push_id) == ("queued", None)
        assert stored_pushes(runtime) == before

        read = gateway.get_push(queued.push_id)
        assert (read.push_id, read.status, read.outcome, read.attempts) == (
            queued.push_id,
            "queued",
            "queued",
            0,
        )
        assert read.topic == "transactional"
        assert read.created_at.tzinfo is not None


def test_refusals_raise_their_kind_naming_the_field(
    client: Client, as_user: Callable[[str], Headers], as_key: Callable[..., Headers], key: str
) -> None:
    onboard(client, as_user, "sdk-ann")
    gateway = ConsentGateway(str(client.base_url), key, client=client)
    gateway.push(**PAID_FIELDS, idempotency_key="k-1")

    with pytest.raises(Unprocessable) as reused:
        gateway.push(**(PAID_FIELDS | {"title": "Another title"}), idempotency_key="k-1")
    assert (reused.value.status_code, reused.value.field) == (422, "idempotency_key")
    with pytest.raises(Unprocessable) as in_batch:
        gateway.push_batch([paid("k-1", title="Another title")])
    assert in_batch.value.field == "pushes[0].idempotency_key"

    with pytest.raises(InvalidInput) as bad:
        gateway.push(**PAID_FIELDS, idempotency_key="k-2", ttl_seconds=0)
    assert (bad.value.status_code, bad.value.field) == (400, "ttl_seconds")

    with pytest.raises(InvalidInput) as both:
        gateway.push(**PAID_FIELDS, idempotency_key="k-3", subject_ref="sub_" + "a" * 52)
    assert both.value.field == "user_id"

    with pytest.raises(NotAuthenticated) as unknown:
        ConsentGateway(str(client.base_url), "cgw_not_a_key", client=client).get_push("psh_" + "0" * 24)
    assert unknown.value.status_code == 401

    reader = as_key("campaigns:read")["Authorization"].removeprefix("Bearer ")
    with pytest.raises(Forbidden):
        ConsentGateway(str(client.base_url), reader, client=client).push_batch([paid("k-4")])

    with pytest.raises(NotFound):
        gateway.get_push("psh_" + "0" * 24)
    with pytest.raises(ValueError, match=r"^push_id: "):
        gateway.get_push("../campaigns/cmp_0000000000000000")  # never sent: no id of the gateway's


# -- batches, campaigns, complaints -------------------------------------------------------------


def test_campaign_batch_stats_pause_and_resume(
    client: Client, as_user: Callable[[str], Headers], key: str, tcp: OverTcp
) -> None:
    for user in ("sdk-bo", "sdk-cy", "sdk-di"):
        onboard(client, as_user, user, "marketing")
    with ConsentGateway(tcp.base, key) as gateway:
        campaign_id = gateway.create_campaign("Winter sale", "promotions").campaign_id
        assert campaign_id.startswith("cmp_")

        pushes = [
            PushRequest(
                idempotency_key=f"winter-{user}",
                user_id=user,
                topic="promotions",
                title="Winter sale",
                body="20% off today",
                campaign_id=campaign_id,
                variant=variant,
            )
            for user, variant in (("sdk-bo", "A"), ("sdk-cy", "B"), ("nobody", "B"))
        ]
        batch = gateway.push_batch(pushes)
        assert [r.outcome for r in batch.results] == ["queued", "queued", "rejected"]
        assert batch.results[2].reasons == [{"code": "subject_unknown"}]
        assert batch.counts["queued"] == 2
        assert batch.counts["subject_unknown"] == 1

        stats = gateway.campaign_stats(campaign_id, metric="open_rate")
        assert (stats.campaign_id, stats.metric) == (campaign_id, "open_rate")
        assert stats.variants["A"].submitted == 1
        assert stats.variants["B"].rejected_by_reason == {"subject_unknown": 1}
        assert [(c.control, c.variant) for c in stats.comparisons] == [("A", "B")]

        paused = gateway.pause_campaign(campaign_id)
        assert (paused.status, paused.pause_reason is not None) == ("paused", True)
        assert gateway.get_campaign(campaign_id).status == "paused"
        held = gateway.push(
            idempotency_key="winter-di",
            user_id="sdk-di",
            topic="promotions",
            title="Winter sale",
            body="20% off today",
            campaign_id=campaign_id,
        )
        assert {"code": "campaign_paused"} in held.reasons
        resumed = gateway.resume_campaign(campaign_id)
        assert (resumed.status, resumed.paused_at) == ("active", None)


def test_complaint_acknowledged_then_resolved_and_a_second_step_conflicts(
    client: Client, as_user: Callable[[str], Headers], key: str, tcp: OverTcp
) -> None:
    user = onboard(client, as_user, "sdk-eve", "marketing")
    made = client.post("/v1/me/complaints", json={"reason": "too_frequent"}, headers=user)
    assert made.status_code == 201, made.text
    complaint_id = made.json()["complaint_id"]

    with ConsentGateway(tcp.base, key) as gateway:
        acknowledged = gateway.acknowledge_complaint(complaint_id)
        assert (acknowledged.status, acknowledged.reason) == ("acknowledged", "too_frequent")
        assert acknowledged.acknowledged_at is not None
        with pytest.raises(Conflict) as twice:
            gateway.acknowledge_complaint(complaint_id)
        assert twice.value.field == "status"
        resolved = gateway.resolve_complaint(complaint_id, "Frequency cap lowered for this user")
        assert (resolved.status, resolved.resolution) == ("resolved", "Frequency cap lowered for this user")
    assert len(tcp.bodies) == 3  # the conflict was not retried


# -- retries ------------------------------------------------------------------------------------


def test_a_gateway_down_at_first_gets_the_push_once(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], key: str
) -> None:
    onboard(client, as_user, "sdk-ann")
    later = Later(client, up_on=3)
    try:
        with httpx.Client(event_hooks={"request": [later.on_request]}) as http:
            answer = ConsentGateway(later.base, key, retry=FAST, client=http).push_batch([paid("down-1")])
        assert later.attempts == 3
        assert later.relay is not None
        assert len(later.relay.bodies) == 1
        assert answer.results[0].outcome == "queued"
        assert stored_pushes(runtime) == 1
    finally:
        later.close()


def test_an_answer_lost_after_the_gateway_acted_is_fetched_again_with_the_same_key(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], key: str, tcp: OverTcp
) -> None:
    onboard(client, as_user, "sdk-ann")
    cut = OverTcp(client, cut=1)
    try:
        with ConsentGateway(cut.base, key, retry=FAST) as gateway:
            answer = gateway.push(
                idempotency_key="lost-1", user_id="sdk-ann", topic="transactional", title="t", body="b"
            )
        assert len(cut.bodies) == 2
        assert cut.bodies[0] == cut.bodies[1]
        assert answer.outcome == "queued"
        assert stored_pushes(runtime) == 1
        assert answer.push_id is not None
        with ConsentGateway(tcp.base, key) as reader:
            assert reader.get_push(answer.push_id).push_id == answer.push_id
    finally:
        cut.close()


def test_a_campaign_is_created_again_only_if_the_request_never_left(
    client: Client, runtime: Runtime, key: str
) -> None:
    def campaigns() -> int:
        return int(runtime.store.data.reader().execute("SELECT count(*) FROM campaigns").fetchone()[0])

    cut = OverTcp(client, cut=1)
    try:
        with ConsentGateway(cut.base, key, retry=FAST) as gateway, pytest.raises(Unreachable) as lost:
            gateway.create_campaign("Spring", "promotions")
        assert lost.value.status_code is None
        assert "may have reached" in lost.value.detail
        assert len(cut.bodies) == 1
        assert campaigns() == 1  # it was created: a retry would have made a second
    finally:
        cut.close()

    later = Later(client, up_on=2)
    try:
        with httpx.Client(event_hooks={"request": [later.on_request]}) as http:
            ConsentGateway(later.base, key, retry=FAST, client=http).create_campaign("Summer", "promotions")
        assert later.attempts == 2
        assert campaigns() == 2
    finally:
        later.close()


def _cap_data_db(runtime: Runtime, pages: int | None) -> None:
    """Cap the data database at `pages` (None: at its size now, so the next write finds it full)."""

    def apply(conn: Connection) -> None:
        count = pages or conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {count}").fetchone()

    runtime.store.data.writer.run_alone(apply)


def test_the_gateways_503_is_retried_with_the_same_batch_until_it_is_kept(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], key: str
) -> None:
    onboard(client, as_user, "sdk-ann")
    batch = [paid(f"full-{i}", title="x" * 100, body="y" * 400) for i in range(300)]
    sent: list[bytes] = []

    def free_after_two_refusals(response: httpx.Response) -> None:
        sent.append(response.request.content)
        if response.status_code == 503 and len(sent) == 2:
            _cap_data_db(runtime, 1073741823)  # SQLite's default: room again

    _cap_data_db(runtime, None)
    with pytest.raises(Unavailable) as full:
        ConsentGateway(str(client.base_url), key, retry=RetryPolicy(attempts=1), client=client).push_batch(
            batch
        )
    assert "full" in full.value.detail
    assert stored_pushes(runtime) == 0

    client.event_hooks = {"response": [free_after_two_refusals]}
    answer = ConsentGateway(str(client.base_url), key, retry=FAST, client=client).push_batch(batch)
    assert len(sent) == 3
    assert len(set(sent)) == 1
    assert answer.counts == {"queued": 300}
    assert stored_pushes(runtime) == 300


# -- the async twin and client ownership --------------------------------------------------------


def test_async_gateway_over_tcp(client: Client, as_user: Callable[[str], Headers], key: str) -> None:
    onboard(client, as_user, "sdk-ann")
    later = Later(client, up_on=2)

    async def scenario() -> None:
        async with httpx.AsyncClient(event_hooks={"request": [later.async_on_request]}) as http:
            gateway = AsyncConsentGateway(later.base, key, retry=FAST, client=http)
            first = await gateway.push(
                idempotency_key="async-1", user_id="sdk-ann", topic="transactional", title="t", body="b"
            )
            assert first.outcome == "queued"
            assert first.push_id is not None
            assert (await gateway.get_push(first.push_id)).status == "queued"
            with pytest.raises(Unprocessable):
                await gateway.push(
                    idempotency_key="async-1", user_id="sdk-ann", topic="transactional", title="T", body="b"
                )
        async with AsyncConsentGateway(later.base, key) as owned:
            assert (await owned.get_push(first.push_id)).push_id == first.push_id
        with pytest.raises(RuntimeError):  # the client it made is closed with it
            await owned.get_push(first.push_id)

    try:
        asyncio.run(scenario())
        assert later.attempts == 4
    finally:
        later.close()


def test_closing_the_gateway_leaves_an_injected_client_open(client: Client, key: str) -> None:
    with ConsentGateway(str(client.base_url), key, client=client) as gateway, pytest.raises(NotFound):
        gateway.get_push("psh_" + "0" * 24)
    assert not client.is_closed
    owned = ConsentGateway("http://127.0.0.1:9", key)
    owned.close()
    with pytest.raises(RuntimeError):
        owned.get_push("psh_" + "0" * 24)


@pytest.mark.slow
def test_against_a_real_serve_process(tmp_path: Path) -> None:
    """The SDK's own HTTP client against `consent-gateway serve` as a separate process."""
    settings = {"CGW_TIMEZONE": daytime_zone(), "CGW_WORKER_ENABLED": "false"}
    with serve_process(tmp_path / "data", tmp_path / "server.stderr", settings) as server:
        created = server.cli("keys", "create", "--name", "sdk", "--scope", "pushes:write", "campaigns:write")
        token = server.cli("token", "sdk-user")
        assert created.returncode == token.returncode == 0, created.stderr + token.stderr
        user = {"Authorization": f"Bearer {token.stdout.strip()}"}
        with httpx.Client(base_url=server.base, headers=user) as http:
            assert http.put("/v1/me/consents/marketing", json=CONSENT).status_code == 200
            relay = {"platform": "webhook", "token": "relay-sdk-0001"}
            assert http.post("/v1/me/devices", json=relay).status_code == 201
        with ConsentGateway(server.base, created.stdout.strip(), retry=FAST) as gateway:
            campaign = gateway.create_campaign("winter", "promotions").campaign_id

            def push(title: str) -> PushAnswer:
                return gateway.push(
                    idempotency_key="real-1", user_id="sdk-user", topic="promotions", title=title, body="x",
                    campaign_id=campaign,
                )  # fmt: skip

            answer = push("Hi")
            assert answer.outcome == "queued", answer
            assert answer.push_id is not None
            assert push("Hi") == answer
            assert gateway.get_push(answer.push_id).status == "queued"
            with pytest.raises(Unprocessable) as refused:
                push("Other")
            assert refused.value.field == "idempotency_key"
        server.stop()
