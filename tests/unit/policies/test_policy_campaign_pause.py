"""A paused campaign stops every push that names it, `transactional` too, while the complaint
mute stays a marketing rule. Table-driven at a fixed `now`, like test_policy_decide."""

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import msgspec
import pytest

from policies import (
    PURPOSES,
    TOPICS,
    CampaignState,
    PolicySettings,
    PushRequest,
    Reason,
    Scheduled,
    SubjectState,
    decide,
)

NOW = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)  # 12:00 in UTC, 21:00 in Tokyo: quiet hours there
SETTINGS = PolicySettings()
PAUSED, RUNNING = CampaignState(paused=True), CampaignState(paused=False)


def subject(**changes: Any) -> SubjectState:
    base = SubjectState(status="active", consents=frozenset(PURPOSES), active_devices=1)
    return msgspec.structs.replace(base, **changes)


def push(**changes: Any) -> PushRequest:
    base = PushRequest(
        topic="transactional", title="Payment received", body="Your payment went through",
        data={"deeplink": "w://p"}, campaign_id="c1",
    )  # fmt: skip
    return msgspec.structs.replace(base, **changes)


def r(code: str, **detail: str | int) -> Reason:
    return Reason(code, detail)


class Case(NamedTuple):
    name: str
    push: PushRequest
    subject: SubjectState
    campaign: CampaignState | None
    outcome: str
    reasons: tuple[Reason, ...] = ()


MUTED = {"transactional": NOW + timedelta(days=3), "promotions": NOW + timedelta(days=3)}

CASES = [
    Case("paused transactional", push(), subject(), PAUSED, "rejected", (r("campaign_paused"),)),
    Case("transactional of a running campaign", push(), subject(), RUNNING, "queued"),
    Case("transactional of no campaign", push(campaign_id=None), subject(), None, "queued"),
    Case(
        "paused stops transactional without consent, in quiet hours, over the caps",
        push(),
        subject(
            consents=frozenset(),
            timezone="Asia/Tokyo",
            max_per_week=0,
            scheduled=(Scheduled(NOW - timedelta(hours=1), "transactional"),),
        ),
        PAUSED,
        "rejected",
        (r("campaign_paused"),),
    ),
    Case(
        "paused is kept with the transactional purpose rules' reasons",
        push(personalized=True),
        subject(consents=frozenset()),
        PAUSED,
        "rejected",
        (r("no_personalization_consent"), r("campaign_paused")),
    ),
    Case(
        "paused is kept with minimization's reasons",
        push(title="Paid by 4111111111111111"),
        subject(),
        PAUSED,
        "rejected",
        (r("payload_pii", field="title", kind="card"), r("campaign_paused")),
    ),
    Case(
        "the complaint mute still does not reach transactional",
        push(),
        subject(muted_until=MUTED),
        RUNNING,
        "queued",
    ),
    Case(
        "paused transactional of a muted topic gives only the pause",
        push(),
        subject(muted_until=MUTED),
        PAUSED,
        "rejected",
        (r("campaign_paused"),),
    ),
    Case(
        "marketing keeps both complaint reasons, in their order",
        push(topic="promotions"),
        subject(muted_until=MUTED),
        PAUSED,
        "rejected",
        (r("recent_complaint", topic="promotions", until="2024-06-15T12:00:00Z"), r("campaign_paused")),
    ),
    Case(
        # Said first, and with the campaign's pause, which reads nothing of a subject: a sender
        # aiming at stale ids learnt only `subject_unknown` (spec: every reason that applied).
        "an unknown subject is said first, with the campaign's pause",
        push(),
        subject(status="unknown"),
        PAUSED,
        "rejected",
        (r("subject_unknown"), r("campaign_paused")),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_campaign_pause(case: Case) -> None:
    decision = decide(case.push, case.subject, case.campaign, NOW, SETTINGS)
    assert (decision.outcome, decision.reasons) == (case.outcome, case.reasons)
    assert bool(decision.allowed_by) is (case.outcome != "rejected")


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_a_paused_campaign_stops_every_topic(topic: str) -> None:
    decision = decide(push(topic=topic), subject(), PAUSED, NOW, SETTINGS)
    assert decision.outcome == "rejected"
    assert r("campaign_paused") in decision.reasons
