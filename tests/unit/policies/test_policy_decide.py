"""Table-driven tests of `decide` at a fixed `now`; the cases together give every submission reason code."""

import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import msgspec
import pytest

from policies import (
    ALL_REASON_CODES,
    DISPATCH_ONLY_REASON_CODES,
    PURPOSES,
    CampaignState,
    Decision,
    PolicySettings,
    PushRequest,
    Reason,
    Scheduled,
    SubjectState,
    decide,
)
from policies import reasons as reason_codes

NOW = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)  # 12:00 in UTC, 21:00 in Tokyo, 20:00 in Shanghai
SETTINGS = PolicySettings()


def subject(**changes: Any) -> SubjectState:
    base = SubjectState(
        status="active",
        consents=frozenset(PURPOSES),
        active_devices=1,
        location_geohash="wx4g0b",
        location_at=NOW - timedelta(minutes=5),
    )
    return msgspec.structs.replace(base, **changes)


def push(**changes: Any) -> PushRequest:
    base = PushRequest(
        topic="promotions", title="Summer sale", body="20% off today", data={"deeplink": "w://s"}
    )
    return msgspec.structs.replace(base, **changes)


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


class Case(NamedTuple):
    name: str
    push: PushRequest
    subject: SubjectState
    outcome: str
    reasons: tuple[Reason, ...] = ()
    campaign: CampaignState | None = None
    deliver_after: datetime | None = None


def r(code: str, **detail: str | int) -> Reason:
    return Reason(code, detail)


TOKYO_UNTIL = datetime(2024, 6, 12, 23, 0, tzinfo=UTC)  # 08:00 next morning in Tokyo

