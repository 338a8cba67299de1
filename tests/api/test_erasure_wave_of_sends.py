"""A round's sends that start together are asked about their users together, as they start.

Each send asks the directory, past its cache, whether its user is still live, just before it
starts (`tests/api/test_erasure_mid_round.py` has why). One statement a send was 17–20 µs of
CPU on a slow host, a sixth of the worker's; the sends a turn of the event loop lets start, a
round's whole first wave among them, are now answered by one read in the next turn. That read
must still come after the claim, when the sends are let start: a user erased in between gets
nothing, the others get theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import WebhookRelay

from gateway.runtime import Runtime
from gateway.settings import Secret, Settings

USERS = ("wave-user-a", "wave-user-b", "wave-user-c")


@pytest.fixture
def settings(data_dir: Path, hook: WebhookRelay) -> Settings:
    return Settings(
        data_dir=data_dir,
        worker_enabled=False,
        delivery_webhook_url=hook.url,
        delivery_webhook_secret=Secret("erasure-wave-of-sends-webhook-secret-0123"),
    )


def test_a_wave_of_sends_is_asked_in_one_read_after_the_claim(
    client: TestClient[Litestar],
    runtime: Runtime,
    clock: FakeClock,
    hook: WebhookRelay,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = as_key("pushes:write")
    for n, name in enumerate(USERS):
        device = {"platform": "webhook", "token": f"relay-device-{name}"}
        assert client.post("/v1/me/devices", json=device, headers=as_user(name)).status_code == 201
        body = {"idempotency_key": f"wave-{n}", "user_id": name, "topic": "transactional",
                "title": "Payment received", "body": "CNY 25.00"}  # fmt: skip
        assert client.post("/v1/pushes", json=body, headers=key).json()["outcome"] == "queued"

    store = runtime.store
    holding, reads = store.directory.holding, []

    def erasing_b_first(subject_ids: Iterable[str]) -> set[str]:
        reads.append(list(subject_ids))
        if len(reads) == 1:  # committed after the round's claim, before its sends' read
            assert store.directory.erase(store.pseudonyms.subject_ref("wave-user-b"), clock())
        return holding(reads[-1])

    monkeypatch.setattr(store.directory, "holding", erasing_b_first)
    assert client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 10) == 3

    assert [len(subjects) for subjects in reads] == [3], reads
    sent = sorted(b["device_token"] for b in hook.received)
    assert sent == ["relay-device-wave-user-a", "relay-device-wave-user-c"], sent
