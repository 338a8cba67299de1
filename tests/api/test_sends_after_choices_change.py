"""What a user does while a delivery round is under way stops the round's sends still to start,
as an erasure does (tests/api/test_erasure_mid_round.py): a consent withdrawn, a topic switched
off, a device removed, or the device registered by another user since. A review across processes
saw each of them answered and the push still sent, seconds later, to the devices whose sends
waited for a connection: to the new owner's phone, the last user's push. The relay here sits on
the push's first send until the change has answered; the one connection the worker has
(`worker_concurrency=1`) keeps the second device's send waiting behind it. The push's next claim
decides it again on what the user chose.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import WebhookRelay

from gateway.runtime import Runtime
from gateway.services.send_checks import Asked, Stop
from gateway.settings import Secret, Settings

Client = TestClient[Litestar]
USER = "mid-round-chooser"
TOKENS = ("relay-device-first", "relay-device-second")
WAIT_SECONDS = 20.0  # a bound for a loaded machine, not a measure


@pytest.fixture
def settings(data_dir: Path, hook: WebhookRelay) -> Settings:
    return Settings(
        data_dir=data_dir,
        worker_enabled=False,
        worker_concurrency=1,
        delivery_webhook_url=hook.url,
        delivery_webhook_secret=Secret("choices-mid-round-webhook-secret-0123456789"),
    )


def _queued(client: Client, user: Headers, key: Headers, topic: str, **fields: Any) -> tuple[str, list[str]]:
    """A push of `topic` to USER, who has two webhook devices: its id and the devices'."""
    consent = {"granted": True, "notice_version": "v1"}
    for purpose in ("marketing", "personalization"):
        assert client.put(f"/v1/me/consents/{purpose}", json=consent, headers=user).status_code == 200
    window = {"quiet_hours": {"start": "03:00", "end": "04:00"}}  # none at 10:00 UTC
    assert client.patch("/v1/me/preferences", json=window, headers=user).status_code == 200
    devices = []
    for token in TOKENS:
        answer = client.post("/v1/me/devices", json={"platform": "webhook", "token": token}, headers=user)
        assert answer.status_code == 201, answer.text
        devices.append(str(answer.json()["device_id"]))
    body = {
        "idempotency_key": "mid-1",
        "user_id": USER,
        "topic": topic,
        "title": "Sale",
        "body": "Today",
        **fields,
    }
    queued = client.post("/v1/pushes", json=body, headers=key).json()
    assert queued["outcome"] == "queued", queued
    return str(queued["push_id"]), devices


def _round_with(
    client: Client, runtime: Runtime, clock: FakeClock, hook: WebhookRelay, change: Callable[[str], None]
) -> str:
    """One round, `change` made while its first send waits for its answer, given the token of
    the device still waiting (the devices' order is their random ids'); that token."""
    first_send, changed = threading.Event(), threading.Event()

    def hold_the_first_answer() -> None:
        if not first_send.is_set():
            first_send.set()
            assert changed.wait(WAIT_SECONDS)

    hook.before_answer = hold_the_first_answer
    round_ = client.blocking_portal.start_task_soon(runtime.dispatcher.run_once, "test-worker", 10)
    assert first_send.wait(WAIT_SECONDS), "the round sent nothing"
    waiting = next(token for token in TOKENS if token != hook.received[0]["device_token"])
    clock.advance(seconds=2)  # a slow provider: past `RECHECK_AFTER`, sends are asked again
    try:
        change(waiting)
    finally:
        changed.set()
    assert round_.result(timeout=WAIT_SECONDS) == 1
    hook.before_answer = None
    return waiting


