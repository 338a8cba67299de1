"""The one clock. Services take a `Clock`; tests pass a fixed one; policies take `now`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from policies.decision import rfc3339  # one formatter for the wire, shared with the reason details

__all__ = [
    "Clock", "parse_rfc3339", "rfc3339", "rfc3339_text", "rfc3339_text_or_none", "stored_time",
    "system_clock",
]  # fmt: skip

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def rfc3339_text(stored: str) -> str:
    """A stored `isoformat()` UTC timestamp in the same `Z` form `rfc3339` gives."""
    return stored.replace("+00:00", "Z")


def rfc3339_text_or_none(stored: str | None) -> str | None:
    """`rfc3339_text` of a stored time that may be absent."""
    return None if stored is None else rfc3339_text(stored)


_UPPER_DESIGNATORS = str.maketrans("tz", "TZ")


def stored_time(text: object) -> datetime | None:
    """A time as the gateway stores or signs it (`isoformat()`, with its offset), or None for one a
    tampered row or file holds instead: not text, not a time, or one without an offset, which
    compared with an aware time raised (a 500, a traceback)."""
    try:
        at = datetime.fromisoformat(text)  # type: ignore[arg-type]  # a TypeError if not str
    except (TypeError, ValueError):
        return None
    return at if at.utcoffset() is not None else None


def parse_rfc3339(text: str) -> datetime:
    """A time as RFC 3339 writes it, read by `datetime.fromisoformat` once `t` and `z` are made
    upper-case (RFC 3339 5.6 allows them in lower case; Python refuses a `z`). ValueError for
    text that is not a real time (`yesterday`, `2026-02-30T10:00:00Z`).

    The shape is not checked: Python also reads ISO 8601 forms RFC 3339 lacks (`2026-11-23`,
    `+01`, `2026-W48-1`); a caller that must refuse those checks the shape itself (the audit
    routes' query pattern). A time with no offset, which RFC 3339 does not allow, comes back
    naive for the caller to refuse in its own words: the CLI at once, the audit API in
    `aware`, once a window's two bounds are both read."""
    return datetime.fromisoformat(text.translate(_UPPER_DESIGNATORS))
