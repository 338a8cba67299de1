"""Answer and stored times are memoized per process (gateway/services/pushes.py); the memo must
never hand one time's text to another that merely compares equal to it, nor one form's text to
the other (rows keep `isoformat()`, which queries compare as text; answers are RFC 3339)."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from gateway.services.pushes import _stored_time, _wire_time


def test_the_two_times_a_fold_tells_apart_keep_their_own_text() -> None:
    first = datetime(2024, 11, 3, 1, 30, tzinfo=ZoneInfo("America/New_York"))  # clocks fall back at 2:00
    second = first.replace(fold=1)
    assert first == second  # one zone: compared by wall clock, fold ignored
    assert _wire_time(first) == "2024-11-03T05:30:00Z"
    assert _wire_time(second) == "2024-11-03T06:30:00Z"


def test_a_utc_time_is_rfc3339_with_z() -> None:
    assert _wire_time(datetime(2026, 12, 3, 12, 0, 0, 250000, tzinfo=UTC)) == "2026-12-03T12:00:00.250000Z"


def test_a_stored_time_keeps_isoformat_after_its_answer_text() -> None:
    moment = datetime(2026, 12, 6, 15, 0, 0, 125000, tzinfo=UTC)
    assert _wire_time(moment) == "2026-12-06T15:00:00.125000Z"
    assert _stored_time(moment) == moment.isoformat() == "2026-12-06T15:00:00.125000+00:00"
    first = datetime(2024, 11, 3, 1, 30, tzinfo=ZoneInfo("America/New_York"))
    assert _stored_time(first.replace(fold=1)) == "2024-11-03T01:30:00-05:00"
    assert _stored_time(first) == "2024-11-03T01:30:00-04:00"