CASES = [
    Case("marketing push with everything granted", push(), subject(), "queued"),
    Case(
        # The rules that read a subject are not run; the content's is, since it reads none.
        "unknown subject: no rule of a subject, but the content's",
        push(title="x" * 500),
        subject(status="unknown"),
        "rejected",
        (r("subject_unknown"), r("payload_too_large", field="title", limit=100)),
    ),
    Case(
        "erased subject: no rule of a subject",
        push(),
        subject(status="erased", consents=frozenset()),
        "rejected",
        (r("subject_erased"),),
    ),
    Case(
        "no device, and other reasons are kept",
        push(),
        subject(active_devices=0, topics_off=frozenset({"promotions"})),
        "rejected",
        (r("no_device"), r("topic_opted_out", topic="promotions")),
    ),
    Case(
        "title too long",
        push(title="x" * 101),
        subject(),
        "rejected",
        (r("payload_too_large", field="title", limit=100),),
    ),
    Case(
        # 100 Hangul syllables as letters (jamo), 240 code points: composed, they are 100
        "a title of 100 characters written decomposed (NFD) is 100, not its code points",
        push(title=unicodedata.normalize("NFD", "한국어" * 33 + "가")),
        subject(),
        "queued",
        (),
    ),
    Case(
        "a title of characters NFC decomposes (Devanagari qa) counts as sent",
        push(title="\u0958" * 51 + "\ufb2c" * 34),
        subject(),
        "queued",
        (),
    ),
    Case(
        "a title of 101 characters written decomposed is too long as composed",
        push(title=unicodedata.normalize("NFD", "é" * 101)),
        subject(),
        "rejected",
        (r("payload_too_large", field="title", limit=100),),
    ),
    Case(
        "body too long",
        push(body="y" * 501),
        subject(),
        "rejected",
        (r("payload_too_large", field="body", limit=500),),
    ),
    Case(
        "whole payload too large",
        push(data={"deeplink": "w://" + "a" * 4100}),
        subject(),
        "rejected",
        (r("payload_too_large", field="payload", limit=3840),),
    ),
    Case(
        "data key not allowed",
        push(data={"user_email": "none", "deeplink": "w://s"}),
        subject(),
        "rejected",
        (r("payload_field_not_allowed", field="user_email"),),
    ),
    Case(
        "pii in body and data, kind named but not the text",
        push(body="Reply to li@example.com", data={"coupon_code": "13800138000"}),
        subject(),
        "rejected",
        (
            r("payload_pii", field="body", kind="email"),
            r("payload_pii", field="data.coupon_code", kind="phone"),
        ),
    ),
    Case(
        # Reasons are stored unsealed and outlive erasure: a key holding personal data or free
        # text is scanned like a value and never repeated, in either reason.
        "data keys that must not be repeated are called data",
        push(data={"alice@example.com": "x", "my name is Alice": "y", "deeplink": "w://s"}),
        subject(),
        "rejected",
        (r("payload_field_not_allowed", field="data"), r("payload_pii", field="data", kind="email")),
    ),
    Case(
        "a value under an unnameable key is reported under data",
        push(topic="transactional", data={"+8613800138000": "li@example.com"}),
        subject(consents=frozenset()),
        "rejected",
        (
            r("payload_field_not_allowed", field="data"),
            r("payload_pii", field="data", kind="phone"),
            r("payload_pii", field="data", kind="email"),
        ),
    ),
    Case(
        # The content's reasons are the content's, whoever the push is for.
        "an erased subject is said first, with what the content carries",
        push(body="Write to alice@example.com"),
        subject(status="erased"),
        "rejected",
        (r("subject_erased"), r("payload_pii", field="body", kind="email")),
    ),
    Case(
        # A body may hold line breaks, and no detector reads across one: a number broken over
        # lines reached the device whole. Two short numbers on two lines are still no one's.
        "a number broken over lines is read as one",
        push(
            topic="transactional",
            title="Order 1234\n5678 shipped",
            body="Call me: 138\n1234\n5678",
            data={"deeplink": "Card:\r\n4111\r\n1111\r\n1111\r\n1111"},
        ),
        subject(consents=frozenset()),
        "rejected",
        (r("payload_pii", field="body", kind="phone"), r("payload_pii", field="data.deeplink", kind="card")),
    ),
    Case(
        "transactional minimization still applies",
        push(topic="transactional", title="Paid by 4111111111111111"),
        subject(consents=frozenset()),
        "rejected",
        (r("payload_pii", field="title", kind="card"),),
    ),
    Case(
        "transactional needs no consent and ignores quiet hours and caps",
        push(topic="transactional"),
        subject(
            consents=frozenset(),
            timezone="Asia/Tokyo",
            max_per_week=0,
            topics_off=frozenset({"transactional"}),
            scheduled=(Scheduled(ago(hours=1), "transactional"),),
        ),
        "queued",
    ),
    Case(
        "transactional but personalized",
        push(topic="transactional", personalized=True),
        subject(consents=frozenset()),
        "rejected",
        (r("no_personalization_consent"),),
    ),
    Case(
        "missing purposes each named",
        push(topic="cart_reminders"),
        subject(consents=frozenset()),
        "rejected",
        (r("no_consent", purpose="marketing"), r("no_consent", purpose="personalization")),
    ),
    Case(
        "topic turned off",
        push(),
        subject(topics_off=frozenset({"promotions"})),
        "rejected",
        (r("topic_opted_out", topic="promotions"),),
    ),
    Case(
        "personalized promotion without personalization",
        push(personalized=True),
        subject(consents=frozenset({"marketing"})),
        "rejected",
        (r("no_personalization_consent"),),
    ),
    Case(
        "near without location consent",
        push(topic="nearby_offers", near_geohash="wx4g"),
        subject(consents=frozenset({"marketing"})),
        "rejected",
        (r("no_consent", purpose="location"), r("no_location_consent")),
    ),
    Case(
        "near with stale location",
        push(topic="nearby_offers", near_geohash="wx4g"),
        subject(location_at=ago(minutes=31)),
        "rejected",
        (r("location_stale", max_age_minutes=30),),
    ),
    Case(
        "near with a location stamped more than its freshness ahead (a clock stepped back)",
        push(topic="nearby_offers", near_geohash="wx4g"),
        subject(location_at=ago(minutes=-31)),
        "rejected",
        (r("location_stale", max_age_minutes=30),),
    ),
    Case(
        "near with a location stamped a little ahead (skew between processes)",
        push(topic="nearby_offers", near_geohash="wx4g"),
        subject(location_at=ago(minutes=-30)),
        "queued",
    ),
    Case(
        "near without any stored location",
        push(topic="nearby_offers", near_geohash="wx4g"),
        subject(location_geohash=None, location_at=None),
        "rejected",
        (r("location_stale", max_age_minutes=30),),
    ),
    Case(
        "near elsewhere",
        push(topic="nearby_offers", near_geohash="wtw3"),
        subject(),
        "rejected",
        (r("not_nearby"),),
    ),
    Case(
        "empty area would match everyone",
        push(topic="nearby_offers", near_geohash=""),
        subject(),
        "rejected",
        (r("not_nearby"),),
    ),
    Case(
        "near and fresh inside",
        push(topic="nearby_offers", near_geohash="wx4g"),
        subject(location_at=ago(minutes=30)),
        "queued",
    ),
    Case(  # judged when sent, at the window's end: a deferral says nothing of where the user is
        "near and fresh now, deferred past quiet hours",
        push(topic="nearby_offers", near_geohash="wx4g"),
        subject(timezone="Asia/Tokyo"),
        "deferred",
        (r("quiet_hours", until="2024-06-12T23:00:00Z"),),
        deliver_after=TOKYO_UNTIL,
    ),
    Case(
        "topic muted after a complaint",
        push(),
        subject(muted_until={"promotions": NOW + timedelta(days=3)}),
        "rejected",
        (r("recent_complaint", topic="promotions", until="2024-06-15T12:00:00Z"),),
    ),
    Case("mute over", push(), subject(muted_until={"promotions": NOW}), "queued"),
    Case(  # it was rejected: the mute was judged at submission, not when the push would go out
        "mute over by the end of quiet hours",
        push(),
        subject(timezone="Asia/Tokyo", muted_until={"promotions": TOKYO_UNTIL - timedelta(hours=1)}),
        "deferred",
        (r("quiet_hours", until="2024-06-12T23:00:00Z"),),
        deliver_after=TOKYO_UNTIL,
    ),
    Case(
        "mute still on at the end of quiet hours",
        push(),
        subject(timezone="Asia/Tokyo", muted_until={"promotions": TOKYO_UNTIL + timedelta(minutes=1)}),
        "rejected",
        (
            r("recent_complaint", topic="promotions", until="2024-06-12T23:01:00Z"),
            r("quiet_hours", until="2024-06-12T23:00:00Z"),
        ),
    ),
    Case(
        "campaign paused",
        push(campaign_id="c1"),
        subject(),
        "rejected",
        (r("campaign_paused"),),
        CampaignState(paused=True),
    ),
    Case(
        "quiet hours defer to the window's end",
        push(),
        subject(timezone="Asia/Tokyo"),
        "deferred",
        (r("quiet_hours", until="2024-06-12T23:00:00Z"),),
        deliver_after=TOKYO_UNTIL,
    ),
    Case(
        "quiet hours past expiry reject",
        push(ttl_seconds=11 * 3600),
        subject(timezone="Asia/Tokyo"),
        "rejected",
        (r("quiet_hours", until="2024-06-12T23:00:00Z"),),
    ),
    Case(
        "weekly cap reached",
        push(),
        subject(
            scheduled=(
                Scheduled(ago(days=6), "flash_sales"),
                Scheduled(ago(days=4), "product_tips"),
                Scheduled(ago(days=2), "flash_sales"),
            )
        ),
        "rejected",
        (r("frequency_capped", window="week", limit=3),),
    ),
    Case(
        "user's own lower cap",
        push(),
        subject(max_per_week=1, scheduled=(Scheduled(ago(days=3), "flash_sales"),)),
        "rejected",
        (r("frequency_capped", window="week", limit=1),),
    ),
    Case(
        "a week later the window has moved on",
        push(),
        subject(max_per_week=1, scheduled=(Scheduled(ago(days=7), "flash_sales"),)),
        "queued",
    ),
    Case(
        "future pushes count too",
        push(),
        subject(
            scheduled=(
                Scheduled(ago(days=-1), "flash_sales"),
                Scheduled(ago(days=-3), "product_tips"),
                Scheduled(ago(days=2), "flash_sales"),
            )
        ),
        "rejected",
        (r("frequency_capped", window="week", limit=3),),
    ),
    Case(
        "daily cap in the local day",
        push(),
        subject(scheduled=(Scheduled(ago(hours=11), "flash_sales"),)),
        "rejected",
        (r("frequency_capped", window="day", limit=1),),
    ),
    Case(
        "a waiting push of a topic switched off since holds no cap: dispatch stops it",
        push(),
        subject(
            topics_off=frozenset({"flash_sales"}),
            scheduled=(Scheduled(ago(hours=-2), "flash_sales", waiting=True),),
        ),
        "queued",
    ),
    Case(
        "a waiting push of a topic muted past its time holds no cap",
        push(),
        subject(
            muted_until={"flash_sales": ago(days=-30)},
            scheduled=(Scheduled(ago(hours=-2), "flash_sales", waiting=True),),
        ),
        "queued",
    ),
    Case(
        "a waiting push of a topic whose consent was withdrawn since holds no cap",
        push(),
        subject(
            consents=frozenset(PURPOSES) - {"personalization"},
            scheduled=(Scheduled(ago(hours=-2), "cart_reminders", waiting=True),),
        ),
        "queued",
    ),
    Case(
        "a push of that topic already sent still counts",
        push(),
        subject(topics_off=frozenset({"flash_sales"}), scheduled=(Scheduled(ago(hours=2), "flash_sales"),)),
        "rejected",
        (r("frequency_capped", window="day", limit=1),),
    ),
    Case(
        "a waiting push the mute ends before still counts",
        push(),
        subject(
            muted_until={"flash_sales": ago(hours=-1)},
            scheduled=(Scheduled(ago(hours=-2), "flash_sales", waiting=True),),
        ),
        "rejected",
        (r("frequency_capped", window="day", limit=1),),
    ),
    Case(
        "same topic within 24 hours",
        push(),
        subject(scheduled=(Scheduled(ago(hours=20), "promotions"),)),
        "rejected",
        (r("topic_interval", topic="promotions", hours=24),),
    ),
    Case(
        "same topic exactly 24 hours ago",
        push(),
        subject(scheduled=(Scheduled(ago(hours=24), "promotions"),)),
        "queued",
    ),
    Case(
        "frequency judged at the deferred time",
        push(),
        subject(
            timezone="Asia/Tokyo", scheduled=(Scheduled(TOKYO_UNTIL + timedelta(hours=2), "flash_sales"),)
        ),
        "rejected",
        (r("quiet_hours", until="2024-06-12T23:00:00Z"), r("frequency_capped", window="day", limit=1)),
    ),
]


