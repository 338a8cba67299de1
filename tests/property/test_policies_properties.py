"""Invariants of the decision pipeline that no table can exhaust: consent, caps and quiet hours.

Clock times are drawn both at random and around the DST changes of America/New_York and
Europe/Berlin, where wall-clock arithmetic usually breaks.
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from policies import (
    PURPOSES,
    TOPIC_PURPOSES,
    TOPICS,
    PolicySettings,
    PushRequest,
    Scheduled,
    SubjectState,
    decide,
)
from policies.quiet_hours import QuietWindow

SETTINGS = PolicySettings()
ZONES = ("America/New_York", "Europe/Berlin", "Asia/Shanghai", "UTC")
DST_DAYS = (
    datetime(2024, 3, 10, 7, tzinfo=UTC),  # New York springs forward
    datetime(2024, 11, 3, 6, tzinfo=UTC),  # New York falls back
    datetime(2024, 3, 31, 1, tzinfo=UTC),  # Berlin springs forward
    datetime(2024, 10, 27, 1, tzinfo=UTC),  # Berlin falls back
)
MARKETING = tuple(topic for topic in TOPICS if topic != "transactional")
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)


def hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


near_dst = st.builds(
    lambda day, minutes: day + timedelta(minutes=minutes),
    st.sampled_from(DST_DAYS),
    st.integers(-36 * 60, 36 * 60),
)
anytime = st.datetimes(datetime(2024, 1, 1), datetime(2025, 12, 31)).map(
    lambda moment: moment.replace(tzinfo=UTC)
)
instants = st.one_of(near_dst, anytime)
wall_times = st.one_of(
    st.integers(0, 24 * 60 - 1).map(hhmm),
    st.sampled_from(["01:30", "02:00", "02:30", "03:00", "08:00", "21:00", "23:59"]),
)


@st.composite
def subjects(draw: st.DrawFn) -> SubjectState:
    return SubjectState(
        status="active",
        consents=frozenset(draw(st.sets(st.sampled_from(PURPOSES)))),
        timezone=draw(st.sampled_from(ZONES)),
        quiet_start=draw(wall_times),
        quiet_end=draw(wall_times),
        max_per_week=draw(st.integers(0, 3)),
        active_devices=1,
    )


def plain_push(topic: str, ttl_seconds: int = 86400) -> PushRequest:
    return PushRequest(topic=topic, title="Offer", body="Ten percent off", data={}, ttl_seconds=ttl_seconds)


@PROPERTY_SETTINGS
@given(
    subject=subjects(),
    topic=st.sampled_from(MARKETING),
    personalized=st.booleans(),
    near=st.none() | st.just("wx4g"),
    now=instants,
)
def test_no_marketing_push_without_every_needed_consent(
    subject: SubjectState, topic: str, personalized: bool, near: str | None, now: datetime
) -> None:
    located = msgspec.structs.replace(subject, location_geohash="wx4g0b", location_at=now)
    push = PushRequest(
        topic=topic,
        title="Offer",
        body="Ten percent off",
        data={},
        personalized=personalized,
        near_geohash=near,
    )
    decision = decide(push, located, None, now, SETTINGS)
    if decision.outcome != "rejected":
        assert TOPIC_PURPOSES[topic] <= located.consents
        assert not personalized or "personalization" in located.consents
        assert near is None or "location" in located.consents


@PROPERTY_SETTINGS
@given(
    subject=subjects(),
    now=instants,
    ttl=st.integers(1, SETTINGS.max_ttl_seconds),
    topic=st.sampled_from(MARKETING),
)
def test_deferred_time_is_outside_quiet_hours_and_before_expiry(
    subject: SubjectState, now: datetime, ttl: int, topic: str
) -> None:
    granted = msgspec.structs.replace(subject, consents=frozenset(PURPOSES))
    decision = decide(plain_push(topic, ttl), granted, None, now, SETTINGS)
    window = QuietWindow(granted.quiet_start, granted.quiet_end, ZoneInfo(granted.timezone))
    if decision.outcome == "deferred":
        assert decision.deliver_after is not None
        assert now < decision.deliver_after < decision.expires_at
        assert not window.contains(decision.deliver_after)
    elif decision.outcome == "queued":
        assert not window.contains(now)


@PROPERTY_SETTINGS
@given(
    subject=subjects(),
    start=st.integers(0, 24 * 60 - 1),
    length=st.integers(1, 24 * 60 - 1),
    day=instants,
    into_window=st.floats(0, 1, exclude_max=True),
    ttl=st.integers(26 * 3600, SETTINGS.max_ttl_seconds),
    topic=st.sampled_from(MARKETING),
)
def test_inside_quiet_hours_a_push_that_outlasts_them_is_deferred_past_them(
    subject: SubjectState, start: int, length: int, day: datetime, into_window: float, ttl: int, topic: str
) -> None:
    """The deferred branch on every example: the test above reaches it only by chance (about one
    draw in thirty). `now` is placed inside the window; with every consent, room under the caps
    and a TTL longer than any window, the only right answer is a deferral out of it."""
    state = msgspec.structs.replace(
        subject,
        consents=frozenset(PURPOSES),
        max_per_week=3,
        quiet_start=hhmm(start),
        quiet_end=hhmm((start + length) % (24 * 60)),
    )
    zone = ZoneInfo(state.timezone)
    window = QuietWindow(state.quiet_start, state.quiet_end, zone)
    local_day = day.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    minute = window.start + int(length * into_window)
    now = (local_day + timedelta(minutes=minute)).replace(tzinfo=zone).astimezone(UTC)
    assume(window.contains(now))  # not a wall time skipped by a DST change
    decision = decide(plain_push(topic, ttl), state, None, now, SETTINGS)
    assert decision.outcome == "deferred", decision.reasons
    assert decision.deliver_after is not None
    assert now < decision.deliver_after < decision.expires_at
    assert not window.contains(decision.deliver_after)


@PROPERTY_SETTINGS
@given(
    subject=subjects(),
    policy=st.builds(PolicySettings, max_per_week=st.integers(0, 5), max_per_day=st.integers(1, 3)),
    start=instants,
    submissions=st.lists(
        st.tuples(st.integers(0, 21 * 24 * 60), st.sampled_from(MARKETING)), min_size=1, max_size=30
    ),
)
def test_replayed_submissions_never_exceed_the_caps(
    subject: SubjectState, policy: PolicySettings, start: datetime, submissions: list[tuple[int, str]]
) -> None:
    """Clock times come in any order: the rules must hold whatever was accepted before or after."""
    accepted: list[Scheduled] = []
    for minutes, topic in submissions:
        now = start + timedelta(minutes=minutes)
        nearby = tuple(item for item in accepted if abs(item.at - now) <= timedelta(days=8))
        state = msgspec.structs.replace(subject, consents=frozenset(PURPOSES), scheduled=nearby)
        decision = decide(plain_push(topic), state, None, now, policy)
        if decision.outcome != "rejected":
            accepted.append(Scheduled(decision.deliver_after or now, topic))
    cap = min(subject.max_per_week, policy.max_per_week)
    zone = ZoneInfo(subject.timezone)
    for first in accepted:
        in_week = [item for item in accepted if first.at <= item.at < first.at + timedelta(days=7)]
        assert len(in_week) <= cap
        same_day = [
            item for item in accepted if item.at.astimezone(zone).date() == first.at.astimezone(zone).date()
        ]
        assert len(same_day) <= policy.max_per_day
        same_topic = [item for item in accepted if item.topic == first.topic and item is not first]
        assert all(abs(item.at - first.at) >= timedelta(hours=24) for item in same_topic)
