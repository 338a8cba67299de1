"""A push waiting out a retry's backoff — `sending`, no device has it, no worker holds it — is
decided again at its next claim, as a queued push is, so one that claim is sure to stop holds no
place in the user's caps. It did: a campaign push the provider asked to retry, its campaign then
paused and resumed (or its topic switched off), took the day's marketing push, and the push sent
after the resume was refused `frequency_capped`; at its next claim the first was stopped, and the
user got nothing. A push that reached one device is the user's and still counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import Scripted

from clients.delivery import DeliveryMessage, DeliveryResult
from gateway.runtime import Runtime
from gateway.services.dispatch import Dispatcher

Client = TestClient[Litestar]
Json = dict[str, Any]
KeyHeaders = Callable[..., Headers]


def _onboard(client: Client, as_user: Callable[[str], Headers], *devices: str) -> Headers:
    headers = as_user("kiri")
    body = {"granted": True, "notice_version": "v1"}
    assert client.put("/v1/me/consents/marketing", json=body, headers=headers).status_code == 200
    for platform in devices:
        device = {"platform": platform, "token": f"{platform}-device-0001"}
        assert client.post("/v1/me/devices", json=device, headers=headers).status_code == 201
    return headers


def _push(
    client: Client, key: Headers, idempotency_key: str, topic: str = "promotions", **fields: Any
) -> Json:
    body = {
        "idempotency_key": idempotency_key,
        "user_id": "kiri",
        "topic": topic,
        "title": "Sale",
        "body": "Today",
    }
    answer = client.post("/v1/pushes", json=body | fields, headers=key)
    assert answer.status_code == 200, answer.text
    result: Json = answer.json()
    return result


def _round(client: Client, runtime: Runtime, adapters: dict[str, Any]) -> int:
    """One dispatch round of the real Dispatcher against these providers; how many it claimed."""
    rt = runtime
    dispatcher = Dispatcher(rt.store, rt.clock, rt.settings, rt.policy, rt.metrics, adapters)
    claimed: int = client.blocking_portal.call(dispatcher.run_once, "test-worker", 100)
    return claimed


def _dispatch(client: Client, runtime: Runtime, **answers: str) -> int:
    providers = {platform: Scripted(platform, status) for platform, status in answers.items()}  # type: ignore[arg-type]
    return _round(client, runtime, providers)


def _status(client: Client, key: Headers, push_id: str) -> str:
    status: str = client.get(f"/v1/pushes/{push_id}", headers=key).json()["status"]
    return status


def test_a_retrying_push_of_a_campaign_paused_since_holds_no_cap(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: Callable[[str], Headers], as_key: KeyHeaders
) -> None:
    writer, key = as_key("campaigns:write"), as_key("pushes:write", "campaigns:read")
    campaign = client.post("/v1/campaigns", json={"name": "Winter", "topic": "promotions"}, headers=writer)
    cid = campaign.json()["campaign_id"]
    _onboard(client, as_user, "fcm")
    first = _push(client, key, "k1", campaign_id=cid)
    assert _dispatch(client, runtime, fcm="retry") == 1
    assert _status(client, key, first["push_id"]) == "sending"
    clock.advance(minutes=1)
    assert client.post(f"/v1/campaigns/{cid}/pause", headers=writer).status_code == 200
    assert client.post(f"/v1/campaigns/{cid}/resume", headers=writer).status_code == 200

    again = _push(client, key, "k2", campaign_id=cid)

    assert again["outcome"] == "queued", again


def test_a_retrying_push_of_a_topic_switched_off_since_holds_no_cap(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: Callable[[str], Headers], as_key: KeyHeaders
) -> None:
    key = as_key("pushes:write", "campaigns:read")
    user = _onboard(client, as_user, "fcm")
    first = _push(client, key, "k1")
    assert _dispatch(client, runtime, fcm="retry") == 1
    assert _status(client, key, first["push_id"]) == "sending"
    off = {"topics": {"promotions": False}}
    assert client.patch("/v1/me/preferences", json=off, headers=user).status_code == 200

    other = _push(client, key, "k2", topic="flash_sales")

    assert other["outcome"] == "queued", other


def test_a_retrying_push_a_device_already_has_still_counts(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: Callable[[str], Headers], as_key: KeyHeaders
) -> None:
    """Delivered to the phone, retried to the relay: the user has it, so the caps count it
    whatever the user changed since."""
    key = as_key("pushes:write", "campaigns:read")
    user = _onboard(client, as_user, "fcm", "webhook")
    first = _push(client, key, "k1")
    assert _dispatch(client, runtime, fcm="delivered", webhook="retry") == 1
    assert _status(client, key, first["push_id"]) == "sending"
    off = {"topics": {"promotions": False}}
    assert client.patch("/v1/me/preferences", json=off, headers=user).status_code == 200

    other = _push(client, key, "k2", topic="flash_sales")

    assert other["outcome"] == "rejected", other
    assert {r["code"] for r in other["reasons"]} == {"frequency_capped"}, other


def test_a_push_being_sent_now_still_counts(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: Callable[[str], Headers], as_key: KeyHeaders
) -> None:
    """A worker holds it: it may reach the user any moment, so it counts."""
    key = as_key("pushes:write", "campaigns:read")
    user = _onboard(client, as_user, "fcm")
    first = _push(client, key, "k1")
    assert _dispatch(client, runtime, fcm="retry") == 1
    conn = runtime.store.data.writer
    until = (clock.now.replace(year=clock.now.year + 1)).isoformat()
    conn.run_sync(
        lambda c: c.execute(
            "UPDATE outbox SET lease_owner = 'another-worker', lease_until = ? WHERE push_id = ?",
            (until, first["push_id"]),
        )
    )
    off = {"topics": {"promotions": False}}
    assert client.patch("/v1/me/preferences", json=off, headers=user).status_code == 200

    other = _push(client, key, "k2", topic="flash_sales")

    assert other["outcome"] == "rejected", other


class _RetryAfter:
    """A provider asking to be tried again after `seconds`."""

    name = "fcm"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def send(self, message: DeliveryMessage) -> DeliveryResult:
        return DeliveryResult(status="retry", retry_after=self.seconds)

    async def aclose(self) -> None:
        """Nothing to close."""


def _retry_after(client: Client, runtime: Runtime, seconds: float) -> None:
    assert _round(client, runtime, {"fcm": _RetryAfter(seconds)}) == 1


def test_a_retry_due_at_its_expiry_holds_no_cap(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: Callable[[str], Headers], as_key: KeyHeaders
) -> None:
    """Review of 82d02ef: asked to retry after its expiry, the push is rescheduled to its expiry
    and ends `expired` there, never sent; it took the day's push all the same."""
    key = as_key("pushes:write", "campaigns:read")
    _onboard(client, as_user, "fcm")
    first = _push(client, key, "k1", ttl_seconds=3600)
    _retry_after(client, runtime, 7200.0)
    assert _status(client, key, first["push_id"]) == "sending"
    clock.advance(minutes=5)

    other = _push(client, key, "k2", topic="flash_sales")

    assert other["outcome"] == "queued", other