def run(case: Case) -> Decision:
    return decide(case.push, case.subject, case.campaign, NOW, SETTINGS)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_decide(case: Case) -> None:
    decision = run(case)
    assert (decision.outcome, decision.reasons) == (case.outcome, case.reasons)
    assert decision.deliver_after == case.deliver_after
    assert decision.expires_at == NOW + timedelta(seconds=case.push.ttl_seconds)
    assert bool(decision.allowed_by) is (case.outcome != "rejected")


def test_the_named_constants_are_the_codes_of_the_type() -> None:
    """policies/reasons.py spells each code twice, as a constant the rules use and in the
    `ReasonCode` type the API takes: the two lists may not drift apart."""
    named = {value for name, value in vars(reason_codes).items() if name.isupper() and isinstance(value, str)}
    assert named == ALL_REASON_CODES


def test_every_submission_reason_code_is_produced() -> None:
    produced = {reason.code for case in CASES for reason in run(case).reasons}
    assert produced == ALL_REASON_CODES - DISPATCH_ONLY_REASON_CODES


def test_allowed_by_explains_a_queued_push() -> None:
    decision = decide(
        push(), subject(scheduled=(Scheduled(ago(days=3), "flash_sales"),)), None, NOW, SETTINGS
    )
    assert decision.allowed_by == (
        "consent:marketing",
        "topic:promotions on",
        "quiet hours: outside 21:00-08:00 UTC",
        "frequency: 2 of 3 this week",
        "frequency: 1 of 1 today",
    )


