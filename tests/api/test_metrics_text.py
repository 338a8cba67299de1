"""`GET /metrics` after real traffic: valid Prometheus text with the operational series, and not
one identifier of a person, device or campaign in it.

The worker is off in tests; `dispatch` runs the dispatcher by hand on the app's loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from support import apns_token, onboard

from clients.delivery import DeliveryMessage, DeliveryResult
from gateway.runtime import Runtime

Client = TestClient[Litestar]
Json = dict[str, Any]
UserHeaders = Callable[[str], Headers]
KeyHeaders = Callable[..., Headers]

ADA, BO, CY, GHOST = (
    "metrics-user-ada-5521",
    "metrics-user-bo-7734",
    "metrics-user-cy-9012",
    "metrics-ghost-3310",
)
CAMPAIGN_NAME = "Secret Winter Campaign Q7"
COMMENT = "Secret-comment-text-8812"


def dispatch(client: Client, runtime: Runtime, limit: int = 1_000) -> int:
    """Run the dispatcher once on the app's event loop (the worker is disabled in tests)."""
    claimed: int = client.blocking_portal.call(runtime.dispatcher.run_once, "test-owner", limit)
    return claimed


def item(key: str, user_id: str, **fields: Any) -> Json:
    base: Json = {
        "idempotency_key": key,
        "user_id": user_id,
        "topic": "promotions",
        "title": "Winter sale",
        "body": "20% off today",
    }
    return base | fields


def batch(client: Client, key: Headers, items: list[Json]) -> Json:
    answer = client.post("/v1/pushes/batch", json={"pushes": items}, headers=key)
    assert answer.status_code == 200, answer.text
    result: Json = answer.json()
    return result


def scrape(client: Client) -> tuple[str, dict[str, Metric]]:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    return text, {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict[str, Metric], sample: str, **labels: str) -> float:
    family = families[sample.removesuffix("_total").removesuffix("_count").removesuffix("_sum")]
    found = [s.value for s in family.samples if s.name == sample and s.labels == labels]
    assert len(found) == 1, (sample, labels, family.samples)
    return float(found[0])


def test_series_an_alert_reads_are_shown_at_zero_before_anything_happens(client: Client) -> None:
    """An alert on a rate or a gauge reads nothing at all from a series that is not there yet:
    each provider's open circuits and each cause of a 503 are shown at 0 from the start."""
    _, families = scrape(client)
    assert value(families, "cgw_open_circuit_breakers", provider="file") == 0
    causes = families["cgw_unavailable_answers"].samples
    shown = {s.labels["cause"]: s.value for s in causes if s.name == "cgw_unavailable_answers_total"}
    assert shown == {"storage_failed": 0, "storage_full": 0, "storage_busy": 0, "batches_busy": 0}


