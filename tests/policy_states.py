"""Hypothesis strategies of subject states for the policy properties, at one fixed moment."""

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from policies import PURPOSES, TOPICS, Scheduled, SubjectState

NOW = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)

moments = st.sampled_from([timedelta(minutes=m) for m in (-20_000, -600, -30, 0, 45, 900)])
planned = st.builds(
    Scheduled,
    at=moments.map(lambda d: NOW + d),
    topic=st.sampled_from(TOPICS),
    waiting=st.booleans(),
    expires_at=st.just(NOW + timedelta(hours=30)),
)
states = st.builds(
    SubjectState,
    status=st.just("active"),
    consents=st.frozensets(st.sampled_from(PURPOSES)),
    topics_off=st.frozensets(st.sampled_from(TOPICS)),
    timezone=st.sampled_from(["UTC", "Asia/Shanghai", "America/New_York"]),
    quiet_start=st.sampled_from(["21:00", "11:00", "00:00"]),
    quiet_end=st.sampled_from(["08:00", "13:00", "00:00"]),
    max_per_week=st.integers(0, 4),
    active_devices=st.integers(0, 2),
    location_geohash=st.sampled_from([None, "wtw3sj", "wx4g0b"]),
    location_at=st.one_of(st.none(), moments.map(lambda d: NOW + d)),
    muted_until=st.dictionaries(st.sampled_from(TOPICS), moments.map(lambda d: NOW + d), max_size=2),
    scheduled=st.lists(planned, max_size=4).map(tuple),
)
