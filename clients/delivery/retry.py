"""When to try a push again: exponential backoff with full jitter, floored by Retry-After.

Full jitter (a uniform draw in [0, exponential step]) spreads a burst of failures over the
whole window, so a recovering provider is not hit by every worker at the same instant. A
provider's Retry-After is a floor, never shortened by the jitter. Pure functions: the random
source and the current time are parameters.
"""

from __future__ import annotations

from collections.abc import Callable

from clients.retry_after import parse_retry_after

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
