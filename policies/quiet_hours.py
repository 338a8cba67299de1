"""Rule 9, quiet hours: a marketing push never arrives inside the user's quiet window.

The window is local wall time in the user's zone, may cross midnight, and `start == end`
means none. A push that falls inside is deferred to the window's end if it can still be
delivered before it expires, else rejected: accepting a push already known to expire
would only move the refusal to dispatch time.
Wall time to UTC across DST: an end that does not exist (spring forward) becomes the
first instant after the gap; an ambiguous end (fall back) is its first occurrence
(fold=0) unless that lies before `now`, in which case the second one is the next end.
A window shorter than the policy's `min_quiet_minutes` (saved before the minimum was set; a
change is refused) is lengthened to it from its start; no window at all takes the default.
Reason codes: `quiet_hours` (detail `until`; deferred, or rejected when `until` is not
before `expires_at`).
"""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from policies import reasons
from policies.context import RuleContext, SubjectState
from policies.decision import Reason, RuleResult, defer, passed, reject, rfc3339
from policies.settings import PolicySettings, ascii_hhmm, hhmm_minutes, quiet_window_minutes


class QuietWindow:
    """A local quiet window; kept as minutes after midnight because that is what the rule compares.

    A moment is quiet when the user's clock reads inside the window, and also when a window has
    begun and not yet ended: the two differ only on the night a clock is set back. There the
    clock reads its repeated hour twice, and a window that began in the first pass (23:30 before
    midnight becomes 23:00 again) would end for the second, letting a push through the night
    the user had already begun. Both readings are asked for only within two days of a change of
    offset; elsewhere they agree, and the clock's is the cheaper."""

    def __init__(self, start: str, end: str, zone: ZoneInfo) -> None:
        self.start = hhmm_minutes(start)
        self.end = hhmm_minutes(end)
        self.zone = zone
        self.text = f"{start}-{end} {zone.key}"

    def contains(self, moment: datetime) -> bool:
        if self.start == self.end:
            return False
        return self._clock_reads_inside(moment) or (
            not self._steady(moment) and self._begun_window_end(moment) is not None
        )

    def end_after(self, moment: datetime) -> datetime:
        """The nearest end of what makes `moment` quiet, as a UTC instant (another may still hold
        then: `next_allowed` asks again)."""
        ends = []
        if self._clock_reads_inside(moment):
            ends.append(self._clock_end_after(moment))
        if not self._steady(moment) and (begun := self._begun_window_end(moment)) is not None:
            ends.append(begun)
        return min(ends)

    def next_allowed(self, moment: datetime) -> datetime:
        """Loops because a gap can move an end into the next window (a window of nearly 24 h)."""
        while self.contains(moment):
            moment = self.end_after(moment)
        return moment

    def _clock_reads_inside(self, moment: datetime) -> bool:
        local = moment.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def _clock_end_after(self, moment: datetime) -> datetime:
        """The end of the window the clock reads `moment` inside: an ambiguous end (fall back)
        is its first occurrence unless that lies before `moment`, then the second."""
        local = moment.astimezone(self.zone)
        day = local.date()
        if self.start > self.end and local.hour * 60 + local.minute >= self.start:
            day += timedelta(days=1)
        wall = time(self.end // 60, self.end % 60)
        first = local_to_utc(day, wall, self.zone, fold=0)
        return first if first > moment else local_to_utc(day, wall, self.zone, fold=1)

    def _begun_window_end(self, moment: datetime) -> datetime | None:
        """The end of a window that began at or before `moment` and ends after it, if any: from
        the first occurrence of its start to the first occurrence of its end after that."""
        today = moment.astimezone(self.zone).date()
        start, end = time(self.start // 60, self.start % 60), time(self.end // 60, self.end % 60)
        for day in (today - timedelta(days=1), today):
            began = local_to_utc(day, start, self.zone, fold=0)
            end_day = day if self.start < self.end else day + timedelta(days=1)
            ends = local_to_utc(end_day, end, self.zone, fold=0)
            if ends <= began:
                ends = local_to_utc(end_day, end, self.zone, fold=1)
            if began <= moment < ends:
                return ends
        return None

    def _steady(self, moment: datetime) -> bool:
        """The same offset three days either side: the windows `moment` may be in, today's and
        yesterday's, lie within two, so no change of offset touches them. (A zone changing its
        offset twice within six days would be taken for steady; none does.)"""
        before = (moment - _STEADY_SPAN).astimezone(self.zone).utcoffset()
        return before == (moment + _STEADY_SPAN).astimezone(self.zone).utcoffset()


_STEADY_SPAN = timedelta(days=3)


def local_to_utc(day: date, wall: time, zone: ZoneInfo, fold: int) -> datetime:
    """UTC instant of a local wall time; inside a spring-forward gap, the first instant after the gap."""
    local = datetime.combine(day, wall, tzinfo=zone).replace(fold=fold)
    instant = local.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):
        return instant
    # In a gap fold=0 reads the wall time with the offset before the transition (an instant after
    # it) and fold=1 with the offset after (an instant before it): search between them.
    before = int(local.replace(fold=1).astimezone(UTC).timestamp())
    after = int(local.replace(fold=0).astimezone(UTC).timestamp())
    offset_after = datetime.fromtimestamp(after, zone).utcoffset()
    while after - before > 1:
        middle = (before + after) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset_after:
            after = middle
        else:
            before = middle
    return datetime.fromtimestamp(after, UTC)


def window_in_force(start: str, end: str, settings: PolicySettings) -> tuple[str, str]:
    """The user's window, unless it was saved before an admin set a minimum it falls short of
    (a change of window is held to it): then it is made that long from its start, so every
    minute the user chose stays quiet (the default window standing in let pushes into a lunchtime
    window the user had set). No window at all (equal ends) takes the default, never shorter."""
    start, end = ascii_hhmm(start), ascii_hhmm(end)
    if not settings.min_quiet_minutes or quiet_window_minutes(start, end) >= settings.min_quiet_minutes:
        return start, end
    if start == end:
        return settings.quiet_start, settings.quiet_end
    minutes = (hhmm_minutes(start) + settings.min_quiet_minutes) % (24 * 60)
    return start, f"{minutes // 60:02d}:{minutes % 60:02d}"


QuietAnswer = RuleResult | datetime
"""Quiet hours at a moment: the rule's passing verdict, or when the window lets a push go."""


class QuietTimes:
    """Quiet hours' answers, each worked out once for a unit of decisions (a submission, a
    dispatch round) and kept for the rest of it. An answer depends on the window, the zone, the
    moment and the policy, nothing else; a unit has one `now`, and a campaign's subjects share a
    few zones and, most of them, the default window. Worked out per push, reading the window,
    placing it in the zone and looking for a change of offset were a third of a campaign push's
    pipeline (bench/decide_floor.py). A new policy read mid-unit starts afresh."""

    def __init__(self) -> None:
        self._settings: PolicySettings | None = None
        self._known: dict[tuple[str, str, str, datetime], QuietAnswer] = {}
        self._windows: dict[tuple[str, str, str], QuietWindow] = {}

    def at(self, subject: SubjectState, moment: datetime, settings: PolicySettings) -> QuietAnswer:
        self._follow(settings)
        # In UTC, and worked out from that: two moments of one zone compare by their wall time,
        # so the two readings of a clock set back would be one key, and a moment of the user's
        # own zone is read by its wall time, so one the clock skips would be judged apart from
        # its instant, which the key is.
        instant = moment.astimezone(UTC)
        key = (subject.quiet_start, subject.quiet_end, subject.timezone, instant)
        answer = self._known.get(key)
        if answer is None:
            window = self.window(subject, settings)
            if not window.contains(instant):
                answer = passed(f"quiet hours: outside {window.text}")
            else:
                answer = window.next_allowed(instant)
            self._known[key] = answer
        return answer

    def window(self, subject: SubjectState, settings: PolicySettings) -> QuietWindow:
        """The subject's window in force, placed in its zone: also what dispatch asks again as
        each send starts, since a round's sends may start most of a lease after its decisions."""
        self._follow(settings)
        key = (subject.quiet_start, subject.quiet_end, subject.timezone)
        window = self._windows.get(key)
        if window is None:
            start, end = window_in_force(subject.quiet_start, subject.quiet_end, settings)
            window = self._windows[key] = QuietWindow(start, end, ZoneInfo(subject.timezone))
        return window

    def _follow(self, settings: PolicySettings) -> None:
        if settings is not self._settings:
            self._known.clear()
            self._windows.clear()
            self._settings = settings


def check_quiet_hours(
    ctx: RuleContext, now: datetime, settings: PolicySettings, quiet: QuietTimes
) -> RuleResult:
    until = quiet.at(ctx.subject, now, settings)
    if isinstance(until, RuleResult):
        return until
    reason = Reason(reasons.QUIET_HOURS, {"until": rfc3339(until)})
    if until >= ctx.expires_at:
        return reject(reason)
    return defer(until, reason)