def test_metrics_after_traffic_parse_and_carry_the_operational_series(
    client: Client,
    runtime: Runtime,
    as_user: UserHeaders,
    as_key: KeyHeaders,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key, writer = as_key("pushes:write"), as_key("campaigns:write")
    ada, bo = onboard(client, as_user, ADA), onboard(client, as_user, BO)
    onboard(client, as_user, CY, consent=False)
    created = client.post(
        "/v1/campaigns", json={"name": CAMPAIGN_NAME, "topic": "promotions"}, headers=writer
    )
    campaign_id = created.json()["campaign_id"]

    first = batch(
        client,
        key,
        [item(f"m-{u}", u, campaign_id=campaign_id, variant="A") for u in (ADA, BO, CY, GHOST)],
    )
    assert first["counts"] == {"queued": 2, "rejected": 2, "no_consent": 1, "subject_unknown": 1}
    adas_push = first["results"][0]["push_id"]
    assert dispatch(client, runtime) == 2

    complaint = {"push_id": adas_push, "reason": "irrelevant", "comment": COMMENT}
    complaint_id = client.post("/v1/me/complaints", json=complaint, headers=ada).json()["complaint_id"]
    assert client.post("/v1/me/complaints", json={"reason": "too_frequent"}, headers=bo).status_code == 201
    opened = client.post(f"/v1/me/pushes/{adas_push}/events", json={"type": "opened"}, headers=ada)
    assert opened.status_code == 201

    # Five sends the provider refuses in a row open the file sink's circuit.
    flaky = [f"metrics-flaky-{i}-4410" for i in range(5)]
    for user in flaky:
        onboard(client, as_user, user)
    assert batch(client, key, [item(f"f-{u}", u) for u in flaky])["counts"] == {"queued": 5}
    sink = runtime.adapters["apns"]

    async def refuse(message: DeliveryMessage) -> DeliveryResult:
        return DeliveryResult(status="retry", provider_status=503, provider_code="Unavailable")

    monkeypatch.setattr(sink, "send", refuse)
    assert dispatch(client, runtime) == 5

    text, families = scrape(client)

    decisions = families["cgw_decisions"]
    assert decisions.type == "counter"
    assert value(families, "cgw_decisions_total", outcome="queued") == 7
    assert value(families, "cgw_decisions_total", outcome="rejected") == 2
    assert value(families, "cgw_decision_reasons_total", code="no_consent") == 1
    assert value(families, "cgw_decision_reasons_total", code="subject_unknown") == 1

    assert families["cgw_deliveries"].type == "counter"
    assert value(families, "cgw_deliveries_total", provider=sink.name, result="delivered") == 2
    assert value(families, "cgw_deliveries_total", provider=sink.name, result="retry") == 5

    assert families["cgw_complaints"].type == "counter"
    assert value(families, "cgw_complaints_total", reason="irrelevant") == 1
    assert value(families, "cgw_complaints_total", reason="too_frequent") == 1

    assert families["cgw_delivery_seconds"].type == "histogram"
    assert value(families, "cgw_delivery_seconds_count", provider=sink.name) == 7
    buckets = [s for s in families["cgw_delivery_seconds"].samples if s.name == "cgw_delivery_seconds_bucket"]
    assert any(s.labels.get("le") == "+Inf" and s.value == 7 for s in buckets)

    assert families["cgw_decision_seconds"].type == "histogram"
    assert value(families, "cgw_decision_seconds_count") == 9
    decision_buckets = [s for s in families["cgw_decision_seconds"].samples if s.name.endswith("_bucket")]
    assert [s.value for s in decision_buckets] == sorted(s.value for s in decision_buckets)

    assert families["cgw_open_circuit_breakers"].type == "gauge"
    # By provider (here the file sink serves every platform; a provider at 0 beside one at 1 is
    # in test_webpush_breakers).
    assert value(families, "cgw_open_circuit_breakers", provider=sink.name) == 1

    # The process's own, for memory, CPU and open files against their limit.
    assert value(families, "process_resident_memory_bytes") > 0
    assert 0 < value(families, "process_open_fds") < value(families, "process_max_fds")
    assert families["python_gc_collections"].type == "counter"
    assert "python_info" in families

    # Nothing that points at a person, a device, a campaign or a push.
    users = [ADA, BO, CY, GHOST, *flaky]
    secrets = [
        *users,
        *(runtime.store.pseudonyms.subject_ref(u) for u in users),
        *(apns_token(u) for u in users),
        CAMPAIGN_NAME,
        campaign_id,
        adas_push,
        complaint_id,
        COMMENT,
        "sub_",
    ]
    leaked = [s for s in secrets if s in text or s.lower() in text.lower()]
    assert leaked == []
    routes = {s.labels["route"] for s in families["cgw_http_requests"].samples if "route" in s.labels}
    assert routes
    assert not any("psh_" in r or "cpl_" in r or "cmp_" in r for r in routes)


def test_dry_runs_are_not_counted_as_decisions(
    client: Client, as_user: UserHeaders, as_key: KeyHeaders
) -> None:
    key = as_key("pushes:write")
    onboard(client, as_user, ADA)
    assert batch(client, key, [item("dry", ADA, dry_run=True)])["counts"] == {"queued": 1}
    assert batch(client, key, [item("real", ADA), item("dry-2", ADA, topic="flash_sales", dry_run=True)])
    _, families = scrape(client)
    assert value(families, "cgw_decisions_total", outcome="queued") == 1
    assert value(families, "cgw_decision_seconds_count") == 1


def test_idempotent_replays_are_not_counted_as_decisions(
    client: Client, as_user: UserHeaders, as_key: KeyHeaders
) -> None:
    key = as_key("pushes:write")
    onboard(client, as_user, ADA)
    first = batch(client, key, [item("real", ADA)])
    assert batch(client, key, [item("real", ADA)]) == first  # the stored answer, no new decision
    _, families = scrape(client)
    assert value(families, "cgw_decisions_total", outcome="queued") == 1
    assert value(families, "cgw_decision_seconds_count") == 1


def test_each_decision_and_each_reason_counts_once(
    client: Client, as_user: UserHeaders, as_key: KeyHeaders
) -> None:
    """Per label over whole submissions: three unknown subjects in a batch and one sent alone
    are four `subject_unknown` reasons, however the answers are tallied before the counters are
    raised."""
    key = as_key("pushes:write")
    onboard(client, as_user, ADA, consent=False)
    ghosts = [f"metrics-ghost-{i}-2207" for i in range(3)]
    answer = batch(client, key, [item(f"g-{u}", u) for u in ghosts] + [item("no-consent", ADA)])
    assert answer["counts"] == {"rejected": 4, "subject_unknown": 3, "no_consent": 1}
    single = client.post("/v1/pushes", json=item("g-single", ghosts[0]), headers=key)
    assert single.json()["outcome"] == "rejected"
    _, families = scrape(client)
    assert value(families, "cgw_decisions_total", outcome="rejected") == 5
    assert value(families, "cgw_decision_reasons_total", code="subject_unknown") == 4
    assert value(families, "cgw_decision_reasons_total", code="no_consent") == 1
    assert value(families, "cgw_decision_seconds_count") == 5


def test_how_far_delivery_is_behind_is_a_gauge_of_the_outbox(
    client: Client, runtime: Runtime, clock: FakeClock, as_user: UserHeaders, as_key: KeyHeaders
) -> None:
    """Nothing said whether pushes piled up unsent (no worker running, or one far behind): the
    gauge is how long the earliest due push has waited past its time, 0 once it is sent."""
    _, families = scrape(client)
    assert value(families, "cgw_outbox_oldest_due_seconds") == 0
    onboard(client, as_user, ADA)
    queued = batch(client, as_key("pushes:write"), [item("lag-1", ADA, topic="transactional")])
    assert queued["counts"] == {"queued": 1}
    clock.advance(seconds=90)  # the worker is off: the push waits
    _, families = scrape(client)
    assert value(families, "cgw_outbox_oldest_due_seconds") == 90
    assert dispatch(client, runtime) == 1
    _, families = scrape(client)
    assert value(families, "cgw_outbox_oldest_due_seconds") == 0
