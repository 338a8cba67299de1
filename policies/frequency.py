"""Rule 10, frequency: marketing pushes per user stay within the weekly, daily and per-topic limits.

Judged at the planned delivery time `at` (now, or the end of quiet hours), because that
is when the push counts against the user's week. Windows are half-open: two pushes
exactly seven days (or `topic_interval_hours`) apart do not share a window. The weekly
cap is the lower of the user's and the system's. `scheduled` must hold every accepted
marketing push within eight days either side, so every window through `at` is complete.
A push still waiting that dispatch will stop for what the user did since (a consent its topic
needs withdrawn, its topic switched off or muted past its time) does not count: counting it
refused pushes the user wanted, leaving them nothing. (Storage leaves out the waiting pushes
of a campaign paused since.) A waiting push counts at the time dispatch will send it by the
user's quiet hours and time zone as they are now (now, if it is over `SEND_LAG` overdue), and
not at all if that is past its expiry.
Reason codes: `frequency_capped` (detail `window`: week or day, and `limit`),
`topic_interval` (detail `topic`, `hours`).
"""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from policies import reasons
from policies.catalog import TOPIC_PURPOSES
from policies.context import RuleContext, Scheduled, SubjectState
from policies.decision import Reason, RuleResult, passed, reject
from policies.quiet_hours import QuietTimes
from policies.settings import PolicySettings

WEEK = timedelta(days=7)
SEND_LAG = timedelta(minutes=1)
"""How late a push may be sent and still count at its planned time: dispatch moves a marketing
push sent later than that to the time it is sent, where the caps then count it."""


def busiest_week(times: list[datetime], at: datetime) -> int:
    """Most pushes, `at` included, in any 7-day window containing `at`.

    The busiest window can always be slid forward until it starts at a push, so only
    windows starting at pushes in (at - 7 days, at] need counting.
    """
    if not times:  # most subjects of a campaign: nothing planned yet
        return 1
    points = sorted([*times, at])
    starts = [point for point in points if at - WEEK < point <= at]
    return max(sum(1 for point in points if start <= point < start + WEEK) for start in starts)


def check_frequency(
    ctx: RuleContext, now: datetime, at: datetime, settings: PolicySettings, quiet: QuietTimes
) -> RuleResult:
    subject = ctx.subject
    counted = [
        (when, item.topic)
        for item in subject.scheduled
        if (when := _due(item, subject, settings, quiet, now)) is not None
        and not _stopped(item, subject, max(when, now))
    ]
    times = [when for when, _ in counted]
    found = []
    cap = min(subject.max_per_week, settings.max_per_week)
    if busiest_week(times, at) > cap:
        found.append(Reason(reasons.FREQUENCY_CAPPED, {"window": "week", "limit": cap}))
    same_day = 1 + _on_the_day_of(at, times, subject.timezone)
    if same_day > settings.max_per_day:
        found.append(Reason(reasons.FREQUENCY_CAPPED, {"window": "day", "limit": settings.max_per_day}))
    topic = ctx.push.topic
    if _too_soon(counted, topic, at, settings.topic_interval_hours):
        found.append(Reason(reasons.TOPIC_INTERVAL, {"topic": topic, "hours": settings.topic_interval_hours}))
    if found:
        return reject(*found)
    this_week = 1 + sum(1 for moment in times if at - WEEK < moment <= at) if times else 1
    return passed(
        f"frequency: {this_week} of {cap} this week", f"frequency: {same_day} of {settings.max_per_day} today"
    )


# The two below skip their date arithmetic for a subject with nothing counted, as most of a
# campaign's are: it was a third of the caps' time (bench/decide_floor.py).


def _on_the_day_of(at: datetime, times: list[datetime], timezone: str) -> int:
    """How many of `times` fall on `at`'s date in the user's zone."""
    if not times:
        return 0
    zone = ZoneInfo(timezone)
    day = at.astimezone(zone).date()
    return sum(1 for moment in times if moment.astimezone(zone).date() == day)


def _too_soon(counted: list[tuple[datetime, str]], topic: str, at: datetime, hours: int) -> bool:
    """Whether a push of this topic is counted less than `hours` from `at`."""
    if not counted:
        return False
    interval = timedelta(hours=hours)
    return any(other == topic and abs(when - at) < interval for when, other in counted)


def _due(
    item: Scheduled, subject: SubjectState, settings: PolicySettings, quiet: QuietTimes, now: datetime
) -> datetime | None:
    """When a push counts: a waiting one is decided again when due, under the user's quiet hours
    and time zone as they are then (as now, here), so one planned by settings changed since is
    deferred again, to its new time, or expires, and counts nowhere (None). Counted at its old
    time, it refused a push the user wanted on a day it would never go. Due already but not yet
    sent (the worker behind), it is judged at now: a push due at 20:59 and still waiting at 21:01
    goes in the morning, and counted at 20:59 it left that morning's room to the next push,
    answered `deferred` there and refused then. Outside quiet hours, one overdue by more than
    `SEND_LAG` is sent, and counted, at the time dispatch reaches it, now at the soonest: one due
    at 23:59 and waiting at 00:05 takes the new day's room, and counted on the old day it let a
    push through that dispatch then refused. Late by its planned time, as dispatch measures it,
    not by a retry's due time: a retry due at 23:59:30 of a push planned at 23:50 goes late."""
    if not item.waiting or item.expires_at is None:
        return item.at
    if item.at >= item.expires_at:  # a retry due at its expiry: it ends `expired` then
        return None
    until = quiet.at(subject, max(item.at, now), settings)
    if isinstance(until, RuleResult):
        late = now > item.at and now - (item.planned or item.at) > SEND_LAG
        return now if late else item.at
    return None if until >= item.expires_at else until


def _stopped(item: Scheduled, subject: SubjectState, due: datetime) -> bool:
    """Whether dispatch will stop this waiting push for what the user did since: a consent its
    topic needs withdrawn (`no_consent`), its topic switched off (`topic_opted_out`), or muted
    past the time dispatch will judge it, `due` and never before now (`recent_complaint`): past
    its planned time, a push that quiet hours move to after the mute ends was taken as stopped,
    and a push answered `deferred` into its day was refused there when it went; and one overdue
    (the worker behind) whose mute ended meanwhile, which goes, let another through its day. (A
    push made personal or sent near a place also needs personalization or location consent: that
    is sealed in its content, so it still counts.)"""
    if not item.waiting:
        return False
    until = subject.muted_until.get(item.topic)
    return (
        not TOPIC_PURPOSES.get(item.topic, frozenset()) <= subject.consents
        or item.topic in subject.topics_off
        or (until is not None and until > due)
    )
