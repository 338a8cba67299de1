from __future__ import annotations

import pytest

from clients.delivery import backoff_delay, parse_retry_after

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.mark.parametrize(
    ("attempt", "window"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (50, 60.0), (10_000, 60.0)],
)
def test_full_jitter_spans_zero_to_the_capped_exponential_window(attempt: int, window: float) -> None:
    assert backoff_delay(attempt, base=1.0, cap=60.0, rand=lambda: 0.0) == 0.0
    assert backoff_delay(attempt, base=1.0, cap=60.0, rand=lambda: 0.5) == pytest.approx(window / 2)
    assert backoff_delay(attempt, base=1.0, cap=60.0, rand=lambda: 0.999999) <= window


def test_retry_after_is_a_floor_not_a_replacement() -> None:
    assert backoff_delay(1, base=1.0, cap=60.0, rand=lambda: 0.0, retry_after=30.0) == 30.0
    assert backoff_delay(7, base=1.0, cap=60.0, rand=lambda: 0.9, retry_after=5.0) == pytest.approx(54.0)
    assert backoff_delay(1, base=1.0, cap=60.0, rand=lambda: 0.5, retry_after=120.0) == 135.0


def test_the_spread_gives_way_where_it_would_reach_the_time_left() -> None:
    """A push with 100 s left told to wait 90 s was due at its expiry four times in ten, and
    ended `expired` unsent: the spread is dropped there, never the Retry-After itself."""
    wait = backoff_delay(1, base=1.0, cap=60.0, rand=lambda: 0.999, retry_after=90.0, within=100.0)
    assert wait == 90.0
    roomy = backoff_delay(1, base=1.0, cap=60.0, rand=lambda: 0.999, retry_after=90.0, within=200.0)
    assert roomy == pytest.approx(90.0 * (1 + 0.25 * 0.999))
    assert backoff_delay(1, base=1.0, cap=60.0, rand=lambda: 0.5, retry_after=120.0, within=100.0) == 135.0


def test_retries_told_the_same_retry_after_are_spread_over_a_quarter_more() -> None:
    """Every client told `Retry-After: 1` came back at 1.0 s, together."""
    draws = iter([0.1, 0.0, 0.1, 0.999, 0.1, 0.5])
    waits = [
        backoff_delay(1, base=1.0, cap=60.0, rand=lambda: next(draws), retry_after=1.0) for _ in range(3)
    ]
    assert waits == pytest.approx([1.0, 1.0 + 0.25 * 0.999, 1.125])


def test_attempt_counts_from_one() -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        backoff_delay(0, base=1.0, cap=60.0, rand=lambda: 0.5)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Tue, 14 Nov 2023 22:15:20 GMT", 120.0),
        ("Tue, 14 Nov 2023 22:15:20 -0000", 120.0),
        ("Tue, 14 Nov 2023 22:00:00 GMT", 0.0),  # already past
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        ("\u00b2", None),  # a latin-1 byte 0xB2 from a proxy: `isdigit` says yes, `int` says no
        ("\u0663", None),  # an Arabic-Indic three: not the delta-seconds of RFC 9110
        ("9999999999", 9999999999.0),
        ("000000000000120", 120.0),  # leading zeros are not a longer wait
        ("9" * 11, None),
        ("9" * 400, None),  # float(int(...)) raised OverflowError
        ("9" * 5000, None),  # int(...) raised ValueError: past its 4300 digits
        ("01 Jan 99999999999 00:00:00 GMT", None),  # parsedate_to_datetime raised OverflowError
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, NOW) == expected
