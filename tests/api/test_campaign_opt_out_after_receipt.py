"""Campaign stats: `opted_out_after_receipt` counts a withdrawal after the user first received the
push, not after the push row's last change.

A push delivered to one device and still retried to another ends `delivered` only when its last
device is done (or its retry is decided again), minutes after the user had it. Compared with the
push row's `updated_at`, a withdrawal in between came "before receipt" and was not counted. The
real Dispatcher runs against scripted providers: `fcm` devices are delivered, `apns` ones answer
`retry`. FakeClock starts at 2026-11-23 10:00 UTC, outside the default quiet hours.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import Scripted
from test_engagement_stats import create_campaign, item, stats

from gateway.runtime import Runtime
from gateway.services.dispatch import Dispatcher
from gateway.settings import Settings

Client = TestClient[Litestar]
Json = dict[str, Any]


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir, worker_enabled=False, delivery_max_attempts=5, delivery_backoff_seconds=1
    )


def dispatch(client: Client, runtime: Runtime) -> int:
    adapters = {"fcm": Scripted("scripted-ok", "delivered"), "apns": Scripted("scripted-retry", "retry")}
    rt = runtime
    dispatcher = Dispatcher(rt.store, rt.clock, rt.settings, rt.policy, rt.metrics, adapters)
    claimed: int = client.blocking_portal.call(dispatcher.run_once, "test-worker", 100)
    return claimed


def consent(client: Client, headers: Headers, *, granted: bool) -> None:
    body = {"granted": granted, "notice_version": "v1"}
    answer = client.put("/v1/me/consents/marketing", json=body, headers=headers)
    assert answer.status_code == 200, answer.text


def user_with(client: Client, headers: Headers, *platforms: str) -> None:
    consent(client, headers, granted=True)
    for platform in platforms:
        # A token of this user's own: one registered by another user is no longer theirs.
        token = secrets.token_hex(32) if platform == "apns" else f"{platform}-token-{secrets.token_hex(4)}"
        device = {"platform": platform, "token": token}
        assert client.post("/v1/me/devices", json=device, headers=headers).status_code == 201


def submit(client: Client, key: Headers, body: Json) -> str:
    answer = client.post("/v1/pushes", json=body, headers=key)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "queued", answer.text
    push_id: str = answer.json()["push_id"]
    return push_id


def test_a_withdrawal_after_the_first_device_had_the_push_counts_though_the_push_ended_later(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    cid = create_campaign(client, as_key("campaigns:write"))
    key = as_key("pushes:write")
    ada, bo = as_user("ada"), as_user("bo")
    user_with(client, ada, "fcm", "apns")  # delivered on fcm at 10:00, apns retried
    user_with(client, bo, "fcm")  # delivered at 10:00, never withdraws
    ada_push = submit(client, key, item("a1", "ada", campaign_id=cid))
    submit(client, key, item("b1", "bo", campaign_id=cid))
    assert dispatch(client, runtime) == 2
    clock.advance(minutes=1)
    consent(client, ada, granted=False)  # 10:01: after she had the push on one device
    clock.advance(minutes=5)
    assert dispatch(client, runtime) == 1  # 10:06: decided again, it ends delivered

    conn = runtime.store.data.reader()
    status, updated_at = conn.execute(
        "SELECT status, updated_at FROM pushes WHERE push_id = ?", (ada_push,)
    ).fetchone()
    assert (status, updated_at) == ("delivered", "2026-11-23T10:06:00+00:00")
    counted = stats(client, as_key("campaigns:read"), cid)["variants"]["default"]
    assert (counted["delivered"], counted["opted_out_after_receipt"]) == (2, 1)
    assert counted["rates"]["opt_out_rate"] == 0.5


def test_a_withdrawal_before_any_device_had_the_push_is_not_counted(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    """The user withdrew while the push was only being retried (no device had it): the retry
    then stops it, so it is not delivered and not counted either way."""
    cid = create_campaign(client, as_key("campaigns:write"))
    ada = as_user("ada")
    user_with(client, ada, "apns")
    submit(client, as_key("pushes:write"), item("a1", "ada", campaign_id=cid))
    assert dispatch(client, runtime) == 1
    clock.advance(minutes=1)
    consent(client, ada, granted=False)
    clock.advance(minutes=5)
    dispatch(client, runtime)

    counted = stats(client, as_key("campaigns:read"), cid)["variants"]["default"]
    assert (counted["delivered"], counted["opted_out_after_receipt"]) == (0, 0)


def test_opt_outs_are_counted_per_push_as_deliveries_are(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    """Regression: people were counted over pushes, so a variant sending three pushes to each
    person showed a third of the opt-out rate of one sending one, all recipients having left."""
    cid = create_campaign(client, as_key("campaigns:write"))
    key = as_key("pushes:write")
    ada, bo = as_user("ada"), as_user("bo")
    user_with(client, ada, "fcm")
    user_with(client, bo, "fcm")
    submit(client, key, item("b1", "bo", campaign_id=cid, variant="B"))
    for day in range(3):  # the caps allow one a day
        submit(client, key, item(f"a{day}", "ada", campaign_id=cid, variant="A"))
        assert dispatch(client, runtime) == 1 + (day == 0)
        clock.advance(hours=25)
    consent(client, ada, granted=False)
    consent(client, bo, granted=False)

    variants = stats(client, as_key("campaigns:read"), cid)["variants"]
    counted = {name: (v["delivered"], v["opted_out_after_receipt"]) for name, v in variants.items()}
    assert counted == {"A": (3, 3), "B": (1, 1)}
    assert variants["A"]["rates"]["opt_out_rate"] == variants["B"]["rates"]["opt_out_rate"] == 1.0