def test_a_ttl_over_a_lowered_maximum_keeps_its_expiry() -> None:
    """The admin maximum is checked when a push is accepted; at dispatch the push is judged
    with what is left of the TTL it was accepted with, which a maximum lowered since must
    neither refuse nor shorten. Only the spec's seven days bound every TTL."""
    lowered = PolicySettings(max_ttl_seconds=3600, default_ttl_seconds=3600)
    decision = decide(push(ttl_seconds=604800), subject(), None, NOW, lowered)
    assert (decision.outcome, decision.expires_at) == ("queued", NOW + timedelta(seconds=604800))


def test_a_reserved_data_key_a_stored_policy_allows_is_still_not_allowed() -> None:
    """`PUT /v1/admin/policy` refuses `from` now; a version stored before keeps allowing it, and
    FCM refuses every push carrying it (accepted, then failed on each Android device)."""
    stored = PolicySettings(allowed_data_keys={"promotions": ["deeplink", "from"]})
    decision = decide(push(data={"deeplink": "w://s", "from": "Acme"}), subject(), None, NOW, stored)
    assert (decision.outcome, decision.reasons) == (
        "rejected",
        (r("payload_field_not_allowed", field="from"),),
    )


@pytest.mark.parametrize(
    ("window", "minimum", "outcome"),
    [
        (("12:00", "12:00"), 0, "queued"),  # no quiet hours, and no minimum to hold them to
        (("12:00", "12:00"), 600, "deferred"),  # saved before the minimum: the default 11:00-21:00
        (("11:00", "12:30"), 600, "deferred"),  # made 10 h from its start: 11:00-21:00
        (("22:00", "06:00"), 600, "queued"),  # made 22:00-08:00: 12:00 is outside it
        (("13:00", "23:00"), 600, "queued"),  # 10 h: long enough, the user's own window stands
        (("11:30", "12:30"), 60, "deferred"),  # long enough: the user's own
        (("10:30", "11:30"), 120, "deferred"),  # made 10:30-12:30
    ],
)
def test_a_window_shorter_than_the_minimum_is_made_that_long_from_its_start(
    window: tuple[str, str], minimum: int, outcome: str
) -> None:
    """Regression: the minimum was checked only when a window was changed, so one saved before an
    admin raised it (even none at all, start == end) went on letting marketing through at night.
    Then the default window stood in for a short one, and let pushes into the minutes the user
    had chosen outside it (a lunchtime window, 11:30-12:15 here against a default of 11:00-21:00
    would have been covered, but 09:30-10:30 against 21:00-08:00 was not): it is lengthened from
    its start instead, so every minute the user chose stays quiet."""
    settings = PolicySettings(min_quiet_minutes=minimum, quiet_start="11:00", quiet_end="21:00")
    state = subject(quiet_start=window[0], quiet_end=window[1])
    assert decide(push(), state, None, NOW, settings).outcome == outcome