def test_a_retry_due_in_quiet_hours_counts_on_the_morning_it_goes(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: Callable[[str], Headers], as_key: KeyHeaders
) -> None:
    """Review of 82d02ef: sent at 20:50 and asked to retry after 20 minutes, the push is due at
    21:10, inside the user's quiet hours, and goes the next morning; it took the evening's day."""
    key = as_key("pushes:write", "campaigns:read")
    _onboard(client, as_user, "fcm")
    clock.now = clock.now.replace(hour=20, minute=50)
    first = _push(client, key, "k1")
    _retry_after(client, runtime, 1200.0)
    assert _status(client, key, first["push_id"]) == "sending"
    clock.advance(minutes=5)

    other = _push(client, key, "k2", topic="flash_sales")

    assert other["outcome"] == "queued", other


# The round's read whole, or failed and each push read alone (`_unreadable_push`).
read_whole_or_alone = pytest.mark.parametrize(
    "read_alone", [False, True], ids=["round read whole", "each push read alone"]
)


def _unreadable_push(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], key: Headers
) -> None:
    """Another user's push, due with the rest, whose sealed preferences no longer open: the
    round's read fails, and dispatch reads each of its pushes alone."""
    headers = as_user("hana")
    body = {"granted": True, "notice_version": "v1"}
    assert client.put("/v1/me/consents/marketing", json=body, headers=headers).status_code == 200
    device = {"platform": "fcm", "token": "fcm-device-of-hana"}
    assert client.post("/v1/me/devices", json=device, headers=headers).status_code == 201
    zone = {"timezone": "Europe/Berlin", "quiet_hours": {"start": "03:00", "end": "07:00"}}  # a row to break
    assert client.patch("/v1/me/preferences", json=zone, headers=headers).status_code == 200
    push = {
        "idempotency_key": "h1",
        "user_id": "hana",
        "topic": "promotions",
        "title": "Sale",
        "body": "Today",
    }
    assert client.post("/v1/pushes", json=push, headers=key).json()["outcome"] == "queued"
    store = runtime.store
    subject = store.directory.resolve(store.pseudonyms.subject_ref("hana"))
    assert subject is not None
    store.data.writer.run_sync(
        lambda conn: conn.execute(
            "UPDATE preferences SET doc = randomblob(80) WHERE subject_id = ?", (subject.subject_id,)
        )
    )


