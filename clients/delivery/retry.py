"""When to try a push again: exponential backoff with full jitter, floored by Retry-After.

Full jitter (a uniform draw in [0, exponential step]) spreads a burst of failures over the
whole window, so a recovering provider is not hit by every worker at the same instant. A
provider's Retry-After is a floor, never shortened by the jitter. Pure functions: the random
source and the current time are parameters.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from datetime import UTC

__all__ = ["backoff_delay", "parse_retry_after"]

_MAX_EXPONENT = 62  # 2**62 already exceeds any sane cap; keeps the float product finite


def backoff_delay(
    attempt: int,
    base: float,
    cap: float,
    rand: Callable[[], float],
    retry_after: float | None = None,
) -> float:
    """Seconds to wait after `attempt` failed attempts (1 = the first try failed).

    The window is `min(cap, base * 2**(attempt-1))`; `rand()` must return a value in [0, 1).
    """
    if attempt < 1:
        raise ValueError("attempt counts failed attempts and starts at 1")
    window = min(cap, base * 2.0 ** min(attempt - 1, _MAX_EXPONENT))
    delay = rand() * window
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def parse_retry_after(header: str | None, now: float) -> float | None:
    """Seconds from `now` named by a Retry-After header (delta-seconds or HTTP-date).

    Unparseable values give None, so a garbled header falls back to plain backoff instead of
    failing the delivery; a date in the past gives 0.
    """
    if header is None:
        return None
    value = header.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP-dates are always GMT; a "-0000" zone parses as naive
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
