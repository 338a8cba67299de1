"""The Retry-After header, read one way for the delivery adapters and the SDK alike.

Its own module, with the standard library only, so that the SDK can use it without importing
the delivery package and with it the provider clients.
"""

from __future__ import annotations

import email.utils
from datetime import UTC

__all__ = ["parse_retry_after"]

_MAX_DELTA_DIGITS = 10
"""Over 300 years: no server means a longer wait, and `float` (past ~309 digits) and `int` (past
4300) refuse the longest numbers a header can carry."""


def parse_retry_after(header: str | None, now: float) -> float | None:
    """Seconds from `now` named by a Retry-After header (delta-seconds or HTTP-date).

    Unparseable values give None, so a garbled header falls back to plain backoff instead of
    failing the delivery or the SDK's call; so do a number of more than ten digits and a date
    past what `datetime` holds. A date in the past gives 0. Never raises.
    """
    if header is None:
        return None
    value = header.strip()
    if value.isascii() and value.isdigit():  # `isdigit` alone takes '²', which `int` refuses
        digits = value.lstrip("0") or "0"
        return float(int(digits)) if len(digits) <= _MAX_DELTA_DIGITS else None
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:  # HTTP-dates are always GMT; a "-0000" zone parses as naive
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - now)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a year past C's int
        return None
