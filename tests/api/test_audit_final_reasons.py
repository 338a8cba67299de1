"""What dispatch decided, seen through HTTP: a paused campaign stops its `transactional` pushes
at submission and at dispatch, and the audit decision log finds a push by the reasons that
ended it at dispatch (`final_reasons`) as well as by those of its submission.

As in test_dispatch_rules, `worker_enabled=False` and each test runs the dispatcher by hand
(`run_once` on the app's loop through the TestClient's blocking portal). The gateway's clock is
the FakeClock at 2026-11-23 10:00 UTC, outside the default quiet hours.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient

from gateway.runtime import Runtime

Client = TestClient[Litestar]
AsUser = Callable[[str], Headers]
Json = dict[str, Any]

ALICE = "alice.final.91c2@example.com"


@pytest.fixture
def service(as_key: Callable[..., Headers]) -> Headers:
    return as_key("pushes:write", "campaigns:write")


@pytest.fixture
def auditor(as_key: Callable[..., Headers]) -> Headers:
    return as_key("audit:read")


def enrol(client: Client, as_user: AsUser, user_id: str) -> None:
    headers = as_user(user_id)
    answer = client.put(
        "/v1/me/consents/marketing", headers=headers, json={"granted": True, "notice_version": "v1"}
    )
    assert answer.status_code == 200, answer.text
    device = {"platform": "fcm", "token": "fcm-token-9f3a"}
    answer = client.post("/v1/me/devices", headers=headers, json=device)
    assert answer.status_code == 201, answer.text


def submit(client: Client, service: Headers, n: int, **fields: Any) -> Json:
    body = {
        "idempotency_key": f"idem-{n}", "user_id": ALICE, "topic": "promotions",
        "title": "Winter sale", "body": "20% off today", "data": {"deeplink": "wallet://x"}, **fields,
    }  # fmt: skip
    answer = client.post("/v1/pushes", headers=service, json=body)
    assert answer.status_code == 200, answer.text
    got: Json = answer.json()
    return got


def campaign(client: Client, service: Headers, topic: str) -> str:
    answer = client.post("/v1/campaigns", headers=service, json={"name": "alerts", "topic": topic})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["campaign_id"])


def lifecycle(client: Client, service: Headers, campaign_id: str, step: str) -> None:
    answer = client.post(f"/v1/campaigns/{campaign_id}/{step}", headers=service)
    assert answer.status_code == 200, answer.text


def dispatch(client: Client, runtime: Runtime) -> int:
    claimed: int = client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 100)
    return claimed


def read(client: Client, service: Headers, push_id: str) -> Json:
    answer = client.get(f"/v1/pushes/{push_id}", headers=service)
    assert answer.status_code == 200, answer.text
    got: Json = answer.json()
    return got


def decisions(client: Client, auditor: Headers, **params: Any) -> list[Json]:
    answer = client.get("/v1/audit/decisions", headers=auditor, params=params)
    assert answer.status_code == 200, answer.text
    got: list[Json] = answer.json()["decisions"]
    return got


def sent(data_dir: Path) -> list[str]:
    path = data_dir / "deliveries.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)["push_id"] for line in lines if line.strip()]


# -- a paused campaign stops its transactional pushes -------------------------------------------


def test_a_paused_transactional_campaign_sends_nothing_until_resumed(
    client: Client, runtime: Runtime, as_user: AsUser, service: Headers, data_dir: Path
) -> None:
    enrol(client, as_user, ALICE)
    campaign_id = campaign(client, service, "transactional")
    lifecycle(client, service, campaign_id, "pause")

    stopped = submit(client, service, 1, topic="transactional", campaign_id=campaign_id)
    assert (stopped["outcome"], stopped["reasons"]) == ("rejected", [{"code": "campaign_paused"}])
    assert dispatch(client, runtime) == 0
    assert sent(data_dir) == []

    lifecycle(client, service, campaign_id, "resume")
    going = submit(client, service, 2, topic="transactional", campaign_id=campaign_id)
    assert (going["outcome"], going["reasons"]) == ("queued", [])
    assert dispatch(client, runtime) == 1
    assert sent(data_dir) == [going["push_id"]]


def test_a_transactional_push_queued_before_the_pause_is_stopped_at_dispatch(
    client: Client,
    runtime: Runtime,
    as_user: AsUser,
    service: Headers,
    auditor: Headers,
    clock: FakeClock,
    data_dir: Path,
) -> None:
    enrol(client, as_user, ALICE)
    campaign_id = campaign(client, service, "transactional")
    queued = submit(client, service, 1, topic="transactional", campaign_id=campaign_id)
    assert queued["outcome"] == "queued"
    clock.advance(minutes=1)
    lifecycle(client, service, campaign_id, "pause")

    assert dispatch(client, runtime) == 1
    got = read(client, service, queued["push_id"])
    assert (got["status"], got["outcome"]) == ("rejected", "queued")
    assert got["reasons"] == [{"code": "campaign_paused"}]
    assert sent(data_dir) == []
    (row,) = decisions(client, auditor, reason="campaign_paused")
    assert (row["push_id"], row["status"], row["reasons"]) == (queued["push_id"], "rejected", [])
    assert row["final_reasons"] == [{"code": "campaign_paused"}]


# -- the decision log sees dispatch's reasons ---------------------------------------------------


def test_a_reason_given_only_at_dispatch_finds_the_decision(
    client: Client, runtime: Runtime, as_user: AsUser, service: Headers, auditor: Headers
) -> None:
    enrol(client, as_user, ALICE)
    queued = submit(client, service, 1)
    refused = submit(client, service, 2, personalized=True)  # no personalization consent
    assert (queued["outcome"], refused["outcome"]) == ("queued", "rejected")
    answer = client.put(
        "/v1/me/consents/marketing", headers=as_user(ALICE), json={"granted": False, "notice_version": "v1"}
    )
    assert answer.status_code == 200, answer.text

    assert dispatch(client, runtime) == 1
    ended = read(client, service, queued["push_id"])
    assert ended["reasons"] == [{"code": "no_consent", "purpose": "marketing"}]

    def ids(**params: Any) -> list[str]:
        return [d["push_id"] for d in decisions(client, auditor, **params)]

    # Dispatch's reason finds the first, the submission's reason still finds the second.
    assert ids(reason="no_consent") == [queued["push_id"]]
    assert ids(reason="no_personalization_consent") == [refused["push_id"]]
    assert ids(reason="no_consent", outcome="queued") == [queued["push_id"]]
    assert ids(reason="no_consent", push_id=refused["push_id"]) == []
    assert ids(reason="quiet_hours") == []
    (row,) = decisions(client, auditor, push_id=queued["push_id"])
    # `reasons` stays the submission's answer, the one an idempotent replay returns.
    assert (row["outcome"], row["status"], row["reasons"]) == ("queued", "rejected", [])
    assert row["final_reasons"] == [{"code": "no_consent", "purpose": "marketing"}]
    (untouched,) = decisions(client, auditor, push_id=refused["push_id"])
    assert (untouched["reasons"], untouched["final_reasons"]) == (refused["reasons"], [])
    replay = submit(client, service, 1)
    assert (replay["push_id"], replay["outcome"], replay["reasons"]) == (queued["push_id"], "queued", [])


def test_an_expired_push_is_found_by_expired(
    client: Client, runtime: Runtime, as_user: AsUser, service: Headers, auditor: Headers, clock: FakeClock
) -> None:
    enrol(client, as_user, ALICE)
    short = submit(client, service, 1, topic="product_tips", ttl_seconds=60)
    assert short["outcome"] == "queued"
    clock.advance(minutes=5)
    assert dispatch(client, runtime) == 1
    assert read(client, service, short["push_id"])["status"] == "expired"
    (row,) = decisions(client, auditor, reason="expired")
    assert (row["push_id"], row["status"], row["reasons"]) == (short["push_id"], "expired", [])
    assert row["final_reasons"] == [{"code": "expired"}]
