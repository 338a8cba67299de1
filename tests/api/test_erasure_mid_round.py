"""An erasure answered while a delivery round is under way stops the round's sends still to start.

A round decides its pushes when it claims them, then sends; a push's sends to its user's other
devices, or any send waiting for a connection, start later, seconds later under load. What the
round holds by then is the user's device tokens and the push's content, decrypted: sent after
`DELETE /v1/me` answered, it would reach the provider after the user's data was destroyed. So
each send asks the directory, past its cache, whether its user still holds, just before it
starts. The relay here sits on the push's first send until the erasure has answered; the one
connection the worker has (`worker_concurrency=1`) keeps the second device's send waiting
behind it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import sqlcipher3
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import WebhookRelay

from gateway.runtime import Runtime
from gateway.settings import Secret, Settings

USER = "mid-round-user"
WAIT_SECONDS = 20.0  # a bound for a loaded machine, not a measure


@pytest.fixture
def settings(data_dir: Path, hook: WebhookRelay) -> Settings:
    return Settings(
        data_dir=data_dir,
        worker_enabled=False,
        worker_concurrency=1,
        delivery_webhook_url=hook.url,
        delivery_webhook_secret=Secret("erasure-mid-round-webhook-secret-0123456789"),
    )


def queued_to_two_devices(client: TestClient[Litestar], user: Headers, key: Headers) -> str:
    """A transactional push to USER, who has two webhook devices; its id."""
    for token in ("relay-device-first", "relay-device-second"):
        answer = client.post("/v1/me/devices", json={"platform": "webhook", "token": token}, headers=user)
        assert answer.status_code == 201, answer.text
    body = {"idempotency_key": "mid-1", "user_id": USER, "topic": "transactional",
            "title": "Payment received", "body": "CNY 25.00"}  # fmt: skip
    queued = client.post("/v1/pushes", json=body, headers=key).json()
    assert queued["outcome"] == "queued", queued
    return str(queued["push_id"])


def test_sends_not_yet_started_when_the_user_is_erased_are_not_made(
    client: TestClient[Litestar],
    runtime: Runtime,
    clock: FakeClock,
    hook: WebhookRelay,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    user, key = as_user(USER), as_key("pushes:write")
    push_id = queued_to_two_devices(client, user, key)

    first_send, erased = threading.Event(), threading.Event()

    def hold_the_first_answer() -> None:
        if not first_send.is_set():
            first_send.set()
            assert erased.wait(WAIT_SECONDS)

    hook.before_answer = hold_the_first_answer
    round_ = client.blocking_portal.start_task_soon(runtime.dispatcher.run_once, "test-worker", 10)
    assert first_send.wait(WAIT_SECONDS), "the round sent nothing"
    assert client.delete("/v1/me", headers=user).status_code == 204
    erased.set()
    assert round_.result(timeout=WAIT_SECONDS) == 1

    assert len(hook.received) == 1, [b["device_token"] for b in hook.received]
    # The send not made is no attempt and leaves no delivery record: only the first device's.
    records = runtime.store.data.reader().execute(
        "SELECT status FROM deliveries WHERE push_id = ?", (push_id,)
    )
    assert [status for (status,) in records] == ["delivered"]
    # The push waits for its next claim, which finds the user gone: one device has it, so it ends
    # `delivered`, and nothing more is sent.
    clock.advance(seconds=5)
    assert client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 10) == 1
    ended = client.get(f"/v1/pushes/{push_id}", headers=key).json()
    assert (ended["status"], ended["attempts"], len(hook.received)) == ("delivered", 1, 1), ended


def test_a_send_whose_subject_cannot_be_read_is_put_off_not_the_round(
    client: TestClient[Litestar],
    runtime: Runtime,
    clock: FakeClock,
    hook: WebhookRelay,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The directory read before a send may fail (a damaged page, a reader that cannot reopen).
    Raised into the round's sends, it left the whole round unrecorded: the send already made
    was made again at the lease's end, the device getting the push twice. Now that send alone
    waits for the next round. The read is made to fail here, once, at the second of the push's
    two sends (they start together, in either order)."""
    user, key = as_user(USER), as_key("pushes:write")
    push_id = queued_to_two_devices(client, user, key)
    directory = runtime.store.directory
    holding, calls = directory.holding, []

    def failing_once(subject_ids: Iterable[str]) -> set[str]:
        calls.append(list(subject_ids))
        if len(calls) == 2:
            raise sqlcipher3.DatabaseError("database disk image is malformed (injected)")
        return holding(calls[-1])

    monkeypatch.setattr(directory, "holding", failing_once)
    assert client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 10) == 1
    assert len(hook.received) == 1, hook.received  # the send whose read failed is not made
    clock.advance(seconds=5)
    assert client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 10) == 1
    assert sorted(b["device_token"] for b in hook.received) == ["relay-device-first", "relay-device-second"]
    ended = client.get(f"/v1/pushes/{push_id}", headers=key).json()
    assert ended["status"] == "delivered", ended
