"""Time zones follow the `tzdata` package this project pins, never the host's zone files, which may
be years older than the rules in force (see `gateway.timezones`)."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

import tzdata  # type: ignore[import-untyped]

import gateway  # noqa: F401 (importing it is what chooses the rules)


def test_zones_come_from_the_package_alone() -> None:
    assert zoneinfo.TZPATH == ()
    assert tzdata.IANA_VERSION >= "2026b"
    # British Columbia's permanent UTC-7 (2026b): a host's older files say UTC-8.
    vancouver = datetime(2026, 11, 23, 4, 30, tzinfo=UTC).astimezone(zoneinfo.ZoneInfo("America/Vancouver"))
    assert vancouver.utcoffset() == timedelta(hours=-7)
