"""A unit's pushes decided with one `DecisionUnit` are decided exactly as each decided alone.

The unit skips minimization for a push whose content matches the last one judged: any field of
the content it failed to compare would let a push through on another's verdict (a PII body
after a clean one, a disallowed data key after an allowed one). It keeps quiet hours' answer
for a window, a zone and a moment: any of them, or the policy, left out of what it is kept by
would defer a push by another subject's night, or let one through in its own.
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from policies import (
    PURPOSES,
    DecisionUnit,
    PolicySettings,
    PushRequest,
    Scheduled,
    SubjectState,
    decide,
)

NOW = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)
SUBJECT = SubjectState(status="active", consents=frozenset(PURPOSES), active_devices=1)
STRICT = PolicySettings(allowed_data_keys={"promotions": []})

# Small pools, so that a sequence repeats contents and also differs from the last in one field.
contents = st.builds(
    PushRequest,
    topic=st.sampled_from(["promotions", "transactional"]),
    title=st.sampled_from(["Summer sale", "Your code 4111 1111 1111 1111"]),
    body=st.sampled_from(["20% off today", "Write to ann@example.com", "x" * 2000]),
    data=st.sampled_from([{"deeplink": "w://s"}, {"email": "w://s"}, {}, {"deeplink": "ann@example.com"}]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(contents, st.sampled_from([PolicySettings(), STRICT])), min_size=1, max_size=12))
def test_judged_together_as_alone(unit: list[tuple[PushRequest, PolicySettings]]) -> None:
    together = DecisionUnit()
    for push, policy in unit:
        assert decide(push, SUBJECT, None, NOW, policy, together) == decide(push, SUBJECT, None, NOW, policy)


# Contents that pass, but for a data key the strict policy refuses.
passing = st.builds(
    PushRequest,
    topic=st.sampled_from(["promotions", "transactional"]),
    title=st.sampled_from(["Summer sale", "Paid"]),
    body=st.sampled_from(["20% off today", "Your receipt"]),
    data=st.sampled_from([{"deeplink": "w://s"}, {}]),
)


@settings(max_examples=100, deadline=None)
@given(passing, st.sampled_from([PolicySettings(), STRICT]))
def test_content_that_passed_decides_the_same_cleared(push: PushRequest, policy: PolicySettings) -> None:
    """Dispatch clears a push's content when it was accepted under the policy in force: what
    the content passed, cleared it must decide exactly the same (verdict, reasons, allowed by)."""
    decision = decide(push, SUBJECT, None, NOW, policy)
    assume(not any(reason.code.startswith("payload_") for reason in decision.reasons))  # else never queued
    cleared = msgspec.structs.replace(push, content_cleared=True)
    assert decide(cleared, SUBJECT, None, NOW, policy, DecisionUnit()) == decision


def test_a_clean_push_after_a_refused_one_of_the_same_title_is_queued() -> None:
    judged = DecisionUnit()
    refused = PushRequest(topic="promotions", title="Sale", body="Mail ann@example.com", data={})
    clean = PushRequest(topic="promotions", title="Sale", body="Mail us", data={})
    assert decide(refused, SUBJECT, None, NOW, PolicySettings(), judged).outcome == "rejected"
    assert decide(clean, SUBJECT, None, NOW, PolicySettings(), judged).outcome == "queued"


def test_a_policy_read_mid_unit_judges_the_same_content_again() -> None:
    judged = DecisionUnit()
    push = PushRequest(topic="promotions", title="Sale", body="20% off", data={"deeplink": "w://s"})
    assert decide(push, SUBJECT, None, NOW, PolicySettings(), judged).outcome == "queued"
    decision = decide(push, SUBJECT, None, NOW, STRICT, judged)
    assert [reason.code for reason in decision.reasons] == ["payload_field_not_allowed"]


NEW_YORK = ZoneInfo("America/New_York")
# 01:30 in New York read twice on 2024-11-03, an hour apart: equal as datetimes of one zone.
SET_BACK = datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK)
MOMENTS = [
    NOW,
    NOW + timedelta(hours=9),
    SET_BACK,
    SET_BACK.replace(fold=1),
    datetime(2024, 3, 10, 7, tzinfo=UTC),
]
# Each start and each end is shared by two windows, so that a window is told apart by both.
WINDOWS = [
    ("21:00", "08:00"), ("06:00", "08:00"), ("01:45", "03:00"), ("01:45", "14:00"), ("13:00", "14:00"),
    ("00:00", "00:00"), ("1\u0663:00", "08:30"), ("13:00", "08:30"), ("06:00", "03:00"), ("21:00", "00:00"),
]  # fmt: skip
ZONES = ["UTC", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
POLICIES = [PolicySettings(), PolicySettings(min_quiet_minutes=600, max_per_week=5, max_per_day=3)]
PROMOTION = PushRequest(topic="promotions", title="Summer sale", body="20% off today", data={})

waiting = st.builds(
    Scheduled,
    at=st.sampled_from(MOMENTS).map(lambda m: m - timedelta(hours=2)),
    topic=st.just("promotions"),
    waiting=st.just(True),
    expires_at=st.sampled_from([NOW + timedelta(hours=30), SET_BACK + timedelta(hours=5)]),
)
subjects = st.builds(
    lambda window, zone, planned: SubjectState(
        status="active",
        consents=frozenset(PURPOSES),
        active_devices=1,
        timezone=zone,
        quiet_start=window[0],
        quiet_end=window[1],
        max_per_week=5,
        scheduled=tuple(planned),
    ),
    st.sampled_from(WINDOWS),
    st.sampled_from(ZONES),
    st.lists(waiting, max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(MOMENTS), st.sampled_from(POLICIES), st.lists(subjects, min_size=1, max_size=12))
def test_quiet_hours_kept_for_the_unit_answer_as_worked_out_alone(
    now: datetime, policy: PolicySettings, unit: list[SubjectState]
) -> None:
    """A unit has one `now` and one policy; its subjects' waiting pushes bring other moments."""
    together = DecisionUnit()
    for subject in unit:
        assert decide(PROMOTION, subject, None, now, policy, together) == decide(
            PROMOTION, subject, None, now, policy
        )


