from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import pytest

from clients.delivery import DeliveryResult, WebhookAdapter, WebhookConfig, verify_webhook_signature

from .doubles import FakeClock, PlainSecret, make_message
from .servers import Answer, Http1Server, Received

SECRET = "whsec-test-0123456789abcdef0123456789"


def relay(got: Received) -> Answer:
    """The wallet's relay: refuses anything not signed with the shared secret within 5 minutes."""
    ok = verify_webhook_signature(
        SECRET, got.headers["x-cgw-timestamp"], got.body, got.headers["x-cgw-signature"], now=time.time()
    )
    return (204, {}, b"") if ok else (401, {}, b"bad signature")


def test_posts_the_specified_signed_json_to_a_real_server() -> None:
    clock = FakeClock()
    message = make_message(clock, platform="webhook")

    async def scenario(url: str) -> DeliveryResult:
        adapter = WebhookAdapter(WebhookConfig(url=url + "/relay", secret=PlainSecret(SECRET)), clock=clock)
        try:
            return await adapter.send(message)
        finally:
            await adapter.aclose()

    with Http1Server(relay) as server:
        result = asyncio.run(scenario(server.url))
    assert result == DeliveryResult(status="delivered", provider_status=204)
    [got] = server.received
    assert got.path == "/relay"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["idempotency-key"] == "psh_01HZX:dev_42"
    assert got.headers["x-cgw-timestamp"] == str(int(clock.now))
    mac = hmac.new(SECRET.encode(), f"{int(clock.now)}.".encode() + got.body, hashlib.sha256)
    assert got.headers["x-cgw-signature"] == "sha256=" + mac.hexdigest()
    assert json.loads(got.body) == {
        "push_id": "psh_01HZX",
        "device_id": "dev_42",
        "device_token": message.token,
        "topic": "promotions",
        "title": "Weekend offer",
        "body": "10% off at partner stores",
        "data": {"deeplink": "wallet://offers/7"},
        "campaign_id": "cmp_1",
        "variant": "A",
    }


def test_every_push_an_adapter_sends_is_signed_for_its_own_body() -> None:
    """The adapter keeps its key set up (`WebhookSigner`) and signs each body afresh."""
    clock = FakeClock()

    async def scenario(url: str) -> list[DeliveryResult]:
        adapter = WebhookAdapter(WebhookConfig(url=url + "/relay", secret=PlainSecret(SECRET)), clock=clock)
        try:
            return [
                await adapter.send(make_message(clock, platform="webhook", push_id=f"psh_{n}", body=f"n{n}"))
                for n in range(3)
            ]
        finally:
            await adapter.aclose()

    with Http1Server(relay) as server:
        results = asyncio.run(scenario(server.url))
    assert results == [DeliveryResult(status="delivered", provider_status=204)] * 3
    assert len({got.headers["x-cgw-signature"] for got in server.received}) == 3


def test_a_stale_timestamp_is_refused_by_the_receiver_and_tried_again() -> None:
    """The gateway's clock five minutes off refuses every push alike: not failed for the device,
    tried again (and counted toward the relay's circuit) until the clock is put right."""
    clock = FakeClock()
    clock.advance(-301)

    async def scenario(url: str) -> DeliveryResult:
        adapter = WebhookAdapter(WebhookConfig(url=url, secret=PlainSecret(SECRET)), clock=clock)
        try:
            return await adapter.send(make_message(clock, platform="webhook"))
        finally:
            await adapter.aclose()

    with Http1Server(relay) as server:
        assert asyncio.run(scenario(server.url)) == DeliveryResult(status="retry", provider_status=401)


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (200, {}, DeliveryResult(status="delivered", provider_status=200)),
        (202, {}, DeliveryResult(status="delivered", provider_status=202)),
        # Every device posts to the one relay URL: a 404 (a wrong path, a relay mid-redeploy)
        # says nothing about the device, and must not disable them all. Only 410 does.
        (404, {}, DeliveryResult(status="retry", provider_status=404)),
        (404, {"retry-after": "30"}, DeliveryResult(status="retry", retry_after=30.0, provider_status=404)),
        (410, {}, DeliveryResult(status="invalid_token", provider_status=410)),
        (400, {}, DeliveryResult(status="failed", provider_status=400)),
        # Our signature refused (the secret, a clock far off): every device alike, as a 404.
        (401, {}, DeliveryResult(status="retry", provider_status=401)),
        (422, {}, DeliveryResult(status="failed", provider_status=422)),
        (429, {"retry-after": "7"}, DeliveryResult(status="retry", retry_after=7.0, provider_status=429)),
        (500, {}, DeliveryResult(status="retry", provider_status=500)),
        (503, {"retry-after": "x"}, DeliveryResult(status="retry", provider_status=503)),
    ],
)
def test_status_classification(status: int, headers: dict[str, str], expected: DeliveryResult) -> None:
    async def scenario(url: str) -> DeliveryResult:
        adapter = WebhookAdapter(
            WebhookConfig(url=url + "/relay", secret=PlainSecret(SECRET)), clock=FakeClock()
        )
        try:
            return await adapter.send(make_message(FakeClock(), platform="webhook"))
        finally:
            await adapter.aclose()

    with Http1Server(lambda got: (status, headers, b"")) as server:
        assert asyncio.run(scenario(server.url)) == expected
    assert len(server.received) == 1