def test_a_minimum_keeps_a_lunchtime_window_quiet() -> None:
    """Regression (a review): 09:30-10:30 saved before a minimum of two hours was judged as the
    default 21:00-08:00, and a push went out at 10:00, inside the window the user had chosen."""
    settings = PolicySettings(min_quiet_minutes=120)
    state = subject(quiet_start="09:30", quiet_end="10:30")
    decision = decide(push(), state, None, NOW.replace(hour=10), settings)
    assert (decision.outcome, decision.deliver_after) == ("deferred", NOW.replace(hour=11, minute=30))


@pytest.mark.parametrize(
    ("bad_push", "bad_subject", "now", "error"),
    [
        (push(topic="lottery"), subject(), NOW, KeyError),
        (push(ttl_seconds=0), subject(), NOW, ValueError),
        (push(ttl_seconds=604801), subject(), NOW, ValueError),
        (push(), subject(timezone="Mars/Olympus_Mons"), NOW, LookupError),
        (push(), subject(quiet_start="24:00"), NOW, ValueError),
        (push(), subject(), NOW.replace(tzinfo=None), ValueError),
    ],
)
def test_decide_raises_instead_of_allowing(
    bad_push: PushRequest, bad_subject: SubjectState, now: datetime, error: type[Exception]
) -> None:
    """No reason code means "could not decide", so decide raises and the caller denies."""
    with pytest.raises(error):
        decide(bad_push, bad_subject, None, now, SETTINGS)


def test_a_now_in_another_zone_is_the_same_moment_for_every_window() -> None:
    """`now` given in New York's zone: Python's arithmetic on it keeps the wall clock, so the
    week before 2024-03-12 12:00 EDT, across the spring change, was 167 hours; three pushes in
    the 168 hours before it were not all counted, and a fourth was queued. The same moment in
    UTC is refused; now in any zone is decided as that moment in UTC."""
    new_york = ZoneInfo("America/New_York")
    now = datetime(2024, 3, 12, 12, 0, tzinfo=new_york)
    planned = [datetime(2024, 3, 5, 16, 30, tzinfo=UTC), datetime(2024, 3, 7, 16, tzinfo=UTC),
               datetime(2024, 3, 9, 16, tzinfo=UTC)]  # fmt: skip
    them = subject(
        timezone="America/New_York",
        scheduled=tuple(Scheduled(at=at, topic="product_tips") for at in planned),
        location_at=now.astimezone(UTC) - timedelta(minutes=5),
    )
    in_new_york = decide(push(), them, None, now, SETTINGS)
    in_utc = decide(push(), them, None, now.astimezone(UTC), SETTINGS)
    assert (in_new_york.outcome, in_new_york.reasons) == (in_utc.outcome, in_utc.reasons)
    assert in_utc.outcome == "rejected"
    assert in_new_york.expires_at.tzinfo is UTC