def _push(client: Client, key: Headers, push_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = client.get(f"/v1/pushes/{push_id}", headers=key).json()
    return answer


@pytest.mark.parametrize(
    ("change", "final"),
    [
        (
            lambda client, user, devices: client.put(
                "/v1/me/consents/marketing", json={"granted": False, "notice_version": "v1"}, headers=user
            ),
            "no_consent",
        ),
        (
            lambda client, user, devices: client.patch(
                "/v1/me/preferences", json={"topics": {"promotions": False}}, headers=user
            ),
            "topic_opted_out",
        ),
    ],
    ids=["consent withdrawn", "topic switched off"],
)
def test_a_choice_made_mid_round_stops_the_sends_still_to_start(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    hook: WebhookRelay,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
    change: Callable[[Client, Headers, list[str]], Any],
    final: str,
) -> None:
    user, key = as_user(USER), as_key("pushes:write")
    push_id, devices = _queued(client, user, key, "promotions")

    waiting = _round_with(client, runtime, clock, hook, lambda _: _answered(change(client, user, devices)))

    assert waiting not in [body["device_token"] for body in hook.received]
    assert len(hook.received) == 1
    clock.advance(minutes=5)  # its next claim, after the backoff
    assert client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 10) == 1
    assert len(hook.received) == 1
    pushed = _push(client, key, push_id)
    # The first device has it, so it ends `delivered`, with what stopped the rest.
    assert pushed["status"] == "delivered"
    assert final in [reason["code"] for reason in pushed["reasons"]], pushed


def test_a_transactional_push_made_personal_stops_when_personalization_is_withdrawn(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    hook: WebhookRelay,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    """Its decision read the consents (whatever the topic, a personalized push needs
    personalization), which a round stamps only when such a push turns up among its pushes."""
    user, key = as_user(USER), as_key("pushes:write")
    push_id, _ = _queued(client, user, key, "transactional", personalized=True)
    withdrawn = {"granted": False, "notice_version": "v1"}

    def withdraw(_: str) -> None:
        _answered(client.put("/v1/me/consents/personalization", json=withdrawn, headers=user))

    waiting = _round_with(client, runtime, clock, hook, withdraw)
    assert waiting not in [body["device_token"] for body in hook.received]
    clock.advance(minutes=5)
    assert client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 10) == 1
    assert len(hook.received) == 1
    pushed = _push(client, key, push_id)
    assert "no_personalization_consent" in [reason["code"] for reason in pushed["reasons"]], pushed


def test_a_device_removed_or_handed_to_another_user_mid_round_is_not_sent_to(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    hook: WebhookRelay,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    """Transactional, so the decision read no choices: the device alone stops the send."""
    user, key = as_user(USER), as_key("pushes:write")
    push_id, _ = _queued(client, user, key, "transactional")
    other = as_user("the-phone-s-next-owner")

    def hand_over(token: str) -> None:
        _answered(client.post("/v1/me/devices", json={"platform": "webhook", "token": token}, headers=other))

    waiting = _round_with(client, runtime, clock, hook, hand_over)
    clock.advance(minutes=5)
    assert client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 10) in {0, 1}
    assert waiting not in [body["device_token"] for body in hook.received]
    assert len(hook.received) == 1
    assert _push(client, key, push_id)["status"] == "delivered"


def test_a_device_removed_mid_round_is_not_sent_to(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    hook: WebhookRelay,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    user, key = as_user(USER), as_key("pushes:write")
    _, devices = _queued(client, user, key, "transactional")

    def remove(token: str) -> None:
        _answered(client.delete(f"/v1/me/devices/{devices[TOKENS.index(token)]}", headers=user))

    waiting = _round_with(client, runtime, clock, hook, remove)
    assert waiting not in [body["device_token"] for body in hook.received]
    assert len(hook.received) == 1


def _answered(response: Any) -> None:
    assert response.status_code < 300, response.text


def test_a_send_starting_within_a_second_of_its_claim_is_not_asked_again(
    client: Client,
    runtime: Runtime,
    hook: WebhookRelay,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its decision read the devices and choices that recently; a read a wave cost the served
    worker 7% of its CPU a push (run BJ). The clock does not move here: both sends go."""
    user, key = as_user(USER), as_key("pushes:write")
    _queued(client, user, key, "promotions")
    asked: list[Asked] = []
    checks = runtime.dispatcher._checks
    ask = checks.ask

    def noted(send: Asked) -> asyncio.Future[Stop | None]:
        asked.append(send)
        return ask(send)

    monkeypatch.setattr(checks, "ask", noted)  # a spy: the checks still answer
    assert client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 10) == 1
    assert len(hook.received) == 2
    assert [(send.device, send.seen) for send in asked] == [(None, None), (None, None)]
