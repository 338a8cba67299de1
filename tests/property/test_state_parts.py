"""`state_parts_for` names every part of a subject's state that `decide` reads for a push.

Storage loads only those parts (`subject_state.load_many`) and leaves the rest at their
defaults. A part the declaration left out that a rule reads would decide the push on a default:
a transactional push `near` a place judged without the stored location, say. So for any push
and any two states, the decision must not change when the parts not declared for it (its topic,
whether it is personalized, whether it is near a place) are taken from the other state.
"""

from datetime import UTC, datetime, timedelta

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from support import STATE_FIELDS

from policies import (
    PURPOSES,
    TOPICS,
    CampaignState,
    PolicySettings,
    PushNeeds,
    PushRequest,
    Scheduled,
    StateParts,
    SubjectState,
    decide,
    state_parts_for,
)

NOW = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)
ALWAYS = ("status", "active_devices")

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
pushes = st.builds(
    PushRequest,
    # Half transactional: its parts hang on the push's own flags, one topic among eight otherwise.
    topic=st.one_of(st.just("transactional"), st.sampled_from(TOPICS)),
    title=st.just("Your order"),
    body=st.sampled_from(["It has shipped", "20% off today"]),
    data=st.just({}),
    campaign_id=st.sampled_from([None, "cmp_1"]),
    personalized=st.booleans(),
    near_geohash=st.sampled_from([None, "wtw3", "wx4g"]),
)


def test_the_parts_cover_every_field_of_the_state() -> None:
    named = [field for fields in STATE_FIELDS.values() for field in fields]
    assert sorted((*named, *ALWAYS)) == sorted(SubjectState.__struct_fields__)
    assert set(STATE_FIELDS) == set(StateParts.ALL)


@settings(max_examples=600, deadline=None)
@given(
    pushes,
    states,
    states,
    st.sampled_from([None, CampaignState(), CampaignState(paused=True)]),
    st.sampled_from([PolicySettings(), PolicySettings(max_per_day=1, min_quiet_minutes=600)]),
)
def test_parts_not_declared_for_a_push_do_not_change_its_decision(
    push: PushRequest, state: SubjectState, other: SubjectState, campaign: CampaignState | None,
    policy: PolicySettings,
) -> None:  # fmt: skip
    read = state_parts_for([PushNeeds(push.topic, push.personalized, push.near_geohash is not None)])
    unread = {
        field: getattr(other, field)
        for part, fields in STATE_FIELDS.items()
        if part not in read
        for field in fields
    }
    mixed = msgspec.structs.replace(state, **unread)
    assert decide(push, mixed, campaign, NOW, policy) == decide(push, state, campaign, NOW, policy)


@settings(max_examples=300, deadline=None)
@given(pushes)
def test_a_push_whose_content_is_not_open_is_judged_on_what_its_topic_may_need(push: PushRequest) -> None:
    """Dispatch reads the states before it opens the contents: by topic alone, the parts cover
    whatever the push turns out to ask for."""
    read = state_parts_for([PushNeeds(push.topic)])
    needed = state_parts_for([PushNeeds(push.topic, push.personalized, push.near_geohash is not None)])
    assert needed & read == needed


def test_a_unit_reads_what_its_pushes_read_together() -> None:
    plain = PushNeeds("transactional", personalized=False, near=False)
    assert state_parts_for([]) == StateParts(0)
    assert state_parts_for([plain]) == StateParts(0)  # the subject's status and devices alone
    assert state_parts_for([plain._replace(personalized=True)]) == StateParts.CONSENTS
    assert state_parts_for([plain._replace(near=True)]) == StateParts.CONSENTS | StateParts.LOCATION
    assert state_parts_for([PushNeeds("transactional")]) == StateParts.CONSENTS | StateParts.LOCATION
    offer = PushNeeds("promotions", personalized=False, near=False)
    assert state_parts_for([plain, offer]) == StateParts.ALL & ~StateParts.LOCATION
    assert state_parts_for([offer, plain._replace(near=True)]) == StateParts.ALL
    assert state_parts_for([PushNeeds("no such topic")]) == StateParts.ALL  # the stricter, as `is_marketing`
