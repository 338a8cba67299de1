"""Answer times are memoized per process (gateway/services/pushes.py); the memo must never hand one
time's text to another that merely compares equal to it."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from gateway.services.pushes import _wire_time


def test_the_two_times_a_fold_tells_apart_keep_their_own_text() -> None:
    first = datetime(2024, 11, 3, 1, 30, tzinfo=ZoneInfo("America/New_York"))  # clocks fall back at 2:00
    second = first.replace(fold=1)
    assert first == second  # one zone: compared by wall clock, fold ignored
    assert _wire_time(first) == "2024-11-03T05:30:00Z"
    assert _wire_time(second) == "2024-11-03T06:30:00Z"


def test_a_utc_time_is_rfc3339_with_z() -> None:
    assert _wire_time(datetime(2026, 12, 3, 12, 0, 0, 250000, tzinfo=UTC)) == "2026-12-03T12:00:00.250000Z"
