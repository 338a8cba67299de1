"""The one clock. Services take a `Clock`; tests pass a fixed one; policies take `now`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from policies.decision import rfc3339  # one formatter for the wire, shared with the reason details

__all__ = ["Clock", "rfc3339", "rfc3339_text", "system_clock"]

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def rfc3339_text(stored: str) -> str:
    """A stored `isoformat()` UTC timestamp in the same `Z` form `rfc3339` gives."""
    return stored.replace("+00:00", "Z")


def rfc3339_text_or_none(stored: str | None) -> str | None:
    """`rfc3339_text` of a stored time that may be absent."""
    return None if stored is None else rfc3339_text(stored)