def test_the_two_readings_of_a_clock_set_back_are_two_moments() -> None:
    """A window from 01:45 to 03:00 in New York, the night its clock is set back from 02:00 to
    01:00: at the first 01:30 the window has not begun, at the second it has (it began at the
    first 01:45). Kept by the moment as written, the two were one, and the second went out in
    the user's night on the first one's answer."""
    subject = SubjectState(
        status="active", consents=frozenset(PURPOSES), active_devices=1, timezone="America/New_York",
        quiet_start="01:45", quiet_end="03:00",
    )  # fmt: skip
    unit, policy = DecisionUnit(), PolicySettings()
    assert decide(PROMOTION, subject, None, SET_BACK, policy, unit).outcome == "queued"
    second = decide(PROMOTION, subject, None, SET_BACK.replace(fold=1), policy, unit)
    assert second.outcome == "deferred"
    assert second.deliver_after == datetime(2024, 11, 3, 8, tzinfo=UTC)


def test_a_policy_read_mid_unit_answers_quiet_hours_afresh() -> None:
    """A window of half an hour, from 11:00, is lengthened to two hours by a minimum set since it
    was saved: at noon it is quiet under the new policy and not under the old."""
    subject = SubjectState(
        status="active",
        consents=frozenset(PURPOSES),
        active_devices=1,
        quiet_start="11:00",
        quiet_end="11:30",
    )
    unit = DecisionUnit()
    assert decide(PROMOTION, subject, None, NOW, PolicySettings(), unit).outcome == "queued"
    lengthened = decide(PROMOTION, subject, None, NOW, PolicySettings(min_quiet_minutes=120), unit)
    assert lengthened.deliver_after == datetime(2024, 6, 12, 13, tzinfo=UTC)


def test_a_clock_time_the_zone_skips_is_judged_as_its_instant() -> None:
    """02:30 on the night New York moves its clock from 02:00 to 03:00 does not exist; written in
    the user's own zone it is 07:30 UTC (03:30 there). Judged by its wall time it fell in a window
    from 02:00 to 03:00 that no instant of that night is in, and a unit that had judged 07:30 UTC
    first answered it otherwise."""
    subject = SubjectState(
        status="active", consents=frozenset(PURPOSES), active_devices=1, timezone="America/New_York",
        quiet_start="02:00", quiet_end="03:00",
    )  # fmt: skip
    skipped = datetime(2024, 3, 10, 2, 30, tzinfo=NEW_YORK)
    policy = PolicySettings()
    alone = decide(PROMOTION, subject, None, skipped, policy)
    unit = DecisionUnit()
    decide(PROMOTION, subject, None, skipped.astimezone(UTC), policy, unit)
    assert decide(PROMOTION, subject, None, skipped, policy, unit) == alone
    assert alone.outcome == "queued"
