"""Webhook delivery end to end: a real `consent-gateway serve` process posting to a real relay.

PRODUCT.md, "Delivery": the webhook adapter serves devices of platform `webhook`; it POSTs JSON
{push_id, device_id, device_token, topic, title, body, data, campaign_id, variant} with
`Idempotency-Key: <push_id>:<device_id>`, `X-CGW-Timestamp: <unix seconds>` and
`X-CGW-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">`; any 2xx is delivered.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from gatewayproc import GatewayProcess
from receiver import Hit, Receiver

from clients.delivery import verify_webhook_signature

pytestmark = pytest.mark.slow

SECRET = "e2e-webhook-secret-0123456789abcdef"
FIELDS = {"push_id", "device_id", "device_token", "topic", "title", "body", "data", "campaign_id", "variant"}


@dataclass
class Live:
    gw: GatewayProcess
    relay: Receiver


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("webhook")
    with Receiver(SECRET) as relay:
        gw = GatewayProcess(
            root / "data", relay.url, SECRET,
            CGW_WORKER_LEASE_SECONDS="3", CGW_DELIVERY_BACKOFF_SECONDS="0.2",
        )  # fmt: skip
        gw.setup()
        gw.start()
        try:
            yield Live(gw, relay)
        finally:
            gw.kill()


def _wait_for(relay: Receiver, push_id: str, seconds: float = 15.0) -> list[Hit]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        hits = [h for h in relay.snapshot() if h.push_id == push_id]
        if hits:
            return list(hits)
        time.sleep(0.05)
    raise AssertionError(f"{push_id} did not reach the relay within {seconds} s")


def _campaign(gw: GatewayProcess) -> str:
    answer = httpx.post(
        gw.base + "/v1/campaigns", json={"name": "winter", "topic": "promotions"},
        headers={"Authorization": f"Bearer {gw.key}"}, timeout=10,
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    return str(answer.json()["campaign_id"])


def test_webhook_request_body_and_headers(live: Live) -> None:
    gw, relay = live.gw, live.relay
    devices = gw.setup_users(["wh-alice"], threads=1)
    campaign_id = _campaign(gw)
    (result,) = gw.submit_batch([
        {"idempotency_key": "wh-1", "user_id": "wh-alice", "topic": "promotions", "title": "Winter sale",
         "body": "20% off at partner stores today", "data": {"deeplink": "wallet://offers/winter"},
         "campaign_id": campaign_id, "variant": "B"},
    ])  # fmt: skip
    assert result["outcome"] == "queued", result
    push_id = result["push_id"]
    (hit,) = _wait_for(relay, push_id)
    device_id = devices["wh-alice"]

    assert hit.body == {
        "push_id": push_id,
        "device_id": device_id,
        "device_token": "relay-token-wh-alice",
        "topic": "promotions",
        "title": "Winter sale",
        "body": "20% off at partner stores today",
        "data": {"deeplink": "wallet://offers/winter"},
        "campaign_id": campaign_id,
        "variant": "B",
    }
    headers = hit.headers
    assert headers["idempotency-key"] == f"{push_id}:{device_id}"
    assert headers["content-type"] == "application/json"
    stamp = headers["x-cgw-timestamp"]
    assert stamp.isdigit()
    assert abs(int(stamp) - time.time()) < 30
    raw = hit.raw
    signature = headers["x-cgw-signature"]
    # The product's verifier, and the contract computed independently of it.
    assert hit.signature_ok
    assert verify_webhook_signature(SECRET, stamp, raw, signature, now=float(stamp))
    mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    assert signature == "sha256=" + mac
    # ... and a relay that checks would refuse a changed body, another secret or a stale stamp.
    assert not verify_webhook_signature(
        SECRET, stamp, raw.replace(b"Winter", b"Summer"), signature, float(stamp)
    )
    assert not verify_webhook_signature("another-secret", stamp, raw, signature, now=float(stamp))
    assert not verify_webhook_signature(SECRET, stamp, raw, signature, now=float(stamp) + 301)

    with httpx.Client(base_url=gw.base, timeout=10) as client:
        deadline = time.monotonic() + 10
        while gw.read_push(client, push_id)["status"] != "delivered" and time.monotonic() < deadline:
            time.sleep(0.05)
        got = gw.read_push(client, push_id)
    assert (got["status"], got["attempts"]) == ("delivered", 1)


def test_transactional_body_has_null_campaign_and_variant(live: Live) -> None:
    gw, relay = live.gw, live.relay
    devices = gw.setup_users(["wh-bob"], purposes=(), threads=1)
    (result,) = gw.submit_batch([
        {"idempotency_key": "wh-2", "user_id": "wh-bob", "topic": "transactional",
         "title": "Payment received", "body": "CNY 25.00"},
    ])  # fmt: skip
    (hit,) = _wait_for(relay, result["push_id"])
    body = hit.body
    assert set(body) == FIELDS
    assert body["device_id"] == devices["wh-bob"]
    assert (body["campaign_id"], body["variant"], body["data"]) == (None, None, {})
    assert hit.signature_ok


def test_every_request_is_signed(live: Live) -> None:
    """Runs last in this module: nothing the gateway sent failed verification."""
    hits = live.relay.snapshot()
    assert hits
    assert all(h.signature_ok for h in hits)
    assert all(set(h.body) == FIELDS for h in hits)