def test_a_receiver_slower_than_the_timeout_is_a_retry() -> None:
    def slow(got: Received) -> Answer:
        time.sleep(1.0)
        return 200, {}, b""

    async def scenario(url: str) -> DeliveryResult:
        config = WebhookConfig(url=url + "/relay", secret=PlainSecret(SECRET), timeout=0.3)
        adapter = WebhookAdapter(config, clock=FakeClock())
        try:
            return await adapter.send(make_message(FakeClock(), platform="webhook"))
        finally:
            await adapter.aclose()

    with Http1Server(slow) as server:
        assert asyncio.run(scenario(server.url)) == DeliveryResult(status="retry", provider_code="Timeout")


def test_connection_refused_is_a_retry() -> None:
    with Http1Server(relay) as server:
        url = server.url  # the port is free again once the server is gone

    async def scenario() -> DeliveryResult:
        adapter = WebhookAdapter(WebhookConfig(url=url, secret=PlainSecret(SECRET)))
        try:
            return await adapter.send(make_message(FakeClock(), platform="webhook"))
        finally:
            await adapter.aclose()

    assert asyncio.run(scenario()) == DeliveryResult(status="retry", provider_code="ConnectError")


@pytest.mark.parametrize(
    ("timestamp", "body", "signature", "now", "valid"),
    [
        ("1700000000", b"{}", None, 1_700_000_000.0, True),
        (1_700_000_000, b"{}", None, 1_700_000_300.0, True),
        ("1700000000", b"{}", None, 1_700_000_301.0, False),
        ("1700000000", b"{}", None, 1_699_999_699.0, False),
        ("1700000000", b"{ }", None, 1_700_000_000.0, False),
        ("1700000001", b"{}", None, 1_700_000_000.0, False),
        ("1700000000", b"{}", "sha256=00", 1_700_000_000.0, False),
        ("soon", b"{}", None, 1_700_000_000.0, False),
    ],
)
def test_verify_webhook_signature(
    timestamp: str | int, body: bytes, signature: str | None, now: float, valid: bool
) -> None:
    good = hmac.new(SECRET.encode(), b"1700000000.{}", hashlib.sha256).hexdigest()
    signature = signature or "sha256=" + good
    assert verify_webhook_signature(SECRET, timestamp, body, signature, now) is valid


GOOD = "sha256=" + hmac.new(SECRET.encode(), b"1700000000.{}", hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("timestamp", "body", "signature"),
    [
        pytest.param("1700000000", b"{}", None, id="no-signature"),
        pytest.param(None, b"{}", GOOD, id="no-timestamp"),
        pytest.param("1700000000", b"{}", "sha256=" + "é" * 64, id="non-ascii-signature"),
        pytest.param("1700000000", b"{}", GOOD[:-1] + "\u00e9", id="non-ascii-last-character"),
        pytest.param("1700000000", b"{}", GOOD.upper(), id="upper-case"),
        pytest.param("1700000000", b"{}", GOOD + "0", id="too-long"),
        pytest.param("1700000000", b"{}", GOOD.removeprefix("sha256="), id="no-prefix"),
        pytest.param("1700000000", b"{}", b"sha256=00", id="bytes-signature"),
        pytest.param("9" * 400, b"{}", GOOD, id="huge-timestamp"),
        pytest.param("9" * 5000, b"{}", GOOD, id="past-int-digit-limit"),
        pytest.param(10**5000, b"{}", GOOD, id="huge-int-timestamp"),
        pytest.param(-1, b"{}", GOOD, id="negative-int-timestamp"),
        pytest.param("-1700000000", b"{}", GOOD, id="signed-timestamp"),
        pytest.param(" 1700000000", b"{}", GOOD, id="spaced-timestamp"),
        pytest.param("1700000000\n", b"{}", GOOD, id="newline-timestamp"),
        pytest.param("1.7e9", b"{}", GOOD, id="float-timestamp"),
        pytest.param("\u0661\u0667" + "0" * 8, b"{}", GOOD, id="arabic-indic-digits"),
        pytest.param(b"1700000000", b"{}", GOOD, id="bytes-timestamp"),
        pytest.param(1.7e9, b"{}", GOOD, id="float-number-timestamp"),
        pytest.param(True, b"{}", GOOD, id="bool-timestamp"),
        pytest.param("", b"{}", GOOD, id="empty-timestamp"),
        pytest.param("0" + "1700000000", b"{}", GOOD, id="zero-led-timestamp"),
        pytest.param("1700000000", None, GOOD, id="no-body"),
        pytest.param("1700000000", "{}", GOOD, id="str-body"),
    ],
)
def test_malformed_headers_are_false_never_an_exception(
    timestamp: object, body: object, signature: object
) -> None:
    """The receiver passes the headers the sender chose: anything malformed is simply not valid."""
    assert verify_webhook_signature(SECRET, timestamp, body, signature, now=1_700_000_000.0) is False  # type: ignore[arg-type]


def test_a_bytearray_body_an_int_timestamp_and_a_bytes_secret_still_verify() -> None:
    assert verify_webhook_signature(SECRET, "1700000000", bytearray(b"{}"), GOOD, now=1_700_000_000.0)
    assert verify_webhook_signature(SECRET.encode(), 1_700_000_000, b"{}", GOOD, now=1_700_000_000.0)
