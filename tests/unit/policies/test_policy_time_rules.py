"""Quiet hours across midnight and DST, and the rolling frequency windows, at exact instants."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from policies.context import PushRequest
from policies.frequency import busiest_week
from policies.quiet_hours import QuietWindow, local_to_utc, window_in_force
from policies.settings import PolicySettings, hhmm_minutes
from policies.ttl import expires_at

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("day", "wall", "zone", "expected"),
    [
        (date(2024, 6, 12), time(8, 0), BERLIN, utc(2024, 6, 12, 6, 0)),
        # spring forward: 02:00-03:00 does not exist, so the first instant after it (03:00 local)
        (date(2024, 3, 10), time(2, 30), NEW_YORK, utc(2024, 3, 10, 7, 0)),
        (date(2024, 3, 31), time(2, 15), BERLIN, utc(2024, 3, 31, 1, 0)),
        # fall back: 01:30 New York and 02:30 Berlin happen twice; fold=0 is the first
        (date(2024, 11, 3), time(1, 30), NEW_YORK, utc(2024, 11, 3, 5, 30)),
        (date(2024, 10, 27), time(2, 30), BERLIN, utc(2024, 10, 27, 0, 30)),
    ],
)
def test_local_to_utc(day: date, wall: time, zone: ZoneInfo, expected: datetime) -> None:
    assert local_to_utc(day, wall, zone, fold=0) == expected


@pytest.mark.parametrize(
    ("start", "end", "zone", "now", "expected"),
    [
        (
            "21:00",
            "08:00",
            BERLIN,
            utc(2024, 6, 12, 20, 0),
            utc(2024, 6, 13, 6, 0),
        ),  # 22:00, crosses midnight
        ("21:00", "08:00", BERLIN, utc(2024, 6, 12, 3, 0), utc(2024, 6, 12, 6, 0)),  # 05:00, after midnight
        ("21:00", "08:00", BERLIN, utc(2024, 6, 12, 6, 0), utc(2024, 6, 12, 6, 0)),  # 08:00 is outside
        ("21:00", "08:00", BERLIN, utc(2024, 6, 12, 18, 59), utc(2024, 6, 12, 18, 59)),  # 20:59
        ("12:00", "14:00", BERLIN, utc(2024, 6, 12, 10, 30), utc(2024, 6, 12, 12, 0)),  # same-day window
        ("08:00", "08:00", BERLIN, utc(2024, 6, 12, 3, 0), utc(2024, 6, 12, 3, 0)),  # equal ends: none
        # the night DST starts: 21:00 EST until 08:00 EDT is only ten hours
        ("21:00", "08:00", NEW_YORK, utc(2024, 3, 10, 2, 0), utc(2024, 3, 10, 12, 0)),
        ("22:00", "02:30", NEW_YORK, utc(2024, 3, 10, 4, 0), utc(2024, 3, 10, 7, 0)),  # end in the gap
        ("23:00", "02:15", BERLIN, utc(2024, 3, 30, 23, 0), utc(2024, 3, 31, 1, 0)),
        # the night DST ends: an ambiguous end is its first occurrence...
        ("23:00", "01:30", NEW_YORK, utc(2024, 11, 3, 4, 0), utc(2024, 11, 3, 5, 30)),
        # ...unless that is already past: inside the repeated hour the second one is next
        ("01:00", "01:45", NEW_YORK, utc(2024, 11, 3, 6, 10), utc(2024, 11, 3, 6, 45)),
        ("21:00", "08:00", BERLIN, utc(2024, 10, 26, 20, 0), utc(2024, 10, 27, 7, 0)),
        # a window of nearly a day whose end falls in the gap: the next allowed minute is a day later
        ("02:45", "02:30", NEW_YORK, utc(2024, 3, 10, 6, 0), utc(2024, 3, 11, 6, 30)),
        # a window begun before the clock is set back stays begun: at the second 23:10 (the clock
        # went from 24:00 back to 23:00) the night began 40 minutes ago, though the clock reads
        # before 23:30 (it let a push through)
        ("23:30", "07:00", ZoneInfo("America/Santiago"), utc(2025, 4, 6, 3, 10), utc(2025, 4, 6, 11, 0)),
        ("23:30", "07:00", ZoneInfo("Africa/Cairo"), utc(2025, 10, 30, 21, 10), utc(2025, 10, 31, 5, 0)),
    ],
)
def test_next_allowed(start: str, end: str, zone: ZoneInfo, now: datetime, expected: datetime) -> None:
    window = QuietWindow(start, end, zone)
    assert window.next_allowed(now) == expected
    assert not window.contains(expected)


T = utc(2024, 6, 12, 12, 0)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("offsets_in_days", "expected"),
    [
        ([], 1),
        ([-6, -3], 3),
        ([-7, -3], 2),  # exactly seven days apart: not the same window
        ([-6.9, 6.9], 2),  # windows are counted around `at`, never across both sides at once
        ([-3, 3, 6], 3),
        ([-8, 8], 1),
    ],
)
def test_busiest_week(offsets_in_days: list[float], expected: int) -> None:
    assert busiest_week([T + offset * DAY for offset in offsets_in_days], T) == expected


def test_a_window_stored_in_other_scripts_digits_means_its_time_and_is_shown_in_ascii() -> None:
    """Such windows were taken before HH:MM was held to ASCII digits; they are sealed under each
    user's key, so no migration rewrites them: read as the time they meant, shown as ASCII."""
    assert window_in_force("1\u0663:00", "0\u0668:30", PolicySettings()) == ("13:00", "08:30")
    assert hhmm_minutes("1\u0663:00") == 13 * 60
    assert window_in_force("13:00", "08:30", PolicySettings()) == ("13:00", "08:30")


def test_a_ttl_is_counted_in_seconds_across_a_change_of_offset() -> None:
    """Two hours from 00:30 in New York on the night clocks go back is 01:30 EST (06:30 UTC); added
    to the local clock reading, it was 02:30 EST, an hour more than the push was given."""
    now = datetime(2026, 11, 1, 0, 30, tzinfo=ZoneInfo("America/New_York"))
    push = PushRequest(topic="transactional", title="t", body="b", data={}, ttl_seconds=7200)
    assert expires_at(push, now, PolicySettings()) == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