@read_whole_or_alone
def test_a_retry_stopped_in_the_round_of_a_later_push_does_not_cost_it_the_cap(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: KeyHeaders,
    caplog: pytest.LogCaptureFixture,
    read_alone: bool,
) -> None:
    """Review of 0e78d25: claimed in the same round as a push submitted after it, a retry that
    round stops (its topic switched off) counted as sent against the other, and both ended
    rejected. Review of 2fbc180: so they still did when the round's read failed and each push
    was read alone."""
    key = as_key("pushes:write", "campaigns:read")
    user = _onboard(client, as_user, "fcm")
    first = _push(client, key, "k1")
    _retry_after(client, runtime, 3600.0)  # due again in an hour
    clock.advance(minutes=10)
    off = {"topics": {"promotions": False}}
    assert client.patch("/v1/me/preferences", json=off, headers=user).status_code == 200
    clock.advance(minutes=20)
    second = _push(client, key, "k2", topic="flash_sales")
    assert second["outcome"] == "queued", second
    if read_alone:
        _unreadable_push(client, runtime, as_user, key)
    clock.advance(minutes=45)  # both due (the hour asked, and up to a quarter more): one round claims them

    assert _dispatch(client, runtime, fcm="delivered") == 2 + read_alone
    assert ("dispatch round read failed; reading each push alone" in caplog.messages) is read_alone

    assert _status(client, key, first["push_id"]) == "rejected"
    assert _status(client, key, second["push_id"]) == "delivered"


@read_whole_or_alone
def test_a_late_push_sent_in_a_round_counts_against_the_next_one_of_that_round(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: KeyHeaders,
    read_alone: bool,
) -> None:
    """Review of 7bde2d5: read alone, a push read the whole round's claims as waiting, the one
    before it that the round was sending too; sent late (planned at now), that one was left out
    of the next push's caps as planned after it, and both went on one day."""
    key = as_key("pushes:write")
    user = _onboard(client, as_user, "fcm")
    window = {"quiet_hours": {"start": "03:00", "end": "07:00"}}  # none at midnight (UTC)
    assert client.patch("/v1/me/preferences", json=window, headers=user).status_code == 200
    clock.advance(hours=13, minutes=59, seconds=30)
    first = _push(client, key, "k1", ttl_seconds=3 * 86400)  # Monday 23:59:30
    clock.advance(seconds=50)  # Tuesday: the first, less than a minute late, still counts on Monday
    second = _push(client, key, "k2", topic="flash_sales", ttl_seconds=3 * 86400)
    assert second["outcome"] == "queued", second
    if read_alone:
        _unreadable_push(client, runtime, as_user, key)
    clock.advance(minutes=30)  # no round ran: the first goes late, on Tuesday

    assert _dispatch(client, runtime, fcm="delivered") == 2 + read_alone

    assert _status(client, key, first["push_id"]) == "delivered"
    assert _status(client, key, second["push_id"]) == "rejected"  # one a day, and the first went today


@read_whole_or_alone
def test_a_retry_whose_step_failed_in_the_round_still_holds_no_cap_it_will_not_use(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: KeyHeaders,
    read_alone: bool,
) -> None:
    """Review of 30a954f: read alone, a push took only the claims from it on as the round's, so
    an earlier one whose step had failed (left to its lease, unwritten) read as being sent: a
    retry the round would stop (topic off) cost the later push the day's cap."""
    key = as_key("pushes:write")
    user = _onboard(client, as_user, "fcm")
    first = _push(client, key, "k1")
    _retry_after(client, runtime, 60.0)
    clock.advance(minutes=2)
    off = {"topics": {"promotions": False}}
    assert client.patch("/v1/me/preferences", json=off, headers=user).status_code == 200
    clock.advance(minutes=1)
    second = _push(client, key, "k2", topic="flash_sales")
    assert second["outcome"] == "queued", second
    runtime.store.data.writer.run_sync(  # the first's sealed content no longer opens: its step fails
        lambda conn: conn.execute(
            "UPDATE pushes SET content = randomblob(length(content)) WHERE push_id = ?", (first["push_id"],)
        )
    )
    if read_alone:
        _unreadable_push(client, runtime, as_user, key)
    clock.advance(minutes=1)  # the first is claimed before the second

    _dispatch(client, runtime, fcm="delivered")

    assert _status(client, key, first["push_id"]) == "sending"  # left to its lease
    assert _status(client, key, second["push_id"]) == "delivered"
