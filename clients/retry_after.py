"""When to try again, worked out one way for the delivery workers and the SDK alike: the
Retry-After header, and exponential backoff with full jitter floored by it.

Full jitter (a uniform draw in [0, exponential step]) spreads a burst of failures over the
whole window, so a recovering provider or gateway is not hit by every worker at the same
instant. A Retry-After is a floor, never shortened by the jitter, and spread above. Pure functions: the random
source and the current time are parameters. Its own module, with the standard library only, so
that the SDK can use it without importing the delivery package and with it the provider clients.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from datetime import UTC

__all__ = ["RETRY_AFTER_SPREAD", "backoff_delay", "parse_retry_after"]

RETRY_AFTER_SPREAD = 0.25
"""How much longer than a Retry-After a retry may wait, drawn at random: what it asks is a floor."""
_MAX_EXPONENT = 62  # 2**62 already exceeds any sane cap; keeps the float product finite

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


def backoff_delay(
    attempt: int,
    base: float,
    cap: float,
    rand: Callable[[], float],
    retry_after: float | None = None,
    within: float | None = None,
) -> float:
    """Seconds to wait after `attempt` failed attempts (1 = the first try failed).

    The window is `min(cap, base * 2**(attempt-1))`; `rand()` must return a value in [0, 1).
    A `retry_after` is waited out, and up to `RETRY_AFTER_SPREAD` of it more, unless that more
    would reach `within` (the time the caller has left: a push's expiry, the SDK's deadline)
    where the `retry_after` alone does not: a spread that ended a push `expired` unsent, or
    made the SDK give up, would cost more than the burst it spreads.
    """
    if attempt < 1:
        raise ValueError("attempt counts failed attempts and starts at 1")
    window = min(cap, base * 2.0 ** min(attempt - 1, _MAX_EXPONENT))
    delay = rand() * window
    if retry_after is not None:
        # Spread over a quarter more: every client told `Retry-After: 1` came back at 1.0 s,
        # together, which the jitter is there to prevent.
        spread = retry_after * (1 + RETRY_AFTER_SPREAD * rand())
        if within is not None and retry_after < within <= spread:
            spread = retry_after
        delay = max(delay, spread)
    return delay
