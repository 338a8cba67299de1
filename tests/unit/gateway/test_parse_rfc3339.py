"""One reader of RFC 3339 times for the audit API's windows and the CLI's `audit export`, and one of
the times the gateway stored or signed."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.cli import _moment
from gateway.clock import parse_rfc3339, stored_time

TEN = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23T10:00:00Z", TEN),
        ("2026-11-23t10:00:00z", TEN),  # RFC 3339 5.6 allows both in lower case
        ("2026-11-23 10:00:00.000+00:00", TEN),
        ("2026-11-23T19:30:00+09:30", TEN),
        ("2026-11-23T10:00:00", datetime(2026, 11, 23, 10, 0)),  # naive: the caller refuses it
    ],
)
def test_what_is_read(text: str, expected: datetime) -> None:
    moment = parse_rfc3339(text)
    assert moment == expected
    assert (moment.tzinfo is None) == (expected.tzinfo is None)


@pytest.mark.parametrize("text", ["yesterday", "2026-02-30T10:00:00Z", "2026-11-23T10:00:00ZZ", ""])
def test_what_is_no_time(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (ValueError is what the callers catch)
        parse_rfc3339(text)


def test_the_cli_reads_lower_case_as_the_api_does_and_still_wants_an_offset() -> None:
    assert _moment("2026-11-23t19:30:00+09:30").utcoffset() == timedelta(hours=9, minutes=30)
    assert _moment("2026-11-23t10:00:00z") == TEN
    assert _moment("2026-11-23T10:00:00-01:00").tzinfo == timezone(timedelta(hours=-1))
    with pytest.raises(argparse.ArgumentTypeError, match=r"has no offset; e\.g\. 2026-11-23T10:00:00Z"):
        _moment("2026-11-23T10:00:00")


@pytest.mark.parametrize(
    ("stored", "read"),
    [
        ("2026-12-07T10:00:00+00:00", datetime(2026, 12, 7, 10, tzinfo=UTC)),
        ("2026-12-07T10:00:00", None),  # no offset: a tampered row, never compared with an aware time
        ("yesterday", None),
        (None, None),
        (17, None),
    ],
)
def test_a_stored_time_reads_as_an_aware_one_or_none(stored: object, read: datetime | None) -> None:
    assert stored_time(stored) == read
