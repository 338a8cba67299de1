"""The Retry-After header, read one way for the delivery adapters and the SDK alike.

Its own module, with the standard library only, so that the SDK can use it without importing
the delivery package and with it the provider clients.
"""

from __future__ import annotations

import email.utils
from datetime import UTC

__all__ = ["parse_retry_after"]


def parse_retry_after(header: str | None, now: float) -> float | None:
    """Seconds from `now` named by a Retry-After header (delta-seconds or HTTP-date).

    Unparseable values give None, so a garbled header falls back to plain backoff instead of
    failing the delivery; a date in the past gives 0.
    """
    if header is None:
        return None
    value = header.strip()
    if value.isascii() and value.isdigit():  # `isdigit` alone takes '²', which `int` refuses
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP-dates are always GMT; a "-0000" zone parses as naive
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
