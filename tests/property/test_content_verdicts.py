"""A unit's pushes judged with one `ContentVerdicts` are decided exactly as each judged alone.

The memo skips minimization for a push whose content matches the last one judged: any field of
the content it failed to compare would let a push through on another's verdict (a PII body
after a clean one, a disallowed data key after an allowed one).
"""

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from policies import PURPOSES, ContentVerdicts, PolicySettings, PushRequest, SubjectState, decide

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
    judged = ContentVerdicts()
    for push, policy in unit:
        assert decide(push, SUBJECT, None, NOW, policy, judged) == decide(push, SUBJECT, None, NOW, policy)


def test_a_clean_push_after_a_refused_one_of_the_same_title_is_queued() -> None:
    judged = ContentVerdicts()
    refused = PushRequest(topic="promotions", title="Sale", body="Mail ann@example.com", data={})
    clean = PushRequest(topic="promotions", title="Sale", body="Mail us", data={})
    assert decide(refused, SUBJECT, None, NOW, PolicySettings(), judged).outcome == "rejected"
    assert decide(clean, SUBJECT, None, NOW, PolicySettings(), judged).outcome == "queued"


def test_a_policy_read_mid_unit_judges_the_same_content_again() -> None:
    judged = ContentVerdicts()
    push = PushRequest(topic="promotions", title="Sale", body="20% off", data={"deeplink": "w://s"})
    assert decide(push, SUBJECT, None, NOW, PolicySettings(), judged).outcome == "queued"
    decision = decide(push, SUBJECT, None, NOW, STRICT, judged)
    assert [reason.code for reason in decision.reasons] == ["payload_field_not_allowed"]