def muted_with_a_push_waiting(now: datetime, *, at: str, expires: str, until: str) -> SubjectState:
    """A subject with a promotions push waiting (planned `at`, expiring at `expires`) and
    promotions muted `until` (times in UTC)."""

    def utc(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    waiting = Scheduled(utc(at), "promotions", waiting=True, expires_at=utc(expires))
    return subject(
        muted_until={"promotions": utc(until)}, scheduled=(waiting,), location_at=now - timedelta(minutes=5)
    )


def test_a_waiting_push_counts_when_it_goes_after_a_mute_it_was_planned_within() -> None:
    """Planned at 22:00 under quiet hours set since (21:00-08:00 now), a push goes at 08:00, after
    its topic's mute ends at 07:00: dispatch sends it then, so it counts that day. Taken as
    stopped by the mute at its planned time, it let a push of another topic be answered
    `deferred` to 08:00, which dispatch then refused as over the day's cap."""
    now = datetime(2025, 6, 10, 21, 30, tzinfo=UTC)
    them = muted_with_a_push_waiting(
        now, at="2025-06-10T22:00", expires="2025-06-11T18:00", until="2025-06-11T07:00"
    )
    decision = decide(push(topic="feedback_requests"), them, None, now, SETTINGS)
    assert (decision.outcome, decision.reasons) == (
        "rejected",
        (r("quiet_hours", until="2025-06-11T08:00:00Z"), r("frequency_capped", window="day", limit=1)),
    )
    muted_longer = msgspec.structs.replace(
        them, muted_until={"promotions": datetime(2025, 6, 11, 9, tzinfo=UTC)}
    )
    decision = decide(push(topic="feedback_requests"), muted_longer, None, now, SETTINGS)
    assert (decision.outcome, decision.deliver_after) == ("deferred", datetime(2025, 6, 11, 8, tzinfo=UTC))


def test_an_overdue_waiting_push_whose_mute_has_ended_counts() -> None:
    """Planned at 11:00, still waiting at 12:00 (the worker behind), its topic muted until 11:30:
    dispatch judges the mute when it claims it, after 12:00, and sends it. Compared with the mute
    at its planned time it was taken as stopped, and a second push was queued into the same day."""
    now = datetime(2025, 6, 10, 12, 0, tzinfo=UTC)
    them = muted_with_a_push_waiting(
        now, at="2025-06-10T11:00", expires="2025-06-10T18:00", until="2025-06-10T11:30"
    )
    decision = decide(push(topic="feedback_requests"), them, None, now, SETTINGS)
    assert (decision.outcome, decision.reasons) == (
        "rejected",
        (r("frequency_capped", window="day", limit=1),),
    )


def test_an_overdue_retry_counts_when_it_goes_late_by_its_planned_time() -> None:
    """Planned at 23:50, its retry due at 23:59:30 and still waiting at 00:00:10: dispatch sends
    it over a minute past its planned time, so on the new day, where it counts. Judged late by
    the retry's due time, it counted on the old day and let a push into the new one that
    dispatch then refused. Within a minute of its planned time it keeps that time."""
    now = datetime(2025, 6, 11, 0, 0, 10, tzinfo=UTC)
    quiet_at_three = {"quiet_start": "03:00", "quiet_end": "04:00"}

    def with_retry(planned: datetime) -> SubjectState:
        retry = Scheduled(
            datetime(2025, 6, 10, 23, 59, 30, tzinfo=UTC), "promotions", waiting=True,
            expires_at=now + timedelta(hours=6), planned=planned,
        )  # fmt: skip
        return subject(scheduled=(retry,), **quiet_at_three)

    late = decide(
        push(topic="feedback_requests"),
        with_retry(datetime(2025, 6, 10, 23, 50, tzinfo=UTC)),
        None,
        now,
        SETTINGS,
    )
    assert (late.outcome, late.reasons) == ("rejected", (r("frequency_capped", window="day", limit=1),))
    on_time = with_retry(datetime(2025, 6, 10, 23, 59, 20, tzinfo=UTC))  # sent within its minute
    assert decide(push(topic="feedback_requests"), on_time, None, now, SETTINGS).outcome == "queued"
