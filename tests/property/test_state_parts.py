"""`state_parts_for` names every part of a subject's state that `decide` reads for a push.

Storage loads only those parts (`subject_state.load_many`) and leaves the rest at their
defaults. A part the declaration left out that a rule reads would decide the push on a default:
a transactional push `near` a place judged without the stored location, say. So for any push
and any two states, the decision must not change when the parts not declared for it (its topic,
whether it is personalized, whether it is near a place, whether it is judged at submission) are
taken from the other state.
"""

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_states import NOW, states
from support import STATE_FIELDS

from policies import (
    TOPICS,
    CampaignState,
    PolicySettings,
    PushNeeds,
    PushRequest,
    StateParts,
    SubjectState,
    decide,
    state_parts_for,
)

ALWAYS = ("status", "active_devices")

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
    st.booleans(),
)
def test_parts_not_declared_for_a_push_do_not_change_its_decision(
    push: PushRequest, state: SubjectState, other: SubjectState, campaign: CampaignState | None,
    policy: PolicySettings, submitted: bool,
) -> None:  # fmt: skip
    near = push.near_geohash is not None
    read = state_parts_for([PushNeeds(push.topic, push.personalized, near, submitted)])
    unread = {
        field: getattr(other, field)
        for part, fields in STATE_FIELDS.items()
        if part not in read
        for field in fields
    }
    mixed = msgspec.structs.replace(state, **unread)
    judged = decide(push, state, campaign, NOW, policy, submitted=submitted)
    assert decide(push, mixed, campaign, NOW, policy, submitted=submitted) == judged


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
    assert state_parts_for([plain._replace(near=True, submitted=True)]) == StateParts.CONSENTS
    assert state_parts_for([PushNeeds("transactional")]) == StateParts.CONSENTS | StateParts.LOCATION
    offer = PushNeeds("promotions", personalized=False, near=False)
    assert state_parts_for([plain, offer]) == StateParts.ALL & ~StateParts.LOCATION
    assert state_parts_for([offer, plain._replace(near=True)]) == StateParts.ALL
    assert state_parts_for([PushNeeds("no such topic")]) == StateParts.ALL  # the stricter, as `is_marketing`
